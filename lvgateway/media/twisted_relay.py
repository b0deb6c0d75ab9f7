"""The pure Twisted media engine: four UDP ports a call, symmetric RTP with guarded latching.

Each call gets two RTP/RTCP pairs on ``MediaConfig.listen_host``: the
*LiveVox-facing* pair, which the SDP sent to LiveVox names and LiveVox sends
to, and the *vendor-facing* pair, named in the SDP sent to the vendor. A
datagram from LiveVox on the LiveVox-facing RTP port goes out of the
vendor-facing RTP port to the vendor, and the reverse; RTCP the same on the
``+1`` ports. Payloads are untouched.

**Latching** (:mod:`lvgateway.media.latching`). A side's datagrams are
accepted only from the address and port its SDP names, and go back there.
Anyone else's, a host inside the allowed networks included, are dropped and
counted (``unknown_source``): a stranger can neither take nor inject audio.
A new SDP from a side moves it; an old-style hold (``c=0.0.0.0``) stops
sending to it but still takes its datagrams from where it was. A vendor
behind NAT is the opt-in (``[media] vendor_latching = "first_packet"``):
the first datagram from the vendor's networks latches its port, and the
latch never moves during the call.

**Hot path.** ``datagramReceived`` compares the source with the latched
address, reads the clock, calls the other port's ``socket.sendto`` directly
(Twisted's ``Port.write`` re-validates the address of every datagram), and
adds to plain integer counters; Prometheus counters are brought up to date
once a second (``metrics_interval``), and on :meth:`TwistedMediaRelay.stats`.
Nothing is logged per datagram.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from lvgateway.config.model import IPNetwork, MediaConfig
from lvgateway.media.answered import AnsweredSession
from lvgateway.media.counters import (
    FlowCounters,
    MediaCounters,
    MediaSide,
    RelayStats,
    ReleasedTotals,
)
from lvgateway.media.errors import (
    MediaNotRunningError,
    MediaSdpError,
    MediaSessionReleasedError,
    PortsExhaustedError,
)
from lvgateway.media.interfaces import IMediaRelay, IMediaSession, SdpResultCallback
from lvgateway.media.latching import LatchMode, admits
from lvgateway.media.metrics import MediaMetrics
from lvgateway.media.ports import BoundPort, PortAllocator
from lvgateway.media.profiles import PlainRtpOnly
from lvgateway.media.sdp import MediaTarget, rewrite_sdp

__all__ = ["TwistedMediaRelay", "TwistedMediaSession"]

log = Logger()

Address = tuple[str, int]

#: Latch changes logged per port; more are only counted (a flapping source).
LATCH_LOG_LIMIT = 3


def _no_socket(data: bytes, addr: Address) -> int:
    raise OSError("media port not bound")


def _in_networks(host: str, networks: Sequence[IPNetwork]) -> bool:
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class _RelayPort(DatagramProtocol):
    """One local port: it receives one side's datagrams of one stream, and sends that side the other's.

    ``remote`` is the address the side was last heard from on this stream
    (``None`` before its first datagram); ``dest`` is where datagrams for
    the side go (its SDP address until it is heard from, ``None`` on hold).
    ``peer`` is the other side's port of the same stream.
    """

    noisy = False

    def __init__(
        self,
        call_id: str,
        side: MediaSide,
        stream: str,
        networks: Sequence[IPNetwork],
        clock: Callable[[], float],
        mode: LatchMode = "strict",
    ) -> None:
        self.call_id = call_id
        self.mode: LatchMode = mode
        self.side = side
        self.stream = stream
        self.networks = tuple(networks)
        self.clock = clock
        #: Set when the session pairs its ports; dropped at release, so the
        #: two ports do not keep each other in a cycle for the collector.
        self.peer: _RelayPort | None = None
        self.sendto: Callable[[bytes, Address], int] = _no_socket
        self.remote: Address | None = None
        self.dest: Address | None = None
        self.sdp_addr: Address | None = None
        self.sdp_host: str | None = None
        self.hold = False
        self.muted = False
        self.dropped_muted = 0
        self.packets = 0
        self.octets = 0
        self.dropped_source = 0
        self.dropped_nodest = 0
        self.dropped_send = 0
        self.last: float | None = None
        self.latches = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Relay one datagram to the other side, if it comes from this side."""
        if addr != self.remote and not self._admit(addr):
            return
        self.last = self.clock()
        if self.muted:
            self.dropped_muted += 1
            return
        peer = self.peer
        dest = peer.dest if peer is not None else None
        if peer is None or dest is None:
            self.dropped_nodest += 1
            return
        try:
            peer.sendto(datagram, dest)
        except OSError:
            self.dropped_send += 1
            return
        self.packets += 1
        self.octets += len(datagram)

    def _admit(self, addr: Address) -> bool:
        host = addr[0]
        allowed = self.mode == "first_packet" and _in_networks(host, self.networks)
        if admits(addr, self.sdp_addr, self.remote, self.mode, allowed):
            previous, self.remote = self.remote, addr
            if not self.hold:
                self.dest = addr
            self.latches += 1
            if self.latches <= LATCH_LOG_LIMIT and addr != self.sdp_addr:
                log.info(
                    "media {call_id}: {side} {stream} latched to {host}:{port}"
                    " (SDP said {sdp}, was {previous})",
                    call_id=self.call_id,
                    side=self.side,
                    stream=self.stream,
                    host=host,
                    port=addr[1],
                    sdp=self.sdp_addr,
                    previous=previous,
                )
            return True
        self.dropped_source += 1
        if self.dropped_source in (1, 10, 100, 1000, 10000):
            log.warn(
                "media {call_id}: {stream} datagram from {host}:{port} dropped on the"
                " {side}-facing port: not the address {side}'s SDP names ({sdp})"
                " ({dropped} dropped here so far)",
                call_id=self.call_id,
                side=self.side,
                stream=self.stream,
                host=host,
                port=addr[1],
                sdp=self.sdp_addr,
                dropped=self.dropped_source,
            )
        return False

    def set_target(self, addr: Address | None, host: str | None, hold: bool) -> None:
        """Take the side's address from a new SDP; an unchanged SDP keeps the latch."""
        if addr == self.sdp_addr and hold == self.hold and (host is None or host == self.sdp_host):
            return
        if addr is not None:  # an old-style hold names no address: keep taking it from the last
            self.sdp_addr = addr
        if host is not None:
            self.sdp_host = host
        self.hold = hold
        if self.mode == "first_packet" and self.remote is not None:
            self.dest = None if hold else self.remote  # the NAT latch never moves
            return
        self.remote = None
        self.dest = None if hold else addr

    def shut(self) -> None:
        """Stop sending: the session is released."""
        self.dest = None
        self.peer = None
        self.sendto = _no_socket


@implementer(IMediaSession)
@attrs.define(eq=False)
class TwistedMediaSession(AnsweredSession, PlainRtpOnly):
    """One call's four relay ports; made by :meth:`TwistedMediaRelay.new_session`.

    :param call_id: the gateway's call id, for logs.
    :param relay: the engine it belongs to.
    :param livevox_pair: the LiveVox-facing RTP and RTCP ports.
    :param vendor_pair: the vendor-facing RTP and RTCP ports.
    """

    call_id: str
    _relay: TwistedMediaRelay
    _livevox_pair: tuple[BoundPort[_RelayPort], BoundPort[_RelayPort]]
    _vendor_pair: tuple[BoundPort[_RelayPort], BoundPort[_RelayPort]]
    _answered_at: float | None = attrs.field(default=None, init=False)
    _released: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _waiters: list[Deferred[None]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        for mine, theirs in zip(self._livevox_pair, self._vendor_pair, strict=True):
            mine.protocol.peer = theirs.protocol
            theirs.protocol.peer = mine.protocol
        for bound in self._bound():
            bound.protocol.sendto = bound.listening.getHandle().sendto  # type: ignore[attr-defined]

    def _bound(self) -> tuple[BoundPort[_RelayPort], ...]:
        return (*self._livevox_pair, *self._vendor_pair)

    def _ports(self) -> tuple[_RelayPort, _RelayPort, _RelayPort, _RelayPort]:
        lv_rtp, lv_rtcp = self._livevox_pair
        vd_rtp, vd_rtcp = self._vendor_pair
        return lv_rtp.protocol, lv_rtcp.protocol, vd_rtp.protocol, vd_rtcp.protocol

    @property
    def livevox_port(self) -> int:
        """The LiveVox-facing RTP port (named in the SDP sent to LiveVox)."""
        return self._livevox_pair[0].number

    @property
    def vendor_port(self) -> int:
        """The vendor-facing RTP port (named in the SDP sent to the vendor)."""
        return self._vendor_pair[0].number

    def on_caller_sdp_change(self, sdp_body: Any, result_callback: SdpResultCallback) -> None:
        """See :meth:`IMediaSession.on_caller_sdp_change`; calls back before returning."""
        target = self._rewrite("livevox", sdp_body, self.vendor_port)
        if isinstance(target, Exception):
            result_callback(None, ex=target)
            return
        result_callback(sdp_body)

    def on_callee_sdp_change(self, sdp_body: Any, result_callback: SdpResultCallback) -> Any:
        """See :meth:`IMediaSession.on_callee_sdp_change`: returns the body, errors on the next turn."""
        target = self._rewrite("vendor", sdp_body, self.livevox_port)
        if isinstance(target, Exception):
            self._relay.reactor.callLater(0, result_callback, None, ex=target)
            return None
        return sdp_body

    def _rewrite(self, side: MediaSide, sdp_body: Any, rtp_port: int) -> MediaTarget | Exception:
        if self._released:
            return MediaSessionReleasedError(f"media of call {self.call_id} already released")
        try:
            target = rewrite_sdp(sdp_body, self._relay.address, rtp_port)
        except MediaSdpError as e:
            log.warn(
                "media {call_id}: {side}'s SDP refused: {reason}",
                call_id=self.call_id,
                side=side,
                reason=str(e),
            )
            return e
        except Exception as e:
            log.failure(
                "media {call_id}: rewriting {side}'s SDP failed", call_id=self.call_id, side=side
            )
            return MediaSdpError(f"SDP could not be rewritten: {type(e).__name__}")
        rtp, rtcp = self._livevox_pair if side == "livevox" else self._vendor_pair
        rtp.protocol.set_target(target.rtp, target.host, target.hold)
        rtcp_host = target.rtcp[0] if target.rtcp is not None else target.host
        rtcp.protocol.set_target(target.rtcp, rtcp_host, target.hold)
        log.debug(
            "media {call_id}: {side} wants RTP at {rtp} (hold: {hold})",
            call_id=self.call_id,
            side=side,
            rtp=target.rtp,
            hold=target.hold,
        )
        return target

    def mute(self, side: MediaSide) -> Deferred[None]:
        """See :meth:`IMediaSession.mute`: the side's RTP port stops relaying, at once."""
        lv_rtp, _, vd_rtp, _ = self._ports()
        port = lv_rtp if side == "livevox" else vd_rtp
        if not port.muted:
            port.muted = True
            log.info("media {call_id}: {side} muted", call_id=self.call_id, side=side)
        return succeed(None)

    def counters(self) -> MediaCounters:
        """See :meth:`IMediaSession.counters`."""
        lv_rtp, lv_rtcp, vd_rtp, vd_rtcp = self._ports()
        ports = (lv_rtp, lv_rtcp, vd_rtp, vd_rtcp)
        return MediaCounters(
            livevox_to_vendor=FlowCounters(
                lv_rtp.packets + lv_rtcp.packets, lv_rtp.octets + lv_rtcp.octets
            ),
            vendor_to_livevox=FlowCounters(
                vd_rtp.packets + vd_rtcp.packets, vd_rtp.octets + vd_rtcp.octets
            ),
            dropped={
                "unknown_source": sum(p.dropped_source for p in ports),
                "no_destination": sum(p.dropped_nodest for p in ports),
                "send_error": sum(p.dropped_send for p in ports),
                "muted": sum(p.dropped_muted for p in ports),
            },
            last_from_livevox=_latest(lv_rtp.last, lv_rtcp.last),
            last_from_vendor=_latest(vd_rtp.last, vd_rtcp.last),
            livevox_source=lv_rtp.remote,
            vendor_source=vd_rtp.remote,
            livevox_port=self.livevox_port,
            vendor_port=self.vendor_port,
            muted=frozenset(p.side for p in (lv_rtp, vd_rtp) if p.muted),
        )

    def release(self) -> Deferred[None]:
        """See :meth:`IMediaSession.release`."""
        waiter: Deferred[None] = Deferred()
        if self._closed:
            waiter.callback(None)
            return waiter
        self._waiters.append(waiter)
        if self._released:
            return waiter
        self._released = True
        for port in self._ports():
            port.shut()
        final = self.counters()
        self._relay._session_released(self, final)
        log.info(
            "media {call_id}: released ports {livevox_port} (LiveVox) and {vendor_port} (vendor);"
            " relayed {lv_packets} packets from LiveVox, {vd_packets} from the vendor;"
            " dropped {dropped}",
            call_id=self.call_id,
            livevox_port=self.livevox_port,
            vendor_port=self.vendor_port,
            lv_packets=final.livevox_to_vendor.packets,
            vd_packets=final.vendor_to_livevox.packets,
            dropped=dict(final.dropped),
        )
        closing = [self._relay._allocator.close(bound) for bound in self._bound()]
        gatherResults(closing, consumeErrors=True).addBoth(self._all_closed)
        return waiter

    def _all_closed(self, result: object) -> None:
        self._closed = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)


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
class TwistedMediaRelay:
    """The pure Twisted :class:`~lvgateway.media.interfaces.IMediaRelay`.

    :param reactor: provides ``IReactorUDP`` and ``IReactorTime``.
    :param config: the media settings (address, port range, timeouts).
    :param registry: the Prometheus registry its metrics go on.
    :param livevox_networks: LiveVox's networks (``sip.allowed_networks``),
        for the log; LiveVox's media is taken only from the address its SDP
        names.
    :param monotonic: the clock of last-packet times and media timeouts.
    :param metrics_interval: how often the Prometheus counters catch up.
    :param port_rng: picks the ports (the operating system's randomness by default).
    :raises ValueError: when the address to advertise is a wildcard or not
        an IP address, or the port range holds no pair.
    """

    reactor: Any
    config: MediaConfig
    registry: CollectorRegistry
    livevox_networks: Sequence[IPNetwork] = ()
    monotonic: Callable[[], float] = time.monotonic
    metrics_interval: float = 1.0
    port_rng: random.Random | None = None
    address: str = attrs.field(init=False)
    _allocator: PortAllocator = attrs.field(init=False)
    _metrics: MediaMetrics = attrs.field(init=False)
    _sessions: dict[TwistedMediaSession, None] = attrs.field(factory=dict, init=False)
    _state: str = attrs.field(default="stopped", init=False)
    _released: ReleasedTotals = attrs.field(init=False, factory=ReleasedTotals)
    _flusher: LoopingCall | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.address = _advertised(self.config)
        self._allocator = PortAllocator(
            self.reactor,
            self.config.listen_host,
            self.config.port_min,
            self.config.port_max,
            rng=self.port_rng or random.SystemRandom(),
        )
        self._metrics = MediaMetrics.on(self.registry)

    def start(self) -> None:
        """See :meth:`IMediaRelay.start`."""
        if self._state == "running":
            return
        self._state = "running"
        flusher = LoopingCall(self._flush_quietly)
        flusher.clock = self.reactor
        flusher.start(self.metrics_interval, now=False).addErrback(
            lambda f: log.failure("media metrics loop stopped", f)
        )
        self._flusher = flusher
        log.info(
            "media relay (Twisted) on {host}, ports {port_min}-{port_max}, advertised as {address}",
            host=self.config.listen_host,
            port_min=self._allocator.port_min,
            port_max=self.config.port_max,
            address=self.address,
        )

    def stop(self) -> Deferred[None]:
        """See :meth:`IMediaRelay.stop`."""
        if self._state == "stopped":
            return succeed(None)
        self._state = "stopping"
        releasing = [session.release() for session in list(self._sessions)]

        def stopped(result: object) -> None:
            if self._flusher is not None and self._flusher.running:
                self._flusher.stop()
            self._flusher = None
            self._flush_quietly()
            self._state = "stopped"
            log.info("media relay stopped")

        d: Deferred[Any] = gatherResults(releasing, consumeErrors=True)
        return d.addBoth(stopped)

    def online(self) -> str | None:
        """See :meth:`IMediaRelay.online`."""
        if self._state == "stopped":
            return "media relay not started"
        if self._state == "stopping":
            return "media relay stopping"
        if self._allocator.pairs_free() < 2:
            return f"no free media ports ({len(self._sessions)} calls hold them)"
        return None

    def new_session(
        self,
        call_id: str,
        vendor_networks: Sequence[IPNetwork] = (),
        sip_call_id: str | None = None,
    ) -> TwistedMediaSession:
        """See :meth:`IMediaRelay.new_session`."""
        if self._state != "running":
            self._metrics.allocation_failures.labels(reason="not_running").inc()
            raise MediaNotRunningError(f"media relay is {self._state}")
        clock = self.monotonic

        def port_factory(side: MediaSide, networks: Iterable[IPNetwork]) -> Any:
            nets = tuple(networks)
            mode: LatchMode = "strict" if side == "livevox" else self.config.vendor_latching
            return lambda number: _RelayPort(
                call_id, side, "rtcp" if number % 2 else "rtp", nets, clock, mode
            )

        try:
            livevox_pair = self._allocator.listen_pair(
                port_factory("livevox", self.livevox_networks)
            )
        except PortsExhaustedError:
            self._refused(call_id, sip_call_id)
            raise
        try:
            vendor_pair = self._allocator.listen_pair(port_factory("vendor", vendor_networks))
        except PortsExhaustedError:
            for bound in livevox_pair:
                self._allocator.close(bound)
            self._refused(call_id, sip_call_id)
            raise
        session = TwistedMediaSession(call_id, self, livevox_pair, vendor_pair)
        self._sessions[session] = None
        self._metrics.sessions.set(len(self._sessions))
        log.info(
            "media {call_id}: ports {livevox_port} (LiveVox-facing), {vendor_port} (vendor-facing)",
            call_id=call_id,
            sip_call_id=sip_call_id,
            livevox_port=session.livevox_port,
            vendor_port=session.vendor_port,
        )
        return session

    def _refused(self, call_id: str, sip_call_id: str | None) -> None:
        self._metrics.allocation_failures.labels(reason="ports_exhausted").inc()
        log.warn(
            "media {call_id}: no free ports in {port_min}-{port_max} ({sessions} calls hold ports)",
            call_id=call_id,
            sip_call_id=sip_call_id,
            port_min=self._allocator.port_min,
            port_max=self.config.port_max,
            sessions=len(self._sessions),
        )

    def _session_released(self, session: TwistedMediaSession, final: MediaCounters) -> None:
        if session not in self._sessions:
            return
        del self._sessions[session]
        self._released.add(final)
        self._metrics.sessions.set(len(self._sessions))
        self._metrics.session_released("rtp")

    def _totals(self) -> tuple[dict[str, FlowCounters], dict[str, int]]:
        live = (session.counters() for session in self._sessions)
        return self._released.with_live(live)

    def flush_metrics(self) -> None:
        """Bring the Prometheus counters up to the relay's totals now."""
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
        return RelayStats(
            sessions=len(self._sessions),
            ports_in_use=self._allocator.ports_busy,
            ports_total=self._allocator.pairs_total * 2,
            livevox_to_vendor=flows["livevox_to_vendor"],
            vendor_to_livevox=flows["vendor_to_livevox"],
            dropped=drops,
        )
