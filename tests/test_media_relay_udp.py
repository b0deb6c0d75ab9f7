"""The Twisted relay on real loopback UDP: audio both ways, latching, strangers, RTCP, release, exhaustion."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from sippy.MsgBody import MsgBody
from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater

from lvgateway.config.model import MediaConfig
from lvgateway.media.errors import PortsExhaustedError
from lvgateway.media.twisted_relay import TwistedMediaRelay, TwistedMediaSession

LIVEVOX_HOST = "127.0.0.1"
VENDOR_HOST = "127.0.0.3"
STRANGER_HOST = "127.0.0.9"
RELAY_HOST = "127.0.0.1"

pytestmark = pytest.mark.timeout(30)


async def wait_until(condition: Callable[[], Any], what: str, bound: float = 5.0) -> None:
    """Let the reactor run until ``condition()`` holds, or fail after ``bound`` seconds saying what was awaited."""
    deadline = reactor.seconds() + bound  # type: ignore[attr-defined]
    while not condition():
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"gave up after {bound}s waiting for {what}")
        await deferLater(reactor, 0.005, lambda: None)  # type: ignore[arg-type]


async def settle() -> None:
    """Give datagrams already sent on loopback a few reactor turns to arrive."""
    for _ in range(5):
        await deferLater(reactor, 0.01, lambda: None)  # type: ignore[arg-type]


def rtp(seq: int, ssrc: int, pt: int = 0) -> bytes:
    """A G.711 RTP packet whose 160-byte payload repeats the sequence number and SSRC."""
    header = struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160, ssrc)
    return header + struct.pack("!II", seq, ssrc) * 20


class Endpoint(DatagramProtocol):
    """A media endpoint on loopback: sends datagrams and keeps what it receives."""

    noisy = False

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Keep the datagram and where it came from."""
        self.received.append((datagram, addr))

    @property
    def address(self) -> tuple[str, int]:
        """The bound address."""
        assert self.transport is not None
        host = self.transport.getHost()  # type: ignore[attr-defined]
        return (host.host, host.port)

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        """Send one datagram."""
        assert self.transport is not None
        self.transport.write(data, to)  # type: ignore[attr-defined]

    def payloads(self) -> list[bytes]:
        """The datagrams received, in order."""
        return [d for d, _ in self.received]


class Endpoints:
    """Endpoints opened by a test, closed at teardown."""

    def __init__(self) -> None:
        self.ports: list[Any] = []

    def open(self, host: str) -> Endpoint:
        """Listen a new endpoint on ``host``, port chosen by the kernel."""
        endpoint = Endpoint()
        self.ports.append(reactor.listenUDP(0, endpoint, interface=host))  # type: ignore[attr-defined]
        return endpoint


@pytest.fixture
def endpoints() -> Any:
    """A factory of loopback endpoints, all closed after the test."""
    opened = Endpoints()
    yield opened
    for port in opened.ports:
        port.stopListening()


def media_config(base: int, size: int) -> MediaConfig:
    """Media settings for a range of ``size`` ports from ``base`` on 127.0.0.1."""
    return MediaConfig(
        engine="twisted",
        listen_host=RELAY_HOST,
        advertised_host=None,
        port_min=base,
        port_max=base + size - 1,
        initial_timeout=5.0,
        timeout=10.0,
    )


@pytest_twisted.async_yield_fixture
async def relay() -> AsyncIterator[TwistedMediaRelay]:
    """A started relay on 127.0.0.1 over 64 ports at a random place, LiveVox allowed from 127.0.0.1 only."""
    base = random.randrange(20000, 60000, 2)
    media = TwistedMediaRelay(
        reactor,
        media_config(base, 64),
        CollectorRegistry(),
        livevox_networks=[ipaddress.ip_network(f"{LIVEVOX_HOST}/32")],
    )
    media.start()
    yield media
    await media.stop()


def sdp(address: tuple[str, int], rtcp: tuple[str, int] | None = None) -> MsgBody:
    """An SDP body naming ``address`` for PCMU, PCMA and events, with ``a=rtcp:`` when given."""
    host, port = address
    text = (
        f"v=0\r\no=peer 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    if rtcp is not None:
        text += f"a=rtcp:{rtcp[1]} IN IP4 {rtcp[0]}\r\n"
    return MsgBody(text)


def connect(
    session: TwistedMediaSession,
    livevox: Endpoint,
    vendor: Endpoint,
    livevox_rtcp: Endpoint | None = None,
    vendor_rtcp: Endpoint | None = None,
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Run both SDPs through the session; return where LiveVox and the vendor must send (from the SDP)."""
    bodies: list[Any] = []
    session.on_caller_sdp_change(
        sdp(livevox.address, livevox_rtcp.address if livevox_rtcp else None),
        lambda body, ex=None: bodies.append(body),
    )
    answer = session.on_callee_sdp_change(
        sdp(vendor.address, vendor_rtcp.address if vendor_rtcp else None), bodies.append
    )
    [offer] = bodies
    offer.parse()
    answer.parse()
    to_vendor_side = offer.content.sections[0]
    to_livevox_side = answer.content.sections[0]
    livevox_sends_to = (to_livevox_side.c_header.addr, to_livevox_side.m_header.port)
    vendor_sends_to = (to_vendor_side.c_header.addr, to_vendor_side.m_header.port)
    return livevox_sends_to, vendor_sends_to


@pytest_twisted.ensureDeferred
async def test_audio_both_ways_two_calls(relay: TwistedMediaRelay, endpoints: Endpoints) -> None:
    """Two concurrent calls: each endpoint receives exactly what its peer sent, in order, and nothing of the other call."""
    calls = []
    for n in range(2):
        session = relay.new_session(
            f"call-{n}", vendor_networks=[ipaddress.ip_network(f"{VENDOR_HOST}/32")]
        )
        livevox, vendor = endpoints.open(LIVEVOX_HOST), endpoints.open(VENDOR_HOST)
        livevox_to, vendor_to = connect(session, livevox, vendor)
        assert livevox_to == (RELAY_HOST, session.livevox_port)
        assert vendor_to == (RELAY_HOST, session.vendor_port)
        calls.append((session, livevox, vendor, livevox_to, vendor_to))

    count = 50
    for seq in range(count):
        for n, (_, livevox, vendor, livevox_to, vendor_to) in enumerate(calls):
            livevox.send(rtp(seq, ssrc=0x1000 + n), livevox_to)
            vendor.send(rtp(seq, ssrc=0x2000 + n, pt=8 if seq % 2 else 101), vendor_to)
        if seq % 10 == 9:
            await settle()  # a call's 20 ms pacing, compressed: keep socket buffers small

    await wait_until(
        lambda: all(len(c[1].received) == count and len(c[2].received) == count for c in calls),
        "50 packets at each of four endpoints",
    )
    await settle()
    for n, (session, livevox, vendor, _, _) in enumerate(calls):
        assert vendor.payloads() == [rtp(seq, ssrc=0x1000 + n) for seq in range(count)]
        assert livevox.payloads() == [
            rtp(seq, ssrc=0x2000 + n, pt=8 if seq % 2 else 101) for seq in range(count)
        ]
        assert {addr for _, addr in vendor.received} == {(RELAY_HOST, session.vendor_port)}
        assert {addr for _, addr in livevox.received} == {(RELAY_HOST, session.livevox_port)}
        c = session.counters()
        assert (c.livevox_to_vendor.packets, c.livevox_to_vendor.bytes) == (count, count * 172)
        assert (c.vendor_to_livevox.packets, c.vendor_to_livevox.bytes) == (count, count * 172)
        assert c.dropped_total == 0
        assert c.livevox_source == livevox.address and c.vendor_source == vendor.address
    stats = relay.stats()
    assert stats.livevox_to_vendor.packets == stats.vendor_to_livevox.packets == 2 * count


@pytest_twisted.ensureDeferred
async def test_stranger_dropped_and_counted(relay: TwistedMediaRelay, endpoints: Endpoints) -> None:
    """Packets from 127.0.0.9 to either relay port are dropped, counted, never forwarded, and do not steal the latch."""
    session = relay.new_session("call", vendor_networks=[ipaddress.ip_network(f"{VENDOR_HOST}/32")])
    livevox, vendor, stranger = (
        endpoints.open(LIVEVOX_HOST),
        endpoints.open(VENDOR_HOST),
        endpoints.open(STRANGER_HOST),
    )
    livevox_to, vendor_to = connect(session, livevox, vendor)
    stranger.send(b"hijack vendor side", vendor_to)
    stranger.send(b"hijack livevox side", livevox_to)
    await wait_until(lambda: session.counters().dropped["unknown_source"] == 2, "two drops counted")
    livevox.send(b"marker from livevox", livevox_to)
    vendor.send(b"marker from vendor", vendor_to)
    await wait_until(lambda: vendor.received and livevox.received, "both markers")
    await settle()
    assert vendor.payloads() == [b"marker from livevox"]
    assert livevox.payloads() == [b"marker from vendor"]
    assert stranger.received == []
    c = session.counters()
    assert c.livevox_source == livevox.address and c.vendor_source == vendor.address
    assert c.livevox_to_vendor.packets == c.vendor_to_livevox.packets == 1


@pytest_twisted.ensureDeferred
async def test_rtcp_on_plus_one_ports(relay: TwistedMediaRelay, endpoints: Endpoints) -> None:
    """RTCP sent to the relay's RTP port + 1 reaches the other side's RTCP address (a=rtcp:), both ways."""
    session = relay.new_session("call")
    livevox, vendor = endpoints.open(LIVEVOX_HOST), endpoints.open(VENDOR_HOST)
    livevox_rtcp, vendor_rtcp = endpoints.open(LIVEVOX_HOST), endpoints.open(VENDOR_HOST)
    livevox_to, vendor_to = connect(session, livevox, vendor, livevox_rtcp, vendor_rtcp)
    livevox_rtcp.send(b"\x81\xc8 sender report lv", (livevox_to[0], livevox_to[1] + 1))
    vendor_rtcp.send(b"\x81\xc8 sender report vd", (vendor_to[0], vendor_to[1] + 1))
    await wait_until(lambda: livevox_rtcp.received and vendor_rtcp.received, "both RTCP reports")
    await settle()
    assert vendor_rtcp.received == [
        (b"\x81\xc8 sender report lv", (RELAY_HOST, session.vendor_port + 1))
    ]
    assert livevox_rtcp.received == [
        (b"\x81\xc8 sender report vd", (RELAY_HOST, session.livevox_port + 1))
    ]
    assert livevox.received == [] and vendor.received == []
    assert session.counters().livevox_to_vendor.packets == 1


@pytest_twisted.ensureDeferred
async def test_release_closes_ports(relay: TwistedMediaRelay) -> None:
    """Once release has fired, all four ports can be bound again by someone else."""
    session = relay.new_session("call")
    numbers = [
        session.livevox_port,
        session.livevox_port + 1,
        session.vendor_port,
        session.vendor_port + 1,
    ]
    await session.release()
    assert relay.stats().ports_in_use == 0
    rebound = [
        reactor.listenUDP(n, DatagramProtocol(), interface=RELAY_HOST)  # type: ignore[attr-defined]
        for n in numbers
    ]
    for port in rebound:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_exhaustion_skips_ports_in_use() -> None:
    """A port held by another socket is skipped; when no pair is left the call is refused with a 503 error."""
    for _ in range(20):  # find a free 6-port range whose second port we can hold
        base = random.randrange(20000, 60000, 2)
        try:
            holder = reactor.listenUDP(base + 1, DatagramProtocol(), interface=RELAY_HOST)  # type: ignore[attr-defined]
            break
        except CannotListenError:
            continue
    else:
        pytest.fail("no free port to hold")
    media = TwistedMediaRelay(reactor, media_config(base, 6), CollectorRegistry())
    media.start()
    try:
        session = media.new_session("call-1")
        assert {session.livevox_port, session.vendor_port} == {base + 2, base + 4}
        with pytest.raises(PortsExhaustedError):
            media.new_session("call-2")
        await session.release()
        await holder.stopListening()
        again = media.new_session("call-3")
        assert {again.livevox_port, again.vendor_port} <= {base, base + 2, base + 4}
    finally:
        await media.stop()
