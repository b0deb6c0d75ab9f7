"""The sandbox's SIP half: one Sippy stack shared by the AI echo bot and the LiveVox dialler.

Sippy's state is process-wide (docs/design.md, pitfall 10), so the sandbox process
has one SIP stack, on ``[sip] listen_host:listen_port`` (127.0.0.2:5080, the
demo gateway's vendor endpoint ``sip:echo@127.0.0.2:5080``):

- new INVITEs that reach it go to the **echo bot**, whatever the
  Request-URI user; OPTIONS are answered 200; other out-of-dialog requests
  501, in-dialog ones Sippy does not know 481;
- the **dialler** sends its INVITEs from the same address, so the gateway's
  answers and in-dialog requests come back to it; Sippy hands those to the
  dialler's user agents by Call-ID, not to the request callback.

The dialler cannot call the echo bot through this stack: Sippy sees its own
INVITE coming back as a loop (482). They meet through the gateway (or in
tests, each meets a raw peer of :mod:`.sip_testing`).

Raw requests are observed before Sippy parses them (:class:`RawRequests`),
so both record headers in the case they came in.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from lvgateway.sandbox.dialler import Dialler
from lvgateway.sandbox.echo_bot import EchoBot
from lvgateway.sandbox.livevox_web import SimulatorSite, to_sim_request
from lvgateway.sandbox.sandbox_admin import ADMIN_PREFIX, handle_admin
from lvgateway.sandbox.sandbox_config import SandboxConfig
from lvgateway.sandbox.simulator import Simulator
from lvgateway.sandbox.sip_messages import RawRequests
from lvgateway.sip.stack import SipStack
from lvgateway.sip.udp import SourceFilter

__all__ = ["SandboxAdminResource", "SandboxSip", "attach_sip_admin"]

log = Logger()

#: Seconds a stop waits for the BYEs and CANCELs it sent to be answered.
STOP_DRAIN = 2.0


class SandboxSip(Service):
    """The SIP stack, the echo bot and the dialler, started and stopped in order.

    Start: the stack binds, raw requests are observed, the dialler starts
    (and its automatic dialler, if configured). Stop: the dialler and the
    echo bot hang up their calls, then the stack stops.

    :param config: the sandbox configuration (``[sip]``, ``[dialler]``, ``[echo_bot]``).
    :param simulator: the LiveVox simulator the dialler puts calls through.
    :param reactor: the reactor Sippy, the timers and the RTP sockets run on.
    """

    def __init__(self, config: SandboxConfig, simulator: Simulator, reactor: Any) -> None:
        sip = config.sip
        self.config = config
        self._reactor = reactor
        self.raw = RawRequests()
        self.stack = SipStack(
            reactor,
            sip.listen_host,
            sip.listen_port,
            SourceFilter(sip.allowed_networks, reactor),
            self.handle_request,
            user_agent=sip.user_agent,
            trace=sip.trace,
        )
        self.echo_bot = EchoBot(
            config.echo_bot, reactor, self._global_config, sip.rtp_host, self.raw
        )
        self.dialler = Dialler(
            config.dialler,
            simulator,
            reactor,
            self._global_config,
            self.address,
            sip.rtp_host,
            self.raw,
        )

    def _global_config(self) -> dict[str, Any]:
        return self.stack.global_config

    def address(self) -> tuple[str, int]:
        """The SIP address the stack is bound to (host, port); valid once started."""
        return self.config.sip.listen_host, self.stack.port

    def startService(self) -> None:
        """Bind the SIP port, observe raw requests, start the dialler."""
        Service.startService(self)
        self.stack.startService()
        self.raw.install(self.stack.server)
        self.dialler.startService()
        host, port = self.address()
        log.info(
            "sandbox SIP on udp {host}:{port}: echo bot answering, dialler calling {gateway}",
            host=host,
            port=port,
            gateway=f"{self.config.dialler.gateway_host}:{self.config.dialler.gateway_port}",
        )

    def stopService(self) -> Deferred[None]:
        """Hang up every call, wait (at most :data:`STOP_DRAIN` seconds) for the
        hang-ups to be answered, then stop the SIP stack.
        """
        Service.stopService(self)
        try:
            if self.dialler.running:
                self.dialler.stopService()
            self.echo_bot.stop()
        except Exception:
            log.failure("sandbox: hanging up the calls on stop failed")
        return Deferred.fromCoroutine(self._drain_then_stop())

    async def _drain_then_stop(self) -> None:
        deadline = self._reactor.seconds() + STOP_DRAIN
        while self._in_flight() and self._reactor.seconds() < deadline:
            await deferLater(self._reactor, 0.05, lambda: None)
        if self._in_flight():
            log.warn(
                "sandbox: stopping SIP with {count} requests unanswered", count=self._in_flight()
            )
        if self.stack.running:
            self.stack.stopService()

    def _in_flight(self) -> int:
        """Client transactions (BYE, CANCEL, INVITE) still waiting for their answer."""
        tm = self.stack.tm
        return len(tm.tclient) if tm is not None and tm.tclient else 0

    def glare(self, call_id: str) -> tuple[Any, Any]:
        """Make the dialler's call and the echo bot's end of it re-INVITE in the same reactor turn.

        The bot's end is its call whose ``X-LV-Session-ID`` is the dialler's
        callSessionId. Both offers cross in the gateway: RFC 3261 section
        14.1 has each side answer the other 491.

        :return: the dialler's result and the bot's call.
        :raises KeyError: unless both ends are up and answered.
        """
        result = self.dialler.result(call_id)
        if result is None:
            raise KeyError(call_id)
        ends = [
            call
            for call in self.echo_bot.live_calls()
            if call.headers.get("X-LV-Session-ID") == result.call_session_id
        ]
        if len(ends) != 1:
            raise KeyError(call_id)
        self.dialler.offer(call_id, "reinvite")
        return result, self.echo_bot.offer(ends[0].id, "reinvite")

    def handle_request(self, req: Any, sip_t: Any) -> Any:
        """Sippy's callback for requests no user agent claimed.

        :param req: the request.
        :param sip_t: its server transaction.
        """
        method = req.getMethod()
        if req.getHFBody("to").getTag() is not None:
            return (req.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None)
        if method == "INVITE":
            return self.echo_bot.handle_invite(req, sip_t)
        if method == "OPTIONS":
            return (req.genResponse(200, "OK"), None, None)
        return (req.genResponse(501, "Not Implemented"), None, None)


class SandboxAdminResource(Resource):
    """The ``/_sandbox/`` admin API with the SIP half's routes (see :mod:`.sandbox_admin`).

    :param simulator: the simulator.
    :param sip: the SIP half.
    """

    isLeaf = True

    def __init__(self, simulator: Simulator, sip: SandboxSip) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._simulator = simulator
        self._sip = sip

    def render(self, request: Request) -> bytes:
        """Answer one admin request."""
        response = handle_admin(self._simulator, to_sim_request(request), self._sip)
        request.setResponseCode(response.status)
        if response.body:
            request.setHeader(b"Content-Type", b"application/json")
        return response.body


def attach_sip_admin(site: SimulatorSite, sip: SandboxSip) -> None:
    """Serve the SIP half's admin routes on the simulator's site, beside the simulator's own.

    :param site: the simulator's HTTP site.
    :param sip: the SIP half.
    """
    site.resource.putChild(ADMIN_PREFIX.encode("ascii"), SandboxAdminResource(site.simulator, sip))
