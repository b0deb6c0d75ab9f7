"""The decisions of the rtpengine engine, as pure functions: flags, offer or answer, counters, which instance.

- **Latching** (:func:`latching_flags`). ``strict source`` with endpoint
  learning ``off`` takes a side's media only from the address and port its
  SDP names (RTCP from its ``a=rtcp`` or port + 1), and sends it there
  (symmetric RTP, rtpengine's default): a stranger's datagrams are dropped
  and counted in the stream's ``errors``. The NAT opt-in
  (``vendor_latching = "first_packet"``) is learning ``immediate`` with
  ``strict source``: the first datagram latches the stream and the latch
  never moves. rtpengine cannot limit that first datagram to the vendor's
  networks as the Twisted relay does: on this engine the opt-in latches to
  the first datagram from anyone.
- **Offer or answer** (:func:`exchange`). A side's new SDP answers the
  other side's offer when one is open, else it is an offer; rtpengine tells
  the parties apart by tag (``from-tag`` is the offerer's).
- **Counters** (:func:`counters_from_report`). A ``query`` or ``delete``
  reply has, per tag, the streams rtpengine receives that party's media on,
  with packets, bytes, errors and the wall-clock second of the last packet.
- **Which instance** (:func:`pick_weighted`): a weighted draw among those
  answering ping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lvgateway.media.counters import FlowCounters, MediaCounters, MediaSide
from lvgateway.media.latching import LatchMode

__all__ = [
    "TAGS",
    "NgCommand",
    "counters_from_report",
    "exchange",
    "latching_flags",
    "other_side",
    "pick_weighted",
    "sdp_port",
]

NgCommand = Literal["offer", "answer"]

#: Each side's SIP-like tag in rtpengine's call (the ng protocol's ``from-tag`` / ``to-tag``).
TAGS: Mapping[MediaSide, str] = {"livevox": "livevox", "vendor": "vendor"}

#: Plain RTP on both sides, no ICE, the relay's address in ``o=`` and ``c=``.
#: SRTP toward the vendor would change ``transport-protocol`` for the vendor's side only.
BASE_OPTIONS: Mapping[str, Any] = {
    "transport-protocol": "RTP/AVP",
    "ICE": "remove",
    "replace": ["origin", "session-connection"],
}


def other_side(side: MediaSide) -> MediaSide:
    """The side across the call from ``side``."""
    return "vendor" if side == "livevox" else "livevox"


def latching_flags(mode: LatchMode) -> list[str]:
    """Return rtpengine's flags for one side's latching.

    :param mode: ``strict`` (the SDP's address only) or ``first_packet``
        (latch once, to the first datagram from anyone).
    """
    learning = "endpoint-learning-off" if mode == "strict" else "endpoint-learning-immediate"
    # Symmetric RTP is rtpengine's default; 10.5 logs "Unknown flag" for "symmetric".
    return ["strict source", learning]


def exchange(side: MediaSide, open_offer_from: MediaSide | None) -> tuple[NgCommand, MediaSide]:
    """Return the command for ``side``'s new SDP, and the offerer (whose tag is ``from-tag``).

    :param side: whose SDP arrived.
    :param open_offer_from: the side whose offer awaits an answer, or ``None``.
    """
    if open_offer_from is not None and open_offer_from != side:
        return "answer", open_offer_from
    return "offer", side


def sdp_port(sdp: str) -> int | None:
    """Return the port of the first ``m=audio`` line of ``sdp``, or ``None``."""
    for line in sdp.splitlines():
        if line.startswith("m=audio "):
            parts = line.split()
            if len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
    return None


def _streams(report: Mapping[str, Any], tag: str) -> list[Mapping[str, Any]]:
    party = report.get("tags", {}).get(tag)
    if not isinstance(party, Mapping):
        return []
    return [
        stream
        for media in party.get("medias", ())
        if isinstance(media, Mapping)
        for stream in media.get("streams", ())
        if isinstance(stream, Mapping)
    ]


def _stat(stream: Mapping[str, Any], key: str) -> int:
    stats = stream.get("stats", {})
    value = stats.get(key, 0) if isinstance(stats, Mapping) else 0
    return value if isinstance(value, int) else 0


def _last_heard(
    streams: Sequence[Mapping[str, Any]], now_wall: float, now_mono: float
) -> float | None:
    """The monotonic time of the side's last packet, rounded up to the end of rtpengine's second."""
    seconds: list[int] = [
        s["last packet"]
        for s in streams
        if _stat(s, "packets") > 0 and isinstance(s.get("last packet"), int)
    ]
    if not seconds:
        return None
    age = max(0.0, now_wall - (max(seconds) + 1))
    return now_mono - age


def counters_from_report(
    report: Mapping[str, Any],
    now_wall: float,
    now_mono: float,
    ports: tuple[int | None, int | None] = (None, None),
) -> MediaCounters:
    """Return a session's counters from rtpengine's ``query`` (or ``delete``) reply.

    A party's streams count what rtpengine received from that party: the
    LiveVox tag's are ``livevox_to_vendor``, RTP and RTCP together, less
    each stream's ``errors`` (chiefly datagrams from a source strict
    latching refuses), which are ``unknown_source`` drops. A side's last packet is rtpengine's
    whole second, taken as its end, so a media timeout is never seen early.

    :param report: the reply dictionary.
    :param now_wall: ``time.time()`` when the reply came.
    :param now_mono: the engine's monotonic clock then.
    :param ports: the LiveVox-facing and vendor-facing RTP ports, for the snapshot.
    """
    flows: dict[MediaSide, FlowCounters] = {}
    last: dict[MediaSide, float | None] = {}
    sources: dict[MediaSide, tuple[str, int] | None] = {}
    errors = 0
    for side, tag in TAGS.items():
        streams = _streams(report, tag)
        flows[side] = sum((_relayed(s) for s in streams), FlowCounters())
        errors += sum(_stat(s, "errors") for s in streams)
        last[side] = _last_heard(streams, now_wall, now_mono)
        sources[side] = _endpoint(streams[0]) if streams and _stat(streams[0], "packets") else None
    return MediaCounters(
        livevox_to_vendor=flows["livevox"],
        vendor_to_livevox=flows["vendor"],
        dropped={"unknown_source": errors, "no_destination": 0, "send_error": 0},
        last_from_livevox=last["livevox"],
        last_from_vendor=last["vendor"],
        livevox_source=sources["livevox"],
        vendor_source=sources["vendor"],
        livevox_port=ports[0],
        vendor_port=ports[1],
    )


def _relayed(stream: Mapping[str, Any]) -> FlowCounters:
    """What a stream relayed: rtpengine's packets and bytes include the datagrams it dropped.

    The bytes of the dropped ones are not reported: they are taken at the
    stream's average size (exact when nothing was dropped).
    """
    packets, size, errors = (
        _stat(stream, "packets"),
        _stat(stream, "bytes"),
        _stat(stream, "errors"),
    )
    relayed = max(0, packets - errors)
    if relayed == packets or packets == 0:
        return FlowCounters(packets, size)
    return FlowCounters(relayed, round(size * relayed / packets))


def _endpoint(stream: Mapping[str, Any]) -> tuple[str, int] | None:
    endpoint = stream.get("endpoint")
    if not isinstance(endpoint, Mapping):
        return None
    address, port = endpoint.get("address"), endpoint.get("port")
    if isinstance(address, str) and isinstance(port, int):
        return address, port
    return None


def pick_weighted(weights: Sequence[int], draw: float) -> int | None:
    """Return the index a weighted draw lands on, or ``None`` when every weight is 0.

    :param weights: each candidate's weight (0 for one that may not take calls).
    :param draw: a number in ``[0, 1)`` (``random.random()``).
    """
    total = sum(w for w in weights if w > 0)
    if total <= 0:
        return None
    point = draw * total
    for i, weight in enumerate(weights):
        if weight <= 0:
            continue
        if point < weight:
            return i
        point -= weight
    return max(i for i, w in enumerate(weights) if w > 0)  # draw rounding to 1.0
