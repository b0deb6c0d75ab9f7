"""Every engine that claims strict latching, on real loopback UDP: audio both ways, and no hijack.

The engines: the Twisted relay, and rtpengine (a real daemon, userspace, on
loopback) driven by the rtpengine engine. rtp.io latches to the first packet
from anyone and does not claim it (see :mod:`lvgateway.media.select`).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from lvgateway.config.model import RtpengineInstance
from lvgateway.media.interfaces import IMediaRelay, IMediaSession
from lvgateway.media.rtpengine import RtpengineMediaRelay
from lvgateway.media.twisted_relay import TwistedMediaRelay

from .rtpengine_process import rtpengine
from .test_media_relay_udp import (
    LIVEVOX_HOST,
    STRANGER_HOST,
    VENDOR_HOST,
    Endpoint,
    Endpoints,
    endpoints,
    media_config,
    rtp,
    sdp,
    settle,
    wait_until,
)

__all__ = ["endpoints"]  # the fixture, imported for pytest

pytestmark = pytest.mark.timeout(60)

STRICT_ENGINES = ["twisted", "rtpengine"]


@attrs.define
class Engine:
    """A started engine and how to bring a session's counters up to date."""

    relay: IMediaRelay
    registry: CollectorRegistry

    async def counters_now(self, session: IMediaSession) -> Any:
        """The session's counters, fresh (rtpengine's after one more query)."""
        poll = getattr(session, "poll", None)
        if poll is not None:
            asked = poll()
            if asked is not None:
                await asked
        return session.counters()


async def make_engine(name: str, tmp_path: Path) -> AsyncIterator[Engine]:
    """Start the named engine (and its rtpengine daemon), stop it afterwards."""
    base = random.randrange(20000, 60000, 2)
    registry = CollectorRegistry()
    networks = [ipaddress.ip_network(f"{LIVEVOX_HOST}/32")]
    if name == "twisted":
        relay: Any = TwistedMediaRelay(
            reactor, media_config(base, 64), registry, livevox_networks=networks
        )
        relay.start()
        yield Engine(relay, registry)
        await relay.stop()
        return
    async with rtpengine(tmp_path) as daemon:
        config = attrs.evolve(
            media_config(daemon.port_min, daemon.port_max - daemon.port_min + 1),
            engine="rtpengine",
            rtpengine=(RtpengineInstance(daemon.ng),),
        )
        relay = RtpengineMediaRelay(
            reactor,
            config,
            registry,
            livevox_networks=networks,
            ping_interval=0.2,
            command_interval=0.2,
            poll_interval=0.2,
        )
        relay.start()
        await wait_until(lambda: relay.online() is None, "rtpengine instance up")
        yield Engine(relay, registry)
        await relay.stop()


@pytest_twisted.async_yield_fixture(params=STRICT_ENGINES)
async def engine(request: Any, tmp_path: Path) -> AsyncIterator[Engine]:
    """Each strict engine in turn, started."""
    async for started in make_engine(request.param, tmp_path):
        yield started


async def pace() -> None:
    """A few milliseconds between two packets of a stream."""
    await deferLater(reactor, 0.004, lambda: None)  # type: ignore[arg-type]


async def connect(
    session: IMediaSession, livevox: Endpoint, vendor: Endpoint
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Run both SDPs through the session (engines may answer later); return where LiveVox and the vendor send."""
    offered: Deferred[Any] = Deferred()
    session.on_caller_sdp_change(
        sdp(livevox.address), lambda body, ex=None: offered.callback((body, ex))
    )
    offer, error = await offered
    assert error is None, error
    answered: Deferred[Any] = Deferred()
    returned = session.on_callee_sdp_change(
        sdp(vendor.address), lambda body, ex=None: answered.callback((body, ex))
    )
    if returned is None:
        returned, error = await answered
        assert error is None, error
    offer.parse()
    returned.parse()
    to_vendor_side = offer.content.sections[0]
    to_livevox_side = returned.content.sections[0]
    livevox_sends_to = (to_livevox_side.c_header.addr, to_livevox_side.m_header.port)
    vendor_sends_to = (to_vendor_side.c_header.addr, to_vendor_side.m_header.port)
    return livevox_sends_to, vendor_sends_to


@pytest_twisted.ensureDeferred
async def test_audio_both_ways_counted(engine: Engine, endpoints: Endpoints) -> None:
    """Each endpoint receives exactly what its peer sent, from the engine's port, and the counters agree.

    Order is compared as a set: rtpengine's userspace workers may swap two
    datagrams sent back to back (a real call's are 20 ms apart).
    """
    session = engine.relay.new_session(
        "call", vendor_networks=[ipaddress.ip_network(f"{VENDOR_HOST}/32")]
    )
    livevox, vendor = endpoints.open(LIVEVOX_HOST), endpoints.open(VENDOR_HOST)
    livevox_to, vendor_to = await connect(session, livevox, vendor)
    count = 40
    for seq in range(count):
        livevox.send(rtp(seq, ssrc=0x1000), livevox_to)
        vendor.send(rtp(seq, ssrc=0x2000, pt=8), vendor_to)
        await pace()
    await wait_until(
        lambda: len(vendor.received) == count and len(livevox.received) == count,
        f"{count} packets at each endpoint",
    )
    await settle()
    assert sorted(vendor.payloads()) == sorted(rtp(seq, ssrc=0x1000) for seq in range(count))
    assert sorted(livevox.payloads()) == sorted(rtp(seq, ssrc=0x2000, pt=8) for seq in range(count))
    assert {addr for _, addr in vendor.received} == {vendor_to}
    assert {addr for _, addr in livevox.received} == {livevox_to}
    c = await engine.counters_now(session)
    assert (c.livevox_to_vendor.packets, c.livevox_to_vendor.bytes) == (count, count * 172)
    assert (c.vendor_to_livevox.packets, c.vendor_to_livevox.bytes) == (count, count * 172)
    assert c.dropped_total == 0
    assert c.last_from_livevox is not None and c.last_from_vendor is not None
    await session.release()
    final = session.counters()
    assert final.livevox_to_vendor.packets == count
    stats = engine.relay.stats()
    assert stats.sessions == 0
    assert stats.livevox_to_vendor.packets == stats.vendor_to_livevox.packets == count
    for direction in ("livevox_to_vendor", "vendor_to_livevox"):  # the media metrics agree
        labels = {"direction": direction}
        assert engine.registry.get_sample_value("lvgateway_rtp_packets_total", labels) == count
        assert engine.registry.get_sample_value("lvgateway_rtp_bytes_total", labels) == count * 172


@pytest_twisted.ensureDeferred
async def test_strangers_inside_the_allowed_networks_cannot_hijack(
    engine: Engine, endpoints: Endpoints
) -> None:
    """Strangers on the peers' own hosts (inside the allowed networks) send to a live call's ports before and after the real peers.

    They receive nothing, neither side receives an injected packet, and the
    drop counter shows every one of their datagrams.
    """
    session = engine.relay.new_session(
        "call", vendor_networks=[ipaddress.ip_network(f"{VENDOR_HOST}/32")]
    )
    livevox, vendor = endpoints.open(LIVEVOX_HOST), endpoints.open(VENDOR_HOST)
    strangers = [
        endpoints.open(LIVEVOX_HOST),
        endpoints.open(VENDOR_HOST),
        endpoints.open(STRANGER_HOST),
    ]
    livevox_to, vendor_to = await connect(session, livevox, vendor)
    for n, stranger in enumerate(strangers):
        stranger.send(rtp(n, ssrc=0xBAD0), vendor_to)
        stranger.send(rtp(n, ssrc=0xBAD1), livevox_to)
    sent = 2 * len(strangers)

    async def dropped(expected: int) -> None:
        for _ in range(100):
            c = await engine.counters_now(session)
            if c.dropped["unknown_source"] >= expected:
                return
            await settle()
        raise AssertionError(f"expected {expected} drops, counted {c.dropped}")

    await dropped(sent)
    livevox.send(rtp(1, ssrc=0x1000), livevox_to)
    vendor.send(rtp(1, ssrc=0x2000), vendor_to)
    await wait_until(lambda: vendor.received and livevox.received, "both peers' audio")
    for n, stranger in enumerate(strangers):
        stranger.send(rtp(10 + n, ssrc=0xBAD0), vendor_to)
        stranger.send(rtp(10 + n, ssrc=0xBAD1), livevox_to)
    await dropped(2 * sent)
    livevox.send(rtp(2, ssrc=0x1000), livevox_to)
    vendor.send(rtp(2, ssrc=0x2000), vendor_to)
    await wait_until(lambda: len(vendor.received) == 2 and len(livevox.received) == 2, "markers")
    await settle()
    assert vendor.payloads() == [rtp(1, ssrc=0x1000), rtp(2, ssrc=0x1000)]
    assert livevox.payloads() == [rtp(1, ssrc=0x2000), rtp(2, ssrc=0x2000)]
    assert all(stranger.received == [] for stranger in strangers)
    c = await engine.counters_now(session)
    assert c.livevox_source == livevox.address and c.vendor_source == vendor.address
    assert c.dropped["unknown_source"] == 2 * sent
    assert c.livevox_to_vendor.packets == c.vendor_to_livevox.packets == 2
    await session.release()
    engine.relay.stats()
    drops = {"reason": "unknown_source"}
    assert engine.registry.get_sample_value("lvgateway_rtp_dropped_total", drops) == 2 * sent


@pytest_twisted.ensureDeferred
async def test_a_muted_vendor_reaches_livevox_no_more_while_livevox_still_reaches_it(
    engine: Engine, endpoints: Endpoints
) -> None:
    """After ``mute("vendor")`` (a transfer started), the vendor's RTP stops at the engine; LiveVox's still flows."""
    session = engine.relay.new_session(
        "call", vendor_networks=[ipaddress.ip_network(f"{VENDOR_HOST}/32")]
    )
    livevox, vendor = endpoints.open(LIVEVOX_HOST), endpoints.open(VENDOR_HOST)
    livevox_to, vendor_to = await connect(session, livevox, vendor)
    vendor.send(rtp(1, ssrc=2), vendor_to)
    await wait_until(lambda: livevox.received, "the vendor's first packet")
    await session.mute("vendor")  # fires once the engine applied it
    await session.mute("vendor")  # again: no effect
    for seq in range(2, 12):
        vendor.send(rtp(seq, ssrc=2), vendor_to)
        await pace()
    livevox.send(rtp(1, ssrc=1), livevox_to)
    await wait_until(lambda: vendor.received, "LiveVox's packet at the vendor")
    await settle()
    assert livevox.payloads() == [rtp(1, ssrc=2)], "the muted vendor still reached LiveVox"
    assert vendor.payloads() == [rtp(1, ssrc=1)]
    c = await engine.counters_now(session)
    assert c.muted == frozenset({"vendor"})
    await session.release()
