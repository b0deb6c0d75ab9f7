"""The rtp.io media engine: rtpproxy inside the gateway process, driven by Sippy's own client and session.

rtp.io (PyPI ``rtp-io``) is rtpproxy built as a Python extension. One
rtpproxy per engine (so one per gateway process) is created by
:meth:`RtpioMediaRelay.start`, through Sippy's ``Rtp_proxy_client``
(:mod:`lvgateway.media.rtpio_client`); each call's media is an
:class:`~lvgateway.media.rtpio_session.RtpioMediaSession` around Sippy's
``Rtp_proxy_session``, which rewrites the SDP. Relaying is rtpproxy's own C
threads': no packet passes through Python.

What the engine adds around rtpproxy:

- *Readiness.* Sippy's client is usable only after its ``V`` and ``VF``
  replies: until then :meth:`RtpioMediaRelay.online` says so and
  :meth:`~RtpioMediaRelay.new_session` refuses (503).
- *A watchdog.* rtpproxy's command socket has no timeout. Every command is
  recorded (:class:`~lvgateway.media.rtpio_client.CommandWatch`); when the
  oldest has waited more than ``command_timeout``, :meth:`~RtpioMediaRelay.online`
  says why, new calls are refused (503), and an error is logged; when
  replies flow again, a line says so. Sippy's heartbeat (``Ib`` every
  second) keeps a command in flight, so a hang is seen while idle too.
- *A bounded stop.* ``shutdown()`` joins Sippy's worker thread and frees
  rtpproxy, about a second, or for ever when the engine is hung: it runs on
  a daemon thread of its own, and :meth:`~RtpioMediaRelay.stop` fires after
  ``command_timeout + stop_timeout`` at most, so SIGTERM is obeyed.
- *Media timeouts and counters.* rtpproxy's own session timeouts are set
  long, a backstop (its timeouts are process-wide, and reported on a notify
  socket nobody reads); the engine polls sessions' counters with ``Q``, at
  most ``polls_per_round`` every ``poll_interval``, one in flight a session,
  none while rtp.io is stalled or behind, and the sessions apply the
  gateway's media-timeout rule to them.
- *Port headroom.* rtpproxy picks ports at random and reuses a released
  call's ports lazily: a fifth of the range is kept free
  (:attr:`RtpioMediaRelay.capacity`).

Latching is rtpproxy's: it latches each side to the first packet received
(and re-latches only on the same SSRC), so it cannot drop strangers by
network as the Twisted engine does; ``livevox_networks`` and
``vendor_networks`` are accepted and unused. **Unsafe where the allowed
networks are shared**: a host that sends to a call's port before the real
peer takes its audio. So this engine runs only when named
(``engine = "rtpio"``), never for ``auto``.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections.abc import Callable, Sequence
from secrets import token_hex
from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from sippy.Exceptions.RtpProxyError import RtpProxyError
from sippy.Rtp_proxy.session import Rtp_proxy_session
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from lvgateway.config.model import IPNetwork, MediaConfig
from lvgateway.media.counters import (
    FlowCounters,
    MediaCounters,
    RelayStats,
    ReleasedTotals,
)
from lvgateway.media.errors import MediaNotRunningError, PortsExhaustedError
from lvgateway.media.interfaces import IMediaRelay
from lvgateway.media.metrics import MediaMetrics
from lvgateway.media.rtpio_client import (
    CommandWatch,
    make_client,
    rtpio_version,
    shutdown_in_thread,
    shutdowns_pending,
)
from lvgateway.media.rtpio_session import RtpioError, RtpioMediaSession
from lvgateway.media.sdp import sdp_address_type

__all__ = ["RtpioError", "RtpioMediaRelay", "RtpioMediaSession"]

log = Logger()

#: rtpproxy's own session timeouts are the gateway's longest media timeout plus this.
ENGINE_TTL_MARGIN = 600
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


def _advertised(config: MediaConfig) -> str:
    address = config.advertised_host or config.listen_host
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"media address {address!r} is not an IP address") from None
    if parsed.is_unspecified:
        raise ValueError(
            f"media address {address!r} is a wildcard: set media.advertised_host"
            " to the address peers reach the relay at"
        )
    return address


@implementer(IMediaRelay)
@attrs.define(eq=False)
class RtpioMediaRelay:
    """The rtp.io :class:`~lvgateway.media.interfaces.IMediaRelay`.

    :param reactor: provides ``IReactorTime`` and ``IReactorFromThreads``: the
        one Sippy runs on.
    :param config: the media settings: address to bind and advertise, port
        range, media timeouts.
    :param registry: the Prometheus registry its metrics go on.
    :param ensure_sippy: called by :meth:`start` before any Sippy object is
        made: installs the adapter that runs Sippy's timers and worker
        callbacks on ``reactor`` (``lambda:
        SippyOnReactor.for_reactor(reactor)``; the media part does not import
        the SIP part).
    :param livevox_networks: accepted for parity with the Twisted engine;
        rtpproxy latches by first packet and SSRC, not by network.
    :param monotonic: the clock of polls, media timeouts and the watchdog.
    :param command_timeout: how long a command may wait for rtpproxy's reply
        before the engine counts as hung (and an SDP hook fails, 503).
    :param watchdog_interval: how often the watchdog looks (for its log lines;
        :meth:`online` looks every time it is called).
    :param poll_interval: how often sessions' counters are polled.
    :param polls_per_round: at most this many ``Q`` commands each poll round.
    :param metrics_interval: how often the Prometheus counters catch up.
    :param stop_timeout: how long :meth:`stop` waits for rtp.io to shut down.
    :param debug_level: rtpproxy's own log level (it writes to fd 2).
    :raises ValueError: when the address to advertise is a wildcard or not an IP address.
    """

    reactor: Any
    config: MediaConfig
    registry: CollectorRegistry
    ensure_sippy: Callable[[], object]
    livevox_networks: Sequence[IPNetwork] = ()
    monotonic: Callable[[], float] = time.monotonic
    command_timeout: float = 2.0
    watchdog_interval: float = 0.5
    poll_interval: float = 2.0
    polls_per_round: int = 500
    metrics_interval: float = 1.0
    stop_timeout: float = 5.0
    debug_level: str = "err"
    address: str = attrs.field(init=False)
    _metrics: MediaMetrics = attrs.field(init=False)
    _state: str = attrs.field(default="stopped", init=False)
    _client: Any = attrs.field(default=None, init=False)
    _watch: CommandWatch | None = attrs.field(default=None, init=False)
    _global_config: dict[str, Any] = attrs.field(factory=dict, init=False)
    _failed: str | None = attrs.field(default=None, init=False)
    _stalled: bool = attrs.field(default=False, init=False)
    _sessions: dict[RtpioMediaSession, None] = attrs.field(factory=dict, init=False)
    _closing: dict[RtpioMediaSession, None] = attrs.field(factory=dict, init=False)
    _loops: list[LoopingCall] = attrs.field(factory=list, init=False)
    _cursor: int = attrs.field(default=0, init=False)
    _released: ReleasedTotals = attrs.field(init=False, factory=ReleasedTotals)
    _stopping: Deferred[None] | None = attrs.field(default=None, init=False)
    _online_logged: bool = attrs.field(default=False, init=False)
    _creating: Any = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.address = _advertised(self.config)
        self._metrics = MediaMetrics.on(self.registry)

    @property
    def capacity(self) -> int:
        """How many calls the engine takes: four ports each, a fifth of the range kept free.

        rtpproxy picks ports at random, gives up after a few tries, and reuses
        a released call's ports lazily: in a range nearly full it refuses
        new sessions though ports are free. The headroom keeps it from that
        (in a trial, 3,000 calls replaced at 80 % of a 400-port range: none refused).
        """
        groups = (self.config.port_max - self.config.port_min + 1) // 4
        return groups - groups // 5

    @property
    def running(self) -> bool:
        """Whether rtp.io exists and the engine is not stopping (it may still be unready or hung)."""
        return self._state == "running" and self._client is not None

    @property
    def watch(self) -> CommandWatch | None:
        """The command watch of the running engine (for tests and the manhole)."""
        return self._watch

    @property
    def client(self) -> Any:
        """Sippy's rtp.io client of the running engine, or ``None``."""
        return self._client

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """See :meth:`IMediaRelay.start`: create rtpproxy; :meth:`online` says when it answered.

        If another rtp.io engine of this process is still being freed, the
        new one is created only once that is done: freeing one rtp.io
        instance while another runs can break the other's command socket
        (seen in a trial: 1 in 20).
        """
        if self._state != "stopped":
            return
        self.ensure_sippy()
        self._state = "running"
        self._failed = None
        self._stalled = False
        self._online_logged = False
        if shutdowns_pending():
            log.warn(
                "media relay (rtp.io): waiting for an earlier rtp.io engine of this process"
                " to finish shutting down before starting"
            )
        self._create()

    def _create(self) -> None:
        self._creating = None
        if self._state != "running":
            return
        if shutdowns_pending():
            self._creating = self.reactor.callLater(0.05, self._create)
            return
        watch = CommandWatch(self.monotonic)
        ttl = math.ceil(max(self.config.timeout, self.config.initial_timeout)) + ENGINE_TTL_MARGIN
        self._global_config = {"_sip_address": self.address}
        try:
            client = make_client(
                watch,
                self._global_config,
                port_min=self.config.port_min,
                port_max=self.config.port_max,
                listen_host=self.config.listen_host,
                ttl=ttl,
                debug_level=self.debug_level,
            )
        except Exception as e:
            self._failed = f"{type(e).__name__}: {e}"
            log.failure("media relay (rtp.io) did not start: {reason}", reason=self._failed)
            return
        self._global_config["rtp_proxy_client"] = client
        self._client = client
        self._watch = watch
        for interval, step in (
            (self.watchdog_interval, self._watchdog),
            (self.poll_interval, self._poll_round),
            (self.metrics_interval, self._flush_quietly),
        ):
            loop = LoopingCall(step)
            loop.clock = self.reactor
            loop.start(interval, now=False).addErrback(
                lambda f: log.failure("media relay (rtp.io) loop stopped", f)
            )
            self._loops.append(loop)
        log.info(
            "media relay (rtp.io {version}) starting on {host}, ports {port_min}-{port_max}"
            " ({capacity} calls), advertised as {address}; rtpproxy session timeout {ttl} s",
            version=rtpio_version(),
            host=self.config.listen_host,
            port_min=self.config.port_min,
            port_max=self.config.port_max,
            capacity=self.capacity,
            address=self.address,
            ttl=ttl,
        )

    def stop(self) -> Deferred[None]:
        """See :meth:`IMediaRelay.stop`.

        Releases every session (``D`` each), then shuts rtp.io down on a
        thread of its own; fires when that is done, or after
        ``command_timeout + stop_timeout`` at most, whatever rtp.io does: a
        hung engine cannot keep the process from exiting (its threads are
        daemons).
        """
        if self._state == "stopped":
            return succeed(None)
        if self._stopping is not None:
            return _chained(self._stopping)
        self._state = "stopping"
        if self._creating is not None and self._creating.active():
            self._creating.cancel()
        self._creating = None
        stopped: Deferred[None] = Deferred()
        self._stopping = stopped
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        releasing = [session.release() for session in list(self._sessions)]
        client, watch = self._client, self._watch
        finished = False

        def finish(how: str) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            if timer.active():
                timer.cancel()
            self._flush_quietly()
            self._client = None
            self._state = "stopped"
            self._stopping = None
            if how == "timeout":
                log.error(
                    "media relay (rtp.io) did not shut down within {bound:g} s; going on without it",
                    bound=self.command_timeout + self.stop_timeout,
                )
            else:
                log.info("media relay (rtp.io) stopped")
            stopped.callback(None)

        def shut_down(result: object) -> None:
            if client is None:
                finish("clean")
                return
            if watch is not None:
                watch.closed = True

            def done(error: BaseException | None) -> None:
                if error is not None:
                    log.error("media relay (rtp.io) shutdown raised: {error!r}", error=error)
                finish("clean")

            shutdown_in_thread(client, done, self.reactor)

        timer = self.reactor.callLater(self.command_timeout + self.stop_timeout, finish, "timeout")
        gathered: Deferred[Any] = gatherResults(releasing, consumeErrors=True)
        gathered.addBoth(shut_down)
        return _chained(stopped)

    # -- health -----------------------------------------------------------

    def _stall(self) -> tuple[float, str] | None:
        watch = self._watch
        if watch is None:
            return None
        oldest = watch.oldest()
        if oldest is not None and oldest[0] > self.command_timeout:
            return oldest
        return None

    def online(self) -> str | None:
        """See :meth:`IMediaRelay.online`."""
        if self._state == "stopped":
            return "media relay (rtp.io) not started"
        if self._state == "stopping":
            return "media relay (rtp.io) stopping"
        if self._failed is not None:
            return f"rtp.io did not start: {self._failed}"
        stall = self._stall()
        if stall is not None:
            return (
                f"rtp.io not answering: a {stall[1]} command has waited {stall[0]:.1f} s"
                f" (limit {self.command_timeout:g} s)"
            )
        client = self._client
        if client is None and self._creating is not None:
            return "rtp.io not ready: an earlier engine of this process is still shutting down"
        if client is None or not client.online:
            if client is not None and client.caps_done:
                return "rtp.io offline: its heartbeat failed"
            return "rtp.io not ready: waiting for its version and capability replies"
        if len(self._sessions) + len(self._closing) >= self.capacity:
            return f"no free media ports ({len(self._sessions)} calls hold them)"
        return None

    def _watchdog(self) -> None:
        stall = self._stall()
        if stall is not None and not self._stalled:
            self._stalled = True
            log.error(
                "media relay (rtp.io) not answering: a {verb} command has waited {age:.1f} s"
                " (limit {limit:g} s); new calls get 503 until it answers",
                verb=stall[1],
                age=stall[0],
                limit=self.command_timeout,
            )
        elif stall is None and self._stalled:
            self._stalled = False
            log.info("media relay (rtp.io) answering again")
        client = self._client
        if not self._online_logged and client is not None and client.online:
            self._online_logged = True
            log.info("media relay (rtp.io) online: version and capabilities answered")

    # -- sessions ---------------------------------------------------------

    def new_session(
        self,
        call_id: str,
        vendor_networks: Sequence[IPNetwork] = (),
        sip_call_id: str | None = None,
    ) -> RtpioMediaSession:
        """See :meth:`IMediaRelay.new_session`: a Sippy ``Rtp_proxy_session``, nothing sent yet."""
        if len(self._sessions) + len(self._closing) >= self.capacity and self._state == "running":
            self._metrics.allocation_failures.labels(reason="ports_exhausted").inc()
            log.warn(
                "media {call_id}: no free ports in {port_min}-{port_max} ({sessions} calls hold ports)",
                call_id=call_id,
                sip_call_id=sip_call_id,
                port_min=self.config.port_min,
                port_max=self.config.port_max,
                sessions=len(self._sessions),
            )
            raise PortsExhaustedError(f"rtp.io port range full ({len(self._sessions)} calls)")
        reason = self.online()
        if reason is not None:
            self._metrics.allocation_failures.labels(reason="not_running").inc()
            raise MediaNotRunningError(reason)
        rtpp_id = f"{_UNSAFE.sub('_', call_id)[:64]}-{token_hex(4)}"
        try:
            rtpps = Rtp_proxy_session(self._global_config, call_id=rtpp_id)
        except RtpProxyError as e:
            self._metrics.allocation_failures.labels(reason="not_running").inc()
            raise MediaNotRunningError(f"rtp.io: {e}") from e
        atype = sdp_address_type(self.address)
        for side in (rtpps.caller, rtpps.callee):
            side.origin.address = self.address
            side.origin.address_type = atype
        session = RtpioMediaSession(call_id, rtpp_id, self, rtpps)
        self._sessions[session] = None
        self._metrics.sessions.set(len(self._sessions))
        log.info(
            "media {call_id}: rtp.io session {rtpp_id}",
            call_id=call_id,
            sip_call_id=sip_call_id,
            rtpp_id=rtpp_id,
        )
        return session

    def _session_released(self, session: RtpioMediaSession) -> None:
        if session in self._sessions:
            del self._sessions[session]
            self._closing[session] = None
            self._metrics.sessions.set(len(self._sessions))
            self._metrics.session_released("rtp")

    def _session_closed(self, session: RtpioMediaSession, final: MediaCounters) -> None:
        if session not in self._closing:
            return
        del self._closing[session]
        self._released.add(final)

    def _poll_round(self) -> None:
        """Poll up to ``polls_per_round`` sessions' counters, round-robin; none while stalled."""
        watch = self._watch
        if self._state != "running" or watch is None or self._stall() is not None:
            return
        if watch.waiting > self.polls_per_round:
            return  # rtp.io is behind: do not pile more on
        sessions = list(self._sessions)
        if not sessions:
            return
        budget = self.polls_per_round
        start = self._cursor % len(sessions)
        looked = 0
        for looked in range(1, len(sessions) + 1):
            if sessions[(start + looked - 1) % len(sessions)].poll():
                budget -= 1
                if budget <= 0:
                    break
        self._cursor = start + looked

    # -- counters ---------------------------------------------------------

    def _totals(self) -> tuple[dict[str, FlowCounters], dict[str, int]]:
        live = (session.counters() for session in (*self._sessions, *self._closing))
        return self._released.with_live(live)

    def flush_metrics(self) -> None:
        """Bring the Prometheus counters up to the engine's totals (as of the last polls)."""
        flows, drops = self._totals()
        self._metrics.add_totals(flows, drops)

    def _flush_quietly(self) -> None:
        try:
            self.flush_metrics()
        except Exception:
            log.failure("media metrics could not be updated")

    def stats(self) -> RelayStats:
        """See :meth:`IMediaRelay.stats`; also brings the Prometheus counters up to date."""
        flows, drops = self._totals()
        self._metrics.add_totals(flows, drops)
        busy = len(self._sessions) + len(self._closing)
        return RelayStats(
            sessions=len(self._sessions),
            ports_in_use=4 * busy,
            ports_total=(self.config.port_max - self.config.port_min + 1) // 4 * 4,
            livevox_to_vendor=flows["livevox_to_vendor"],
            vendor_to_livevox=flows["vendor_to_livevox"],
            dropped=drops,
        )


def _chained(d: Deferred[None]) -> Deferred[None]:
    """A new Deferred that fires when ``d`` does, leaving ``d`` untouched for other waiters."""
    out: Deferred[None] = Deferred()

    def relay(result: object) -> object:
        out.callback(None)
        return result

    d.addBoth(relay)
    return out
