"""twistd -n -y this file: the rtp.io engine holding calls, for tests/test_media_rtpio_sigterm.py.

Environment:
- ``LVGW_RTPIO_READY``: a file written (``ready <ports>``) once every call's
  SDP went through rtp.io both ways;
- ``LVGW_RTPIO_CALLS``: how many calls (default 5);
- ``LVGW_RTPIO_PORT_MIN``: the engine's first port (a range of 400);
- ``LVGW_RTPIO_HANG``: ``1`` to leave rtp.io hung (a command that never
  answers) before writing the ready file.

The engine is under the service tree as the gateway's is, so SIGTERM goes
through twistd's ordinary shutdown: ``stopService`` -> ``relay.stop()``.
"""

import os
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry
from sippy.MsgBody import MsgBody
from twisted.application import service
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from lvgateway.config.model import MediaConfig
from lvgateway.media.rtpio import RtpioMediaRelay
from lvgateway.media.service import MediaRelayService
from lvgateway.sip.sippy_reactor import SippyOnReactor

log = Logger(namespace="rtpio-sigterm")
READY = Path(os.environ["LVGW_RTPIO_READY"])
CALLS = int(os.environ.get("LVGW_RTPIO_CALLS", "5"))
PORT_MIN = int(os.environ.get("LVGW_RTPIO_PORT_MIN", "24000"))
HANG = os.environ.get("LVGW_RTPIO_HANG") == "1"


class _Stuck(str):
    """A command whose write blocks Sippy's worker for good: rtp.io never answers it."""

    def encode(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        threading.Event().wait()
        return b""


def _sdp(host: str, port: int) -> MsgBody:
    return MsgBody(
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\n"
    )


class CallsUp(service.Service):
    """Once rtp.io is online, set up ``CALLS`` calls through it, then write the ready file."""

    def __init__(self, relay: RtpioMediaRelay) -> None:
        self.relay = relay

    def startService(self) -> None:
        service.Service.startService(self)
        ensureDeferred(self._calls()).addErrback(lambda f: log.failure("setting calls up", f))

    async def _calls(self) -> None:
        while self.relay.online() is not None:
            await deferLater(reactor, 0.01, lambda: None)
        ports = []
        for n in range(CALLS):
            session = self.relay.new_session(f"sigterm-{n}")
            for hook, host, port in (
                (session.on_caller_sdp_change, "127.0.0.1", 6000 + 2 * n),
                (session.on_callee_sdp_change, "127.0.0.3", 7000 + 2 * n),
            ):
                d: Deferred[object] = Deferred()
                hook(_sdp(host, port), lambda body, ex=None, d=d: d.callback(ex))
                error = await d
                if error is not None:
                    raise error
            ports += [session.livevox_port, session.vendor_port]
        if HANG:
            self.relay.client.send_command(_Stuck("V\n"), None)
        READY.write_text("ready " + " ".join(str(p) for p in ports))
        log.info("{calls} calls up; ready", calls=CALLS)


application = service.Application("rtpio-sigterm")
relay = RtpioMediaRelay(
    reactor,
    MediaConfig("rtpio", "127.0.0.1", None, PORT_MIN, PORT_MIN + 399, 60.0, 120.0),
    CollectorRegistry(),
    lambda: SippyOnReactor.for_reactor(reactor),
    command_timeout=1.0,
    stop_timeout=2.0,
)
MediaRelayService(relay).setServiceParent(application)
CallsUp(relay).setServiceParent(application)
