"""The rtp.io engine, real rtpproxy in this process, on loopback: readiness, SDP, relaying, release, timeouts."""

from __future__ import annotations

import random
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from sippy.MsgBody import MsgBody
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from zope.interface.verify import verifyObject

from lvgateway.config.model import MediaConfig
from lvgateway.media.errors import (
    MediaNotRunningError,
    MediaSdpError,
    MediaSessionReleasedError,
    PortsExhaustedError,
)
from lvgateway.media.interfaces import IMediaRelay, IMediaSession
from lvgateway.media.rtpio import RtpioMediaRelay, RtpioMediaSession
from lvgateway.sip.sippy_reactor import SippyOnReactor

pytest.importorskip("rtp.io")

LIVEVOX_HOST = "127.0.0.1"
VENDOR_HOST = "127.0.0.3"
RELAY_HOST = "127.0.0.1"

pytestmark = pytest.mark.timeout(30)


async def wait_until(
    condition: Callable[[], Any],
    what: str,
    bound: float = 5.0,
    detail: Callable[[], object] = lambda: "",
) -> None:
    """Let the reactor run until ``condition()`` holds, or fail after ``bound`` seconds saying what was awaited."""
    deadline = reactor.seconds() + bound  # type: ignore[attr-defined]
    while not condition():
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"gave up after {bound}s waiting for {what} {detail()}")
        await deferLater(reactor, 0.005, lambda: None)  # type: ignore[arg-type]


async def pause(seconds: float) -> None:
    """Let the reactor run for ``seconds`` (pacing traffic, not waiting for an outcome)."""
    await deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]


def rtp(seq: int, ssrc: int) -> bytes:
    """A G.711 RTP packet whose 160-byte payload repeats the sequence number and SSRC."""
    header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, ssrc)
    return header + struct.pack("!II", seq, ssrc) * 20


class Endpoint(DatagramProtocol):
    """A media endpoint on loopback: sends datagrams and keeps what it receives."""

    noisy = False

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Keep the datagram."""
        self.received.append(datagram)

    @property
    def address(self) -> tuple[str, int]:
        """The bound address."""
        host = self.transport.getHost()  # type: ignore[union-attr]
        return (host.host, host.port)

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        """Send one datagram."""
        self.transport.write(data, to)  # type: ignore[union-attr]


@pytest.fixture
def open_endpoint() -> Any:
    """A factory of loopback endpoints, all closed after the test."""
    ports: list[Any] = []

    def open_(host: str) -> Endpoint:
        endpoint = Endpoint()
        ports.append(reactor.listenUDP(0, endpoint, interface=host))  # type: ignore[attr-defined]
        return endpoint

    yield open_
    for port in ports:
        port.stopListening()


def media_config(
    size: int = 64, advertised: str | None = None, timeout: float = 5.0
) -> MediaConfig:
    """rtp.io settings on 127.0.0.1 over ``size`` ports at a random place."""
    base = random.randrange(20000, 32000, 2)  # below the kernel's ephemeral ports
    return MediaConfig(
        engine="rtpio",
        listen_host=RELAY_HOST,
        advertised_host=advertised,
        port_min=base,
        port_max=base + size - 1,
        initial_timeout=timeout,
        timeout=timeout,
    )


def make_relay(config: MediaConfig | None = None, **kw: Any) -> RtpioMediaRelay:
    """An rtp.io engine on the test reactor, with short bounds."""
    kw.setdefault("command_timeout", 1.0)
    kw.setdefault("watchdog_interval", 0.1)
    kw.setdefault("poll_interval", 0.1)
    kw.setdefault("stop_timeout", 3.0)
    return RtpioMediaRelay(
        reactor,
        config or media_config(),
        CollectorRegistry(),
        lambda: SippyOnReactor.for_reactor(reactor),
        **kw,
    )


async def started(relay: RtpioMediaRelay) -> RtpioMediaRelay:
    """Start ``relay`` and wait until it is online."""
    relay.start()

    def detail() -> object:
        watch = relay.watch
        return (relay.online(), watch and dict(watch.answered), watch and watch.oldest())

    await wait_until(lambda: relay.online() is None, "rtp.io online", detail=detail)
    return relay


@pytest_twisted.async_yield_fixture
async def relay() -> AsyncIterator[RtpioMediaRelay]:
    """A started, online rtp.io engine; stopped after the test."""
    engine = await started(make_relay())
    yield engine
    await engine.stop()


def sdp(address: tuple[str, int], *, video: bool = False, rtcp: bool = False) -> MsgBody:
    """An SDP body naming ``address`` for PCMU and events (and a video stream, or ``a=rtcp:``)."""
    host, port = address
    text = (
        f"v=0\r\no=peer 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    if rtcp:
        text += f"a=rtcp:{port + 1} IN IP4 {host}\r\n"
    if video:
        text += f"m=video {port + 10} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    return MsgBody(text)


async def caller_sdp(session: RtpioMediaSession, body: MsgBody) -> tuple[Any, Any]:
    """Run LiveVox's SDP through the session; the callback's ``(body, ex)``."""
    d: Deferred[tuple[Any, Any]] = Deferred()
    session.on_caller_sdp_change(body, lambda b, ex=None: d.callback((b, ex)))
    return await d


async def callee_sdp(session: RtpioMediaSession, body: MsgBody) -> tuple[Any, Any]:
    """Run the vendor's SDP through the session: it returns ``None`` and calls back later."""
    d: Deferred[tuple[Any, Any]] = Deferred()
    called: list[int] = []

    def back(b: Any, ex: Any = None) -> None:
        called.append(1)
        d.callback((b, ex))

    assert session.on_callee_sdp_change(body, back) is None
    assert called == [], "the vendor's hook called back before returning"
    return await d


def stream_of(body: Any, index: int = 0) -> tuple[str, int]:
    """The address and port of the ``index``-th ``m=`` section of a rewritten body."""
    body.parse()
    sect = body.content.sections[index]
    return (sect.c_header.addr, sect.m_header.port)


async def connect(
    session: RtpioMediaSession, livevox: Endpoint, vendor: Endpoint
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Run both SDPs through the session; return where LiveVox and the vendor must send."""
    offer, ex = await caller_sdp(session, sdp(livevox.address))
    assert ex is None
    answer, ex = await callee_sdp(session, sdp(vendor.address))
    assert ex is None
    return stream_of(answer), stream_of(offer)


def test_provides_the_interfaces() -> None:
    """The engine and its sessions provide IMediaRelay and IMediaSession, as verifyObject sees them."""
    engine = make_relay()
    assert verifyObject(IMediaRelay, engine)
    assert verifyObject(IMediaSession, RtpioMediaSession("c", "c-1", engine, object()))


@pytest_twisted.ensureDeferred
async def test_online_only_after_version_and_capabilities() -> None:
    """Until rtp.io has answered V and every VF, online() says why and new calls are refused."""
    engine = make_relay()
    assert engine.online() == "media relay (rtp.io) not started"
    engine.start()
    try:
        assert engine.online() == "rtp.io not ready: waiting for its version and capability replies"
        with pytest.raises(MediaNotRunningError, match="not ready"):
            engine.new_session("too-early")
        assert engine.watch is not None and engine.watch.answered["V"] == 0
        await wait_until(lambda: engine.online() is None, "rtp.io online")
        assert engine.watch.answered["V"] >= 1
        assert engine.watch.answered["VF"] == 6  # every capability of Sippy's table
        assert engine.client.caps_done and engine.client.online
        engine.new_session("in-time").release()
    finally:
        await engine.stop()


@pytest_twisted.ensureDeferred
async def test_sdp_rewritten_to_its_ports() -> None:
    """Each side's SDP names the advertised address and an rtp.io port of the range; other streams are disabled."""
    config = media_config(advertised="127.0.0.2")
    engine = await started(make_relay(config))
    try:
        session = engine.new_session("call-sdp")
        offer, ex = await caller_sdp(session, sdp(("127.0.0.1", 6000), video=True, rtcp=True))
        assert ex is None
        host, port = stream_of(offer)
        assert host == "127.0.0.2" and config.port_min <= port <= config.port_max
        assert port == session.vendor_port
        assert stream_of(offer, 1) == ("127.0.0.2", 0)  # the video stream, disabled in place
        text = str(offer)
        assert "127.0.0.1" not in text and f"a=rtcp:{port + 1} IN IP4 127.0.0.2" in text
        assert text.index("m=audio") < text.index("m=video")

        answer, ex = await callee_sdp(session, sdp(("127.0.0.3", 7000)))
        assert ex is None
        host, port = stream_of(answer)
        assert host == "127.0.0.2" and config.port_min <= port <= config.port_max
        assert port == session.livevox_port != session.vendor_port
        assert session.counters().livevox_port == port

        again, ex = await caller_sdp(session, sdp(("127.0.0.1", 6000), video=True, rtcp=True))
        assert ex is None and str(again) == text  # a refresh is byte for byte the same
    finally:
        await engine.stop()


@pytest_twisted.ensureDeferred
async def test_sdp_errors_come_through_the_callback(relay: RtpioMediaRelay) -> None:
    """No audio, unparseable text, a host name, and a released session: errors reach the callback, never raise."""
    session = relay.new_session("call-bad")
    no_audio = MsgBody("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n")
    body, ex = await caller_sdp(session, no_audio)
    assert body is None and isinstance(ex, MediaSdpError) and ex.code == 488

    garbage = MsgBody("this is not SDP")
    body, ex = await callee_sdp(session, garbage)
    assert body is None and isinstance(ex, MediaSdpError)

    named = MsgBody(
        "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nc=IN IP4 media.example.com\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\n"
    )
    body, ex = await callee_sdp(session, named)
    assert body is None and isinstance(ex, MediaSdpError) and "not an IP address" in str(ex)

    await session.release()
    body, ex = await callee_sdp(session, sdp(("127.0.0.3", 7000)))
    assert body is None and isinstance(ex, MediaSessionReleasedError)


@pytest_twisted.ensureDeferred
async def test_hold_by_address_becomes_sendonly(relay: RtpioMediaRelay) -> None:
    """An old-style hold (c=0.0.0.0) goes out with the relay's address and a=sendonly, as Sippy's rtpproxy path does."""
    session = relay.new_session("call-hold")
    body, ex = await caller_sdp(session, sdp(("127.0.0.1", 6000)))
    assert ex is None
    held, ex = await caller_sdp(session, sdp(("0.0.0.0", 6000)))
    assert ex is None
    text = str(held)
    assert "0.0.0.0" not in text and "c=IN IP4 127.0.0.1" in text and "a=sendonly" in text


@pytest_twisted.ensureDeferred
async def test_relays_both_ways_two_calls(relay: RtpioMediaRelay, open_endpoint: Any) -> None:
    """Two concurrent calls over real UDP: each end gets exactly its peer's packets, in order, none of the other call's."""
    calls = []
    for n in range(2):
        session = relay.new_session(f"call-{n}")
        livevox, vendor = open_endpoint(LIVEVOX_HOST), open_endpoint(VENDOR_HOST)
        livevox_to, vendor_to = await connect(session, livevox, vendor)
        calls.append((session, livevox, vendor, livevox_to, vendor_to))

    count = 60
    for seq in range(count):
        for n, (_, livevox, vendor, livevox_to, vendor_to) in enumerate(calls):
            livevox.send(rtp(seq, ssrc=0x1000 + n), livevox_to)
            vendor.send(rtp(seq, ssrc=0x2000 + n), vendor_to)
        if seq % 10 == 9:
            await pause(0.01)  # 20 ms pacing, compressed

    await wait_until(
        lambda: all(len(c[1].received) >= count and len(c[2].received) >= count for c in calls),
        "60 packets at each of four endpoints",
    )
    for n, (_, livevox, vendor, _, _) in enumerate(calls):
        assert vendor.received == [rtp(seq, ssrc=0x1000 + n) for seq in range(count)]
        assert livevox.received == [rtp(seq, ssrc=0x2000 + n) for seq in range(count)]

    await wait_until(
        lambda: all(c[0].counters().livevox_to_vendor.packets == count for c in calls),
        "the polled counters to catch up",
    )
    for session, *_ in calls:
        counters = session.counters()
        assert counters.vendor_to_livevox.packets == count
        assert counters.dropped_total == 0
        assert counters.last_from_livevox is not None and counters.last_from_vendor is not None
    stats = relay.stats()
    assert stats.sessions == 2 and stats.livevox_to_vendor.packets == 2 * count
    sample = relay.registry.get_sample_value(
        "lvgateway_rtp_packets_total", {"direction": "vendor_to_livevox"}
    )
    assert sample == 2 * count


async def active_sessions(engine: RtpioMediaRelay) -> int:
    """rtpproxy's own count of its live sessions (``Ib``)."""
    reply: Deferred[Any] = Deferred()
    engine.client.send_command("Ib", lambda text, *_: reply.callback(text))
    [count] = [line for line in (await reply).splitlines() if line.startswith("active sessions:")]
    return int(count.split(":")[1])


@pytest_twisted.ensureDeferred
async def test_release_frees_the_ports(open_endpoint: Any) -> None:
    """A full engine refuses a call until one is released; the release deletes rtpproxy's session."""
    engine = await started(make_relay(media_config(size=40)))
    try:
        assert engine.capacity == 8  # ten groups of four ports, a fifth kept free
        sessions = [engine.new_session(f"call-{n}") for n in range(8)]
        for session in sessions:
            await connect(session, open_endpoint(LIVEVOX_HOST), open_endpoint(VENDOR_HOST))
        assert engine.online() == "no free media ports (8 calls hold them)"
        with pytest.raises(PortsExhaustedError):
            engine.new_session("ninth")
        assert engine.stats().ports_in_use == 32 and await active_sessions(engine) == 8

        await sessions[0].release()
        assert await active_sessions(engine) == 7
        assert engine.online() is None
        assert engine.stats().sessions == 7 and engine.stats().ports_in_use == 28
        engine.new_session("ninth")
        await sessions[0].release()  # idempotent
        await wait_until(lambda: engine.stats().sessions == 8, "the count to stay right")
    finally:
        await engine.stop()


@pytest_twisted.ensureDeferred
async def test_released_ports_carry_new_calls(open_endpoint: Any) -> None:
    """Calls released and replaced, many times over: each new call gets ports and relays."""
    engine = await started(make_relay(media_config(size=400)))
    try:
        live = []
        for n in range(40):
            session = engine.new_session(f"call-{n}")
            livevox, vendor = open_endpoint(LIVEVOX_HOST), open_endpoint(VENDOR_HOST)
            livevox_to, _ = await connect(session, livevox, vendor)
            livevox.send(rtp(n, 0x77), livevox_to)
            await wait_until(
                lambda v=vendor, n=n: v.received == [rtp(n, 0x77)], f"call {n}'s packet"
            )
            live.append(session)
            if len(live) > 10:
                await live.pop(0).release()
        assert await active_sessions(engine) == 10
    finally:
        await engine.stop()


@pytest_twisted.ensureDeferred
async def test_media_timeouts_from_polled_counters(open_endpoint: Any) -> None:
    """silent_side() is None before answer and while both send; a side that stops is reported after the timeout."""
    engine = await started(make_relay(media_config(timeout=0.5)))
    try:
        session = engine.new_session("call-quiet")
        livevox, vendor = open_endpoint(LIVEVOX_HOST), open_endpoint(VENDOR_HOST)
        livevox_to, vendor_to = await connect(session, livevox, vendor)
        await pause(0.7)
        assert session.silent_side() is None  # not answered yet
        session.mark_answered()

        vendor_last = 0.0
        for seq in range(15):  # both talk for 0.3 s
            livevox.send(rtp(seq, 1), livevox_to)
            vendor.send(rtp(seq, 2), vendor_to)
            vendor_last = time.monotonic()
            await pause(0.02)
        assert session.silent_side() is None

        seq = 15
        while session.silent_side() is None:  # only LiveVox talks on
            assert seq < 15 + 100, "the vendor's silence was never reported"
            livevox.send(rtp(seq, 1), livevox_to)
            seq += 1
            await pause(0.02)
        quiet = time.monotonic() - vendor_last
        assert session.silent_side() == "vendor"
        assert 0.5 <= quiet < 0.5 + 3 * 0.1 + 0.2  # never early; late by a poll or so
    finally:
        await engine.stop()
