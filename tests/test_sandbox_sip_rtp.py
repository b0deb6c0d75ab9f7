"""The sandbox's RTP helpers: packets, stamped payloads, SDP, and the probe's counting (on a Clock and on loopback)."""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

import struct
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from lvgateway.sandbox.rtp_media import (
    PCMU,
    RtpEcho,
    RtpProbe,
    decode_rtp,
    encode_rtp,
    listen_rtp,
    parse_sdp,
    probe_payload,
    read_probe,
    sdp_body,
)

from .sip_helpers import wait_until

REACTOR: Any = reactor


class _Wire:
    """A fake datagram transport that keeps what is written."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any = None) -> None:
        """Keep a datagram."""
        self.written.append((data, addr))


def test_rtp_round_trip_and_rtcp_is_not_rtp() -> None:
    """A PCMU packet decodes to what was encoded; RTCP, short data and padding are handled."""
    packet = encode_rtp(b"\xff" * 160, sequence=70000, timestamp=2**33 + 5, ssrc=9, marker=True)
    assert len(packet) == 172
    decoded = decode_rtp(packet)
    assert decoded is not None
    assert (decoded.payload_type, decoded.sequence, decoded.timestamp) == (PCMU, 70000 % 65536, 5)
    assert decoded.marker and decoded.ssrc == 9 and decoded.payload == b"\xff" * 160
    rtcp = bytes([0x80, 200]) + b"\x00" * 26
    assert decode_rtp(rtcp) is None and decode_rtp(b"\x80\x00") is None
    padded = bytearray(encode_rtp(b"abcd", sequence=1, timestamp=1, ssrc=1) + b"\x00\x00\x03")
    padded[0] |= 0x20
    assert decode_rtp(bytes(padded)).payload == b"abcd"  # type: ignore[union-attr]
    with_csrc = bytearray(encode_rtp(b"xy", sequence=1, timestamp=1, ssrc=1))
    with_csrc[0] |= 0x01
    with_csrc[12:12] = struct.pack("!I", 77)
    assert decode_rtp(bytes(with_csrc)).payload == b"xy"  # type: ignore[union-attr]


def test_probe_payload_is_160_bytes_and_carries_its_stamp() -> None:
    """A stamped payload is one 20 ms PCMU frame whose stamp reads back; other payloads carry none."""
    payload = probe_payload(b"12345678", 4242, 1234.5)
    assert len(payload) == 160
    stamp = read_probe(payload)
    assert stamp is not None
    assert (stamp.stream_id, stamp.sequence, stamp.sent_at) == (b"12345678", 4242, 1234.5)
    assert read_probe(b"\xff" * 160) is None


def test_sdp_offer_parses_back_and_media_level_address_wins() -> None:
    """sdp_body parses back; a media-level c= overrides the session's, other streams are skipped."""
    media = parse_sdp(sdp_body("127.0.0.2", 40000, session_id=1))
    assert media is not None and (media.host, media.port) == ("127.0.0.2", 40000)
    assert media.payload_types == (0, 101)
    text = (
        "v=0\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=video 5000 RTP/AVP 96\r\nc=IN IP4 10.9.9.9\r\n"
        "m=audio 6000 RTP/AVP 8 0\r\nc=IN IP4 10.0.0.2\r\n"
    )
    media = parse_sdp(text)
    assert media is not None and (media.host, media.port, media.payload_types) == (
        "10.0.0.2",
        6000,
        (8, 0),
    )
    assert parse_sdp("v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\n") is None


def test_probe_counts_duplicates_reordering_strangers_and_loss_on_a_clock() -> None:
    """The probe's counts: each own packet once, duplicates, reordering, foreign, malformed, lost vs in flight."""
    clock = Clock()
    clock.advance(1000)
    probe = RtpProbe(clock, stream_id=b"ourprobe")
    wire = _Wire()
    probe.transport = wire  # type: ignore[assignment]
    probe.start(("127.0.0.9", 4000))
    for _ in range(9):
        clock.advance(0.020001)
    assert probe.sent == 10 and all(addr == ("127.0.0.9", 4000) for _, addr in wire.written)
    clock.advance(0.004991)
    src = ("127.0.0.9", 4000)
    for index in (0, 1, 3, 2, 3):  # 2 after 3: reordered; 3 twice: a duplicate
        probe.datagramReceived(wire.written[index][0], src)
    other = encode_rtp(probe_payload(b"another!", 1, 0.0), sequence=1, timestamp=0, ssrc=1)
    probe.datagramReceived(other, src)
    probe.datagramReceived(b"junk", src)
    probe.stop()
    stats = probe.stats(grace=0.1)
    assert (stats.sent, stats.received, stats.duplicates, stats.out_of_order) == (10, 4, 1, 1)
    assert (stats.foreign, stats.malformed) == (1, 1)
    # packet 4 was sent more than 0.1 s before the stop: lost; 5..9 were still in flight
    assert (stats.lost, stats.in_flight) == (1, 5)
    assert stats.latency_ms["min"] >= 5 and stats.sources == ("127.0.0.9:4000",)


@pytest_twisted.ensureDeferred
async def test_probe_and_echo_over_loopback_udp() -> None:
    """A probe streaming to an RtpEcho on 127.0.0.2 gets every packet back, in order, with latency."""
    echo = RtpEcho()
    echo_port = listen_rtp(REACTOR, echo, "127.0.0.2")
    probe = RtpProbe(REACTOR)
    probe_port = listen_rtp(REACTOR, probe, "127.0.0.1")
    try:
        probe.start(("127.0.0.2", echo_port.getHost().port))  # type: ignore[attr-defined]
        await wait_until(lambda: probe.received >= 15, 5, "15 echoes")
        probe.stop()
        await wait_until(lambda: probe.received == probe.sent, 2, "the last echoes")
    finally:
        for port in (probe_port, echo_port):
            stopped = port.stopListening()
            if stopped is not None:
                await stopped
    stats = probe.stats()
    assert stats.lost == stats.out_of_order == stats.foreign == stats.malformed == 0
    assert echo.echoed == stats.sent and echo.streams == [probe.stream_id.hex()]
    assert 0 < stats.latency_ms["avg"] < 100
