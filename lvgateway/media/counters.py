"""What a media session and an engine count, as frozen snapshots, and the media-timeout rule.

The names used throughout the media part:

- a *side* is ``"livevox"`` (the A leg, LiveVox's media server) or
  ``"vendor"`` (the B leg, the AI vendor's media);
- a *direction* is ``"livevox_to_vendor"`` or ``"vendor_to_livevox"``;
- *packets* and *bytes* count UDP datagrams and their payload bytes relayed,
  RTP and RTCP together (the RTP header is part of the payload: a G.711
  packet at 20 ms is 172 bytes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import attrs

__all__ = [
    "DIRECTIONS",
    "DROP_REASONS",
    "SIDES",
    "silence_of",
    "Direction",
    "DropReason",
    "FlowCounters",
    "MediaCounters",
    "MediaSide",
    "RelayStats",
    "silent_side",
]

MediaSide = Literal["livevox", "vendor"]
Direction = Literal["livevox_to_vendor", "vendor_to_livevox"]
#: Why a datagram was not relayed:
#: ``unknown_source``: from an address neither the side's SDP nor its allowed
#: networks name (a stranger, or the other side on the wrong port);
#: ``no_destination``: the other side has no address yet, is on hold by
#: address (``c=0.0.0.0``) or disabled its stream (port 0);
#: ``send_error``: the kernel refused to send it;
#: ``muted``: the side is muted (the bot, once a transfer to a person starts).
DropReason = Literal["unknown_source", "no_destination", "send_error", "muted"]

SIDES: tuple[MediaSide, ...] = ("livevox", "vendor")
DIRECTIONS: tuple[Direction, ...] = ("livevox_to_vendor", "vendor_to_livevox")
DROP_REASONS: tuple[DropReason, ...] = ("unknown_source", "no_destination", "send_error", "muted")


@attrs.frozen
class FlowCounters:
    """Datagrams relayed in one direction.

    :param packets: datagrams sent on, RTP and RTCP.
    :param bytes: their total size.
    """

    packets: int = 0
    bytes: int = 0

    def __add__(self, other: FlowCounters) -> FlowCounters:
        return FlowCounters(self.packets + other.packets, self.bytes + other.bytes)


def _no_drops() -> Mapping[str, int]:
    return dict.fromkeys(DROP_REASONS, 0)


@attrs.frozen
class MediaCounters:
    """A snapshot of one call's media.

    :param livevox_to_vendor: relayed from LiveVox to the vendor.
    :param vendor_to_livevox: relayed from the vendor to LiveVox.
    :param dropped: datagrams not relayed, by :data:`DropReason`.
    :param last_from_livevox: the monotonic time of the last datagram
        accepted from LiveVox (RTP or RTCP), ``None`` before the first.
    :param last_from_vendor: the same for the vendor.
    :param livevox_source: the address LiveVox's RTP is latched to (where it
        was last heard from), ``None`` before its first packet.
    :param vendor_source: the same for the vendor.
    :param livevox_port: the relay's LiveVox-facing RTP port (RTCP is the
        next one), ``None`` where the engine has not allocated it yet.
    :param vendor_port: the relay's vendor-facing RTP port.
    :param muted: the sides whose RTP is no longer relayed (:meth:`IMediaSession.mute`).
    """

    livevox_to_vendor: FlowCounters = FlowCounters()
    vendor_to_livevox: FlowCounters = FlowCounters()
    dropped: Mapping[str, int] = attrs.field(factory=_no_drops)
    last_from_livevox: float | None = None
    last_from_vendor: float | None = None
    livevox_source: tuple[str, int] | None = None
    vendor_source: tuple[str, int] | None = None
    livevox_port: int | None = None
    vendor_port: int | None = None
    muted: frozenset[MediaSide] = frozenset()

    @property
    def dropped_total(self) -> int:
        """Every datagram not relayed, whatever the reason."""
        return sum(self.dropped.values())

    def last_from(self, side: MediaSide) -> float | None:
        """The monotonic time of the last datagram from ``side``, or ``None``."""
        return self.last_from_livevox if side == "livevox" else self.last_from_vendor


@attrs.frozen
class RelayStats:
    """A snapshot of a whole engine.

    :param sessions: sessions allocated and not yet released.
    :param ports_in_use: local ports held (four a session), including ports
        still closing.
    :param ports_total: the ports of the configured range an engine may use.
    :param livevox_to_vendor: relayed from LiveVox since the engine was made.
    :param vendor_to_livevox: relayed from the vendor since the engine was made.
    :param dropped: datagrams not relayed since the engine was made, by reason.
    """

    sessions: int
    ports_in_use: int
    ports_total: int
    livevox_to_vendor: FlowCounters
    vendor_to_livevox: FlowCounters
    dropped: Mapping[str, int]


def silent_side(
    counters: MediaCounters,
    now: float,
    answered_at: float,
    initial_timeout: float,
    timeout: float,
) -> MediaSide | None:
    """Return the first side silent for too long, or ``None`` while both are heard.

    A side that has sent nothing is silent once ``initial_timeout`` has passed
    since the call was answered; a side that has sent something is silent
    once ``timeout`` has passed since the later of its last datagram and the
    answer (so early media followed by a long ring does not count against it).
    LiveVox is checked first.

    :param counters: the session's counters.
    :param now: the current time, on the clock the counters' times are on.
    :param answered_at: when the call was answered, on that clock.
    :param initial_timeout: ``MediaConfig.initial_timeout``.
    :param timeout: ``MediaConfig.timeout``.
    """
    for side in SIDES:
        last = counters.last_from(side)
        if last is None:
            if now - answered_at >= initial_timeout:
                return side
        elif now - max(last, answered_at) >= timeout:
            return side
    return None


def silence_of(counters: MediaCounters, side: MediaSide, now: float, answered_at: float) -> float:
    """Return how long ``side`` has sent nothing (RTP or RTCP), counted from the answer at the earliest.

    :param counters: the session's counters.
    :param side: the side asked about.
    :param now: the current time, on the clock the counters' times are on.
    :param answered_at: when the call was answered, on that clock.
    """
    last = counters.last_from(side)
    return now - (answered_at if last is None else max(last, answered_at))


@attrs.define
class ReleasedTotals:
    """What an engine's released sessions counted, to which its live sessions' counters are added.

    Both engines keep one, for their metrics and ``stats()``.
    """

    flows: dict[str, FlowCounters] = attrs.field(
        factory=lambda: dict.fromkeys(DIRECTIONS, FlowCounters())
    )
    drops: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def add(self, final: MediaCounters) -> None:
        """Fold a released session's final counters in."""
        self.flows["livevox_to_vendor"] += final.livevox_to_vendor
        self.flows["vendor_to_livevox"] += final.vendor_to_livevox
        for reason, count in final.dropped.items():
            self.drops[reason] += count

    def with_live(
        self, live: Iterable[MediaCounters]
    ) -> tuple[dict[str, FlowCounters], dict[str, int]]:
        """Return these totals with the live sessions' counters added."""
        flows, drops = dict(self.flows), dict(self.drops)
        for c in live:
            flows["livevox_to_vendor"] += c.livevox_to_vendor
            flows["vendor_to_livevox"] += c.vendor_to_livevox
            for reason, count in c.dropped.items():
                drops[reason] += count
        return flows, drops
