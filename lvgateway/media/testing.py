"""Test doubles for the media part: a verified fake engine, and an in-memory UDP reactor.

- :class:`FakeMediaRelay` and :class:`FakeMediaSession` provide
  :class:`~lvgateway.media.interfaces.IMediaRelay` and
  :class:`~lvgateway.media.interfaces.IMediaSession` for the SIP part's unit
  tests: they rewrite SDP exactly as the real relay does (same function,
  deterministic ports: session *n* gets ``first_port + 4n`` facing LiveVox and
  ``+ 2`` facing the vendor) without binding anything, and record what they
  were asked. Failures are switches: :attr:`FakeMediaRelay.offline_reason`,
  :attr:`FakeMediaRelay.max_sessions`, :attr:`FakeMediaSession.fail_sdp`.
- :class:`MemoryUdpReactor` is a ``MemoryReactorClock`` with ``listenUDP``,
  for unit tests of the real relay that never spin a reactor.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from lvgateway.config.model import IPNetwork
from lvgateway.media.counters import (
    DIRECTIONS,
    DROP_REASONS,
    FlowCounters,
    MediaCounters,
    MediaSide,
    RelayStats,
)
from lvgateway.media.errors import (
    MediaNotRunningError,
    MediaSdpError,
    MediaSessionReleasedError,
    PortsExhaustedError,
)
from lvgateway.media.interfaces import IMediaRelay, IMediaSession, SdpResultCallback
from lvgateway.media.profiles import PlainRtpOnly
from lvgateway.media.sdp import MediaTarget, rewrite_sdp

__all__ = ["FakeMediaRelay", "FakeMediaSession", "MemoryUdpPort", "MemoryUdpReactor", "PortsInOrder"]

Address = tuple[str, int]


@implementer(IMediaSession)
@attrs.define(eq=False)
class FakeMediaSession(PlainRtpOnly):
    """A media session that rewrites SDP and relays nothing.

    :param call_id: as given to :meth:`FakeMediaRelay.new_session`.
    :param address: the address it puts in SDP.
    :param livevox_port: the RTP port it puts in the SDP for LiveVox.
    :param vendor_port: the RTP port it puts in the SDP for the vendor.
    :param vendor_networks: as given to :meth:`FakeMediaRelay.new_session`.
    :param clock: where a failed :meth:`on_callee_sdp_change` schedules its
        ``result_callback`` (``callLater(0, ...)``, as the real relay does);
        without one, it waits in :attr:`pending` for :meth:`run_pending`.
    """

    call_id: str
    address: str
    livevox_port: int
    vendor_port: int
    vendor_networks: tuple[IPNetwork, ...] = ()
    clock: Any = None
    #: What each SDP from LiveVox said, in order.
    livevox_targets: list[MediaTarget] = attrs.field(factory=list)
    #: What each SDP from the vendor said, in order.
    vendor_targets: list[MediaTarget] = attrs.field(factory=list)
    #: Set to make every SDP hook fail with this error (a Sippy ``SdpParseError``
    #: or ``RtpProxyError`` subclass, such as :class:`MediaSdpError`).
    fail_sdp: Exception | None = None
    #: The side :meth:`silent_side` reports once answered.
    silent: MediaSide | None = None
    #: What :meth:`silence` reports for each side once answered (0 when not set).
    silences: dict[str, float] = attrs.field(factory=dict)
    #: What :meth:`counters` returns.
    fake_counters: MediaCounters = attrs.field(factory=MediaCounters)
    #: Callbacks waiting for :meth:`run_pending` (when there is no clock).
    pending: list[Callable[[], object]] = attrs.field(factory=list)
    answered: bool = False
    released: bool = False
    #: The sides :meth:`mute` was asked to mute, in order, once each.
    muted: list[MediaSide] = attrs.field(factory=list)
    #: Each :meth:`use_vendor_profile` call's ``(endpoint, profile, codec_map)``, in order.
    vendor_profiles: list[tuple[str, str, Any]] = attrs.field(factory=list)

    def use_vendor_profile(self, endpoint: str, profile: Any, codec_map: Any = None) -> None:
        """Record the call in :attr:`vendor_profiles`; refuse all but plain RTP, as the plain engines do."""
        self.vendor_profiles.append((endpoint, profile, codec_map))
        PlainRtpOnly.use_vendor_profile(self, endpoint, profile, codec_map)

    def on_caller_sdp_change(self, sdp_body: Any, result_callback: SdpResultCallback) -> None:
        """Rewrite LiveVox's SDP to :attr:`address` and :attr:`vendor_port`; call back at once."""
        outcome = self._rewrite(sdp_body, self.vendor_port, self.livevox_targets)
        if isinstance(outcome, Exception):
            result_callback(None, ex=outcome)
        else:
            result_callback(sdp_body)

    def on_callee_sdp_change(self, sdp_body: Any, result_callback: SdpResultCallback) -> Any:
        """Rewrite the vendor's SDP to :attr:`address` and :attr:`livevox_port` and return it.

        An error goes to ``result_callback`` later (on :attr:`clock`, or in
        :attr:`pending`), and ``None`` is returned, as with the real relay.
        """
        outcome = self._rewrite(sdp_body, self.livevox_port, self.vendor_targets)
        if isinstance(outcome, Exception):
            if self.clock is not None:
                self.clock.callLater(0, result_callback, None, ex=outcome)
            else:
                self.pending.append(lambda: result_callback(None, ex=outcome))
            return None
        return sdp_body

    def _rewrite(
        self, sdp_body: Any, port: int, targets: list[MediaTarget]
    ) -> MediaTarget | Exception:
        if self.released:
            return MediaSessionReleasedError(f"media of call {self.call_id} already released")
        if self.fail_sdp is not None:
            return self.fail_sdp
        try:
            target = rewrite_sdp(sdp_body, self.address, port)
        except MediaSdpError as e:
            return e
        targets.append(target)
        return target

    def run_pending(self) -> None:
        """Deliver the callbacks waiting in :attr:`pending`."""
        pending, self.pending = self.pending, []
        for deliver in pending:
            deliver()

    def mark_answered(self) -> None:
        """Record that the call was answered."""
        self.answered = True

    def silent_side(self) -> MediaSide | None:
        """Return :attr:`silent` once answered and not released, else ``None``."""
        return self.silent if self.answered and not self.released else None

    def silence(self, side: MediaSide) -> float | None:
        """Return :attr:`silences` for ``side`` (0 unless set) once answered and not released."""
        if not self.answered or self.released:
            return None
        return self.silences.get(side, 0.0)

    def mute(self, side: MediaSide) -> Deferred[None]:
        """Record ``side`` in :attr:`muted` (once); fires at once."""
        if side not in self.muted:
            self.muted.append(side)
        return succeed(None)

    def counters(self) -> MediaCounters:
        """Return :attr:`fake_counters`, with the sides :meth:`mute` was asked for."""
        return attrs.evolve(self.fake_counters, muted=frozenset(self.muted))

    def release(self) -> Deferred[None]:
        """Mark the session released; fires at once."""
        self.released = True
        return succeed(None)


@implementer(IMediaRelay)
@attrs.define(eq=False)
class FakeMediaRelay:
    """A media engine that hands out :class:`FakeMediaSession` objects.

    :param address: the address its sessions put in SDP.
    :param first_port: session *n* gets ``first_port + 4n`` (LiveVox-facing)
        and ``first_port + 4n + 2`` (vendor-facing).
    :param clock: given to each session (see :class:`FakeMediaSession`).
    :param max_sessions: live sessions beyond this raise
        :class:`~lvgateway.media.errors.PortsExhaustedError`; ``None`` for no limit.
    :param offline_reason: when set, :meth:`online` returns it and
        :meth:`new_session` raises
        :class:`~lvgateway.media.errors.MediaNotRunningError`.
    """

    address: str = "127.0.0.1"
    first_port: int = 40000
    clock: Any = None
    max_sessions: int | None = None
    offline_reason: str | None = None
    #: Every session made, in order, released or not.
    sessions: list[FakeMediaSession] = attrs.field(factory=list)
    started: bool = False

    def start(self) -> None:
        """Mark the engine started."""
        self.started = True

    def stop(self) -> Deferred[None]:
        """Release every session and mark the engine stopped."""
        for session in self.live_sessions():
            session.release()
        self.started = False
        return succeed(None)

    def online(self) -> str | None:
        """``None`` once started, unless :attr:`offline_reason` is set."""
        if not self.started:
            return "media relay not started"
        return self.offline_reason

    def live_sessions(self) -> list[FakeMediaSession]:
        """The sessions not yet released."""
        return [s for s in self.sessions if not s.released]

    def new_session(
        self,
        call_id: str,
        vendor_networks: Sequence[IPNetwork] = (),
        sip_call_id: str | None = None,
    ) -> FakeMediaSession:
        """Make a session with the next ports, or raise as the switches say."""
        reason = self.online()
        if reason is not None:
            raise MediaNotRunningError(reason)
        if self.max_sessions is not None and len(self.live_sessions()) >= self.max_sessions:
            raise PortsExhaustedError(f"fake media relay is full ({self.max_sessions} sessions)")
        base = self.first_port + 4 * len(self.sessions)
        session = FakeMediaSession(
            call_id=call_id,
            address=self.address,
            livevox_port=base,
            vendor_port=base + 2,
            vendor_networks=tuple(vendor_networks),
            clock=self.clock,
        )
        self.sessions.append(session)
        return session

    def stats(self) -> RelayStats:
        """Sum the sessions' :attr:`FakeMediaSession.fake_counters`."""
        flows: dict[str, FlowCounters] = dict.fromkeys(DIRECTIONS, FlowCounters())
        drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        for s in self.sessions:
            c = s.counters()
            flows["livevox_to_vendor"] += c.livevox_to_vendor
            flows["vendor_to_livevox"] += c.vendor_to_livevox
            for reason, count in c.dropped.items():
                drops[reason] = drops.get(reason, 0) + count
        live = len(self.live_sessions())
        return RelayStats(
            sessions=live,
            ports_in_use=4 * live,
            ports_total=4 * (self.max_sessions or 0),
            livevox_to_vendor=flows["livevox_to_vendor"],
            vendor_to_livevox=flows["vendor_to_livevox"],
            dropped=drops,
        )


class _MemorySocket:
    def __init__(self, port: MemoryUdpPort) -> None:
        self._port = port

    def sendto(self, data: bytes, addr: Address) -> int:
        reactor = self._port.reactor
        if reactor.send_error is not None:
            raise reactor.send_error
        reactor.sent.append(((self._port.interface, self._port.number), data, addr))
        return len(data)


@implementer(IListeningPort)
class MemoryUdpPort:
    """A UDP port of :class:`MemoryUdpReactor`: ``getHandle().sendto`` records into ``reactor.sent``."""

    def __init__(
        self, reactor: MemoryUdpReactor, number: int, interface: str, protocol: DatagramProtocol
    ) -> None:
        self.reactor = reactor
        self.number = number
        self.interface = interface
        self.protocol = protocol
        self.open = True
        self._socket = _MemorySocket(self)

    def getHandle(self) -> _MemorySocket:
        """The fake socket."""
        return self._socket

    def getHost(self) -> IPv4Address:
        """The bound address."""
        return IPv4Address("UDP", self.interface, self.number)

    def startListening(self) -> None:
        """Already listening."""

    def stopListening(self) -> Deferred[None]:
        """Close on the next ``reactor.advance(0)``, as Twisted's UDP port closes on the next turn."""
        closed: Deferred[None] = Deferred()

        def close() -> None:
            self.open = False
            self.reactor.udp.pop((self.interface, self.number), None)
            self.protocol.doStop()  # type: ignore[no-untyped-call]
            closed.callback(None)

        self.reactor.callLater(0, close)
        return closed

    def write(self, data: bytes, addr: Address) -> None:
        """Send through the fake socket."""
        self._socket.sendto(data, addr)


class MemoryUdpReactor(MemoryReactorClock):
    """A ``MemoryReactorClock`` that can also ``listenUDP``, in memory.

    ``sent`` records every datagram as ``((from_host, from_port), data, to)``;
    :meth:`deliver` hands a datagram to a bound port's protocol. Ports in
    ``taken`` (``(interface, number)``) cannot be bound, as if another
    process held them; ``send_error`` makes every send raise it.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.udp: dict[Address, MemoryUdpPort] = {}
        self.taken: set[Address] = set()
        self.sent: list[tuple[Address, bytes, Address]] = []
        self.send_error: OSError | None = None
        self._next_ephemeral = 50000

    def listenUDP(
        self,
        port: int,
        protocol: DatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,  # noqa: N803  (Twisted's name)
    ) -> MemoryUdpPort:
        """Bind ``port`` (0: any) on ``interface``, or raise ``CannotListenError`` if it is in use."""
        if port == 0:
            while (interface, self._next_ephemeral) in self.udp:
                self._next_ephemeral += 1
            port = self._next_ephemeral
        key = (interface, port)
        if key in self.udp or key in self.taken:
            raise CannotListenError(  # type: ignore[no-untyped-call]
                interface, port, OSError(errno.EADDRINUSE, "in use")
            )
        listening = MemoryUdpPort(self, port, interface, protocol)
        self.udp[key] = listening
        protocol.makeConnection(listening)  # type: ignore[arg-type]
        return listening

    def deliver(self, to: Address, data: bytes, source: Address) -> None:
        """Hand ``data`` from ``source`` to the protocol bound at ``to``."""
        self.udp[to].protocol.datagramReceived(data, source)


class PortsInOrder(random.Random):
    """A port picker that shuffles nothing: pairs come in order from the range's start, for tests that name ports."""

    def shuffle(self, x: Any) -> None:  # type: ignore[override]
        """Leave the order as it is."""

    def randrange(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        """Draw the range's first pair, always (then the allocator goes on in order)."""
        return 0
