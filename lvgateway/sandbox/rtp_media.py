"""G.711 RTP for the sandbox: a probe that sends numbered, time-stamped packets and checks their echoes, and an echo.

The dialler's :class:`RtpProbe` streams PCMU (payload type 0) at 20 ms, 160
bytes of payload a packet, 50 a second. Each payload starts with a stamp
(:func:`probe_payload`): a magic, the probe's own 8-byte stream id, a 32-bit
sequence number and the send time; the rest is µ-law silence. Whatever comes
back is checked against the stamps: echoes of its own packets are counted
once each (duplicates and reordering noted, round-trip latency measured);
packets of another probe (audio crossed between calls) and anything else
are counted apart. The echo bot's :class:`RtpEcho` sends every packet back
to where it came from, untouched.

Both are plain ``DatagramProtocol`` objects on ``reactor.listenUDP``
(:func:`listen_rtp`); timing runs on an injected clock. RTCP is neither
sent nor read.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet.interfaces import IListeningPort, IReactorTime, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = [
    "MediaAddress",
    "ProbeStamp",
    "ProbeStats",
    "RtpEcho",
    "RtpPacket",
    "RtpProbe",
    "decode_rtp",
    "encode_rtp",
    "listen_rtp",
    "parse_sdp",
    "probe_payload",
    "read_probe",
    "sdp_body",
]

log = Logger()

#: PCMU, G.711 µ-law.
PCMU = 0
#: Samples (and bytes) of one 20 ms PCMU packet.
SAMPLES_PER_PACKET = 160
#: Seconds between packets.
PACKET_INTERVAL = 0.02
#: The start of every probe payload.
PROBE_MAGIC = b"LVSB"
#: magic, stream id, sequence number, send time (seconds, a double).
_STAMP = struct.Struct("!4s8sId")
_RTP_HEADER = struct.Struct("!BBHII")
#: µ-law silence.
_SILENCE = b"\xff"
#: The most packets one late tick sends to catch up.
MAX_CATCH_UP = 5
#: Bound on the latencies, sources and streams kept per stream.
MAX_SAMPLES = 200_000
MAX_ADDRESSES = 16


@attrs.frozen
class RtpPacket:
    """An RTP packet, decoded.

    :param payload_type: the payload type (0 for PCMU).
    :param sequence: the 16-bit sequence number.
    :param timestamp: the RTP timestamp.
    :param ssrc: the synchronisation source.
    :param marker: the marker bit.
    :param payload: the payload, without padding.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes


def encode_rtp(
    payload: bytes,
    *,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload_type: int = PCMU,
    marker: bool = False,
) -> bytes:
    """Build an RTP packet (version 2, no CSRC, no extension).

    :param payload: the payload.
    :param sequence: the sequence number (taken modulo 2**16).
    :param timestamp: the timestamp (modulo 2**32).
    :param ssrc: the source id.
    :param payload_type: 0 for PCMU.
    :param marker: set the marker bit (the first packet of a talk spurt).
    """
    second = (0x80 if marker else 0) | (payload_type & 0x7F)
    header = _RTP_HEADER.pack(0x80, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
    return header + payload


def decode_rtp(data: bytes) -> RtpPacket | None:
    """Decode an RTP packet, or return ``None`` if ``data`` is not one (RTCP included)."""
    if len(data) < _RTP_HEADER.size:
        return None
    first, second, sequence, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
    if first >> 6 != 2:
        return None
    payload_type = second & 0x7F
    if 72 <= payload_type <= 76:  # RTCP sender/receiver reports, SDES, BYE, APP
        return None
    offset = _RTP_HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        (length,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * length
    end = len(data)
    if first & 0x20 and end > offset:  # padding
        end -= data[-1]
    if offset > end:
        return None
    return RtpPacket(payload_type, sequence, timestamp, ssrc, bool(second & 0x80), data[offset:end])


@attrs.frozen
class ProbeStamp:
    """What a probe wrote at the start of a payload.

    :param stream_id: the sending probe's id.
    :param sequence: the probe's own packet number, from 0.
    :param sent_at: the clock time it was sent.
    """

    stream_id: bytes
    sequence: int
    sent_at: float


def probe_payload(stream_id: bytes, sequence: int, sent_at: float) -> bytes:
    """A 160-byte PCMU payload carrying a stamp, padded with µ-law silence.

    :param stream_id: 8 bytes naming the probe.
    :param sequence: the packet number.
    :param sent_at: the send time.
    """
    stamp = _STAMP.pack(PROBE_MAGIC, stream_id, sequence & 0xFFFFFFFF, sent_at)
    return stamp + _SILENCE * (SAMPLES_PER_PACKET - len(stamp))


def read_probe(payload: bytes) -> ProbeStamp | None:
    """Read the stamp at the start of ``payload``, or ``None`` if it carries none."""
    if len(payload) < _STAMP.size or not payload.startswith(PROBE_MAGIC):
        return None
    _, stream_id, sequence, sent_at = _STAMP.unpack_from(payload)
    return ProbeStamp(stream_id, sequence, sent_at)


@attrs.frozen
class MediaAddress:
    """Where an SDP says to send audio.

    :param host: the connection address.
    :param port: the audio port (0 when the stream is refused).
    :param payload_types: the offered or answered payload types, in order.
    """

    host: str
    port: int
    payload_types: tuple[int, ...]


def sdp_body(host: str, port: int, *, session_id: int, version: int = 1) -> str:
    """An SDP offering or answering PCMU (and RFC 4733 events) on ``host:port``, 20 ms packets.

    :param host: the IPv4 address to receive on.
    :param port: the RTP port.
    :param session_id: the ``o=`` session id.
    :param version: the ``o=`` version.
    """
    lines = [
        "v=0",
        f"o=lvsandbox {session_id} {version} IN IP4 {host}",
        "s=lvsandbox",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return "\r\n".join(lines) + "\r\n"


def parse_sdp(text: str) -> MediaAddress | None:
    """Find the first audio stream of an SDP: its address, port and payload types.

    :param text: the SDP.
    :return: ``None`` if there is no audio stream or no connection address.
    """
    session_host: str | None = None
    media_host: str | None = None
    port: int | None = None
    payload_types: tuple[int, ...] = ()
    section = "session"  # then "audio" or "other", per m= line
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("m="):
            if port is not None:  # the first audio stream is complete
                break
            parts = line[2:].split()
            section = "audio" if len(parts) >= 3 and parts[0] == "audio" else "other"
            if section == "audio":
                try:
                    port = int(parts[1].split("/")[0])
                    payload_types = tuple(int(p) for p in parts[3:] if p.isdigit())
                except ValueError:
                    return None
        elif line.startswith("c="):
            parts = line[2:].split()
            if len(parts) >= 3:
                if section == "session":
                    session_host = parts[2].split("/")[0]
                elif section == "audio":
                    media_host = parts[2].split("/")[0]
    address = media_host or session_host
    if port is None or address is None:
        return None
    return MediaAddress(address, port, payload_types)


def listen_rtp(reactor: IReactorUDP, protocol: DatagramProtocol, host: str) -> IListeningPort:
    """Bind ``protocol`` to a port the kernel picks on ``host``."""
    return reactor.listenUDP(0, protocol, interface=host, maxPacketSize=8192)


def _percentile(ordered: Sequence[float], share: float) -> float:
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


@attrs.frozen
class ProbeStats:
    """What a probe sent and what came back.

    :param sent: packets sent.
    :param received: distinct packets of its own that came back.
    :param lost: packets sent early enough to have come back, that did not.
    :param in_flight: packets sent too late before the media stopped to be
        counted lost, that did not come back either.
    :param duplicates: copies of packets already received.
    :param out_of_order: packets that came back after a later one.
    :param foreign: stamped packets of another probe (audio crossed between calls).
    :param malformed: datagrams that were not PCMU RTP carrying a stamp.
    :param latency_ms: round-trip latency of the packets received:
        ``min``, ``avg``, ``p50``, ``p95``, ``max`` in milliseconds (empty if none).
    :param sources: the addresses packets came from.
    """

    sent: int
    received: int
    lost: int
    in_flight: int
    duplicates: int
    out_of_order: int
    foreign: int
    malformed: int
    latency_ms: dict[str, float]
    sources: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The stats as a JSON-ready mapping, camelCase as the admin API uses."""
        return {
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "inFlight": self.in_flight,
            "duplicates": self.duplicates,
            "outOfOrder": self.out_of_order,
            "foreign": self.foreign,
            "malformed": self.malformed,
            "latencyMs": dict(self.latency_ms),
            "sources": list(self.sources),
        }


class RtpProbe(DatagramProtocol):
    """Send stamped PCMU every 20 ms to one address, and check what comes back.

    :param clock: times the packets and the latencies.
    :param stream_id: 8 bytes naming this probe (random by default).
    """

    noisy = False  # no log line for every port opened and closed

    def __init__(self, clock: IReactorTime, stream_id: bytes | None = None) -> None:
        self.clock = clock
        self.stream_id = stream_id if stream_id is not None else os.urandom(8)
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self.remote: tuple[str, int] | None = None
        self.sent_times: list[float] = []
        self.media_ended_at: float | None = None
        self._received: set[int] = set()
        self._highest = -1
        self.duplicates = 0
        self.out_of_order = 0
        self.foreign = 0
        self.malformed = 0
        self.latencies: list[float] = []
        self._sources: list[str] = []
        self._loop: LoopingCall | None = None

    @property
    def sent(self) -> int:
        """Packets sent so far."""
        return len(self.sent_times)

    @property
    def received(self) -> int:
        """Distinct own packets that came back so far."""
        return len(self._received)

    @property
    def sending(self) -> bool:
        """Whether the probe is streaming."""
        return self._loop is not None and self._loop.running

    def start(self, remote: tuple[str, int]) -> None:
        """Start streaming to ``remote`` (an IP literal and port); the first packet goes now."""
        self.remote = remote
        if self.sending:
            return
        loop = LoopingCall.withCount(self._tick)
        loop.clock = self.clock
        self._loop = loop
        self.send_one()
        loop.start(PACKET_INTERVAL, now=False).addErrback(
            lambda f: log.failure("sandbox: the RTP probe's loop failed", f)
        )

    def stop(self) -> None:
        """Stop streaming; from now on, packets not back are counted by :meth:`stats`."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self.media_ended_at is None:
            self.media_ended_at = self.clock.seconds()

    def _tick(self, count: int) -> None:
        for _ in range(min(count, MAX_CATCH_UP)):
            self.send_one()

    def send_one(self) -> None:
        """Send the next packet now (the loop calls this; tests may too)."""
        transport = self.transport
        if transport is None or self.remote is None:
            return
        sequence = len(self.sent_times)
        now = self.clock.seconds()
        packet = encode_rtp(
            probe_payload(self.stream_id, sequence, now),
            sequence=sequence,
            timestamp=sequence * SAMPLES_PER_PACKET,
            ssrc=self.ssrc,
            marker=sequence == 0,
        )
        self.sent_times.append(now)
        try:
            transport.write(packet, self.remote)  # type: ignore[call-arg]
        except OSError as e:  # an unreachable address: the packet counts as sent, and lost
            log.debug("RTP send to {remote} failed: {error}", remote=self.remote, error=e)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Classify one datagram: an echo of ours, another probe's, or something else."""
        source = f"{addr[0]}:{addr[1]}"
        if source not in self._sources and len(self._sources) < MAX_ADDRESSES:
            self._sources.append(source)
        packet = decode_rtp(datagram)
        stamp = read_probe(packet.payload) if packet is not None else None
        if packet is None or stamp is None or packet.payload_type != PCMU:
            self.malformed += 1
            return
        if stamp.stream_id != self.stream_id:
            self.foreign += 1
            return
        if stamp.sequence >= len(self.sent_times):  # claims to be ours, but was never sent
            self.foreign += 1
            return
        if stamp.sequence in self._received:
            self.duplicates += 1
            return
        self._received.add(stamp.sequence)
        if stamp.sequence < self._highest:
            self.out_of_order += 1
        else:
            self._highest = stamp.sequence
        if len(self.latencies) < MAX_SAMPLES:
            self.latencies.append(self.clock.seconds() - self.sent_times[stamp.sequence])

    def stats(self, grace: float = 0.2) -> ProbeStats:
        """Count what was sent and what came back.

        :param grace: packets sent less than this long before the media
            stopped (or before now, while streaming) and not back are
            ``in_flight``, not ``lost``.
        """
        end = self.media_ended_at if self.media_ended_at is not None else self.clock.seconds()
        missing = [i for i in range(len(self.sent_times)) if i not in self._received]
        lost = sum(1 for i in missing if self.sent_times[i] <= end - grace)
        latency: dict[str, float] = {}
        if self.latencies:
            ordered = sorted(self.latencies)
            latency = {
                "min": round(ordered[0] * 1000, 3),
                "avg": round(sum(ordered) / len(ordered) * 1000, 3),
                "p50": round(_percentile(ordered, 0.5) * 1000, 3),
                "p95": round(_percentile(ordered, 0.95) * 1000, 3),
                "max": round(ordered[-1] * 1000, 3),
            }
        return ProbeStats(
            sent=len(self.sent_times),
            received=len(self._received),
            lost=lost,
            in_flight=len(missing) - lost,
            duplicates=self.duplicates,
            out_of_order=self.out_of_order,
            foreign=self.foreign,
            malformed=self.malformed,
            latency_ms=latency,
            sources=tuple(self._sources),
        )


class RtpEcho(DatagramProtocol):
    """Send every datagram back to where it came from, untouched (symmetric RTP)."""

    noisy = False

    def __init__(self) -> None:
        self.received = 0
        self.echoed = 0
        self.malformed = 0
        self.sources: list[str] = []
        self.streams: list[str] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Echo the datagram; note its source and, if it carries a probe stamp, its stream."""
        self.received += 1
        source = f"{addr[0]}:{addr[1]}"
        if source not in self.sources and len(self.sources) < MAX_ADDRESSES:
            self.sources.append(source)
        packet = decode_rtp(datagram)
        stamp = read_probe(packet.payload) if packet is not None else None
        if stamp is None:
            self.malformed += 1
        else:
            stream = stamp.stream_id.hex()
            if stream not in self.streams and len(self.streams) < MAX_ADDRESSES:
                self.streams.append(stream)
        transport = self.transport
        if transport is None:
            return
        try:
            transport.write(datagram, addr)  # type: ignore[call-arg]
            self.echoed += 1
        except OSError as e:
            log.debug("RTP echo to {source} failed: {error}", source=source, error=e)

    def to_json(self) -> dict[str, Any]:
        """What the echo saw, for the admin API."""
        return {
            "received": self.received,
            "echoed": self.echoed,
            "malformed": self.malformed,
            "sources": list(self.sources),
            "streams": list(self.streams),
        }
