"""The rtpengine engine against real rtpengine daemons on loopback: instances, failover, timeouts, delete."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor

from lvgateway.config.model import RtpengineInstance
from lvgateway.media.errors import NoMediaInstanceError
from lvgateway.media.rtpengine import RtpengineMediaRelay
from lvgateway.media.rtpengine_ng import NgError

from .rtpengine_process import Rtpengine, rtpengine, running
from .test_media_relay_udp import (
    LIVEVOX_HOST,
    VENDOR_HOST,
    Endpoint,
    Endpoints,
    endpoints,
    media_config,
    rtp,
    settle,
    wait_until,
)
from .test_media_strict_latching import connect

__all__ = ["endpoints"]  # the fixture, imported for pytest

pytestmark = pytest.mark.timeout(60)


def make_relay(daemons: list[Rtpengine], registry: CollectorRegistry, **kw: Any) -> Any:
    """An rtpengine engine over ``daemons`` with short intervals, started."""
    config = attrs.evolve(
        media_config(daemons[0].port_min, 200),
        engine="rtpengine",
        rtpengine=tuple(RtpengineInstance(d.ng) for d in daemons),
        initial_timeout=kw.pop("initial_timeout", 5.0),
        timeout=kw.pop("timeout", 10.0),
        vendor_latching=kw.pop("vendor_latching", "strict"),
    )
    relay = RtpengineMediaRelay(
        reactor,
        config,
        registry,
        livevox_networks=[ipaddress.ip_network(f"{LIVEVOX_HOST}/32")],
        ping_interval=0.2,
        ping_failures=2,
        command_interval=0.2,
        command_attempts=3,
        poll_interval=0.2,
        **kw,
    )
    relay.start()
    return relay


@pytest_twisted.async_yield_fixture
async def two(tmp_path: Path) -> AsyncIterator[list[Rtpengine]]:
    """Two rtpengine daemons."""
    async with rtpengine(tmp_path) as first, rtpengine(tmp_path) as second:
        yield [first, second]


class Call:
    """One call's two endpoints and where each sends."""

    def __init__(self, session: Any, livevox: Endpoint, vendor: Endpoint) -> None:
        self.session, self.livevox, self.vendor = session, livevox, vendor
        self.livevox_to: tuple[str, int] = ("", 0)
        self.vendor_to: tuple[str, int] = ("", 0)
        self.sent = 0

    async def connect(self) -> Call:
        """Run both SDPs through the session."""
        self.livevox_to, self.vendor_to = await connect(self.session, self.livevox, self.vendor)
        return self

    async def talk(self, packets: int) -> None:
        """Send ``packets`` each way and wait until every one arrived."""
        for _ in range(packets):
            self.livevox.send(rtp(self.sent, ssrc=0x1000), self.livevox_to)
            self.vendor.send(rtp(self.sent, ssrc=0x2000), self.vendor_to)
            self.sent += 1
            await settle()
        await wait_until(
            lambda: len(self.vendor.received) == len(self.livevox.received) == self.sent,
            f"{self.sent} packets each way on {self.session.call_id}",
        )


async def new_call(relay: Any, endpoints: Endpoints, call_id: str) -> Call:
    """A connected call on ``relay``."""
    session = relay.new_session(call_id)
    return await Call(session, endpoints.open(LIVEVOX_HOST), endpoints.open(VENDOR_HOST)).connect()


@pytest_twisted.ensureDeferred
async def test_an_instance_taken_out_gets_no_new_calls_and_calls_on_the_other_go_on(
    two: list[Rtpengine], endpoints: Endpoints
) -> None:
    """SIGSTOP one of two instances while calls run: new calls go to the other, whose calls carry on untouched."""
    registry = CollectorRegistry()
    draws = iter([0.1, 0.9] * 50)  # equal weights: alternate between the instances
    relay = make_relay(two, registry, draw=lambda: next(draws))
    try:
        await wait_until(lambda: all(i.health == "up" for i in relay.instances), "both up")
        calls = [await new_call(relay, endpoints, f"call-{n}") for n in range(4)]
        assert [c.session.instance.config.address for c in calls] == [
            two[0].ng,
            two[1].ng,
            two[0].ng,
            two[1].ng,
        ]
        for call in calls:
            await call.talk(3)
        first, survivor = relay.instances
        two[0].pause()
        await wait_until(lambda: first.health == "down", "the paused instance to be down")
        assert relay.online() is None
        assert registry.get_sample_value("lvgateway_rtpengine_up", {"instance": first.name}) == 0
        assert registry.get_sample_value("lvgateway_rtpengine_up", {"instance": survivor.name}) == 1
        new = [await new_call(relay, endpoints, f"new-{n}") for n in range(4)]
        assert {c.session.instance.config.address for c in new} == {two[1].ng}
        for call in [calls[1], calls[3], *new]:
            await call.talk(5)  # the survivor's calls, old and new, carry audio both ways
        assert all(len(c.vendor.received) == 3 for c in (calls[0], calls[2]))
        assert relay.stats().sessions == 8  # the paused instance's calls are left as they are
        assert running(two[0]) and running(two[1])
    finally:
        two[0].resume()
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_no_instance_up_refuses_calls_and_readiness_says_why(tmp_path: Path) -> None:
    """With its only instance paused, new calls are refused (503) and online() names the instance."""
    async with rtpengine(tmp_path) as daemon:
        registry = CollectorRegistry()
        relay = make_relay([daemon], registry)
        try:
            assert relay.online() is not None  # no ping answered yet, or just answered
            await wait_until(lambda: relay.online() is None, "the instance up")
            daemon.pause()
            await wait_until(lambda: relay.online() is not None, "the instance down")
            reason = relay.online()
            assert reason.startswith("no rtpengine instance answers ping")
            assert f"{daemon.ng[0]}:{daemon.ng[1]}" in reason
            with pytest.raises(NoMediaInstanceError) as refused:
                relay.new_session("refused")
            assert refused.value.sip_code == 503
            failures = registry.get_sample_value(
                "lvgateway_media_allocation_failures_total", {"reason": "no_instance"}
            )
            assert failures == 1
            daemon.resume()
            await wait_until(lambda: relay.online() is None, "the instance up again")
            accepted = relay.new_session("accepted")
            daemon.pause()  # a call released before any SDP sends rtpengine nothing
            released = accepted.release()
            assert released.called and relay.stats().sessions == 0
        finally:
            daemon.resume()
            await relay.stop()


@pytest_twisted.ensureDeferred
async def test_media_timeout_from_rtpengine_reports_and_delete_on_release(
    tmp_path: Path, endpoints: Endpoints
) -> None:
    """A vendor that stops sending is the silent side after the timeout; release deletes the call on rtpengine."""
    async with rtpengine(tmp_path) as daemon:
        relay = make_relay([daemon], CollectorRegistry(), initial_timeout=1.0, timeout=1.5)
        try:
            await wait_until(lambda: relay.online() is None, "the instance up")
            call = await new_call(relay, endpoints, "quiet")
            call.session.mark_answered()
            await call.talk(2)
            await wait_until(
                lambda: call.session.counters().last_from_vendor is not None, "a query report"
            )
            assert call.session.silent_side() is None
            for n in range(200):  # LiveVox keeps talking; the vendor is silent
                call.livevox.send(rtp(100 + n, ssrc=0x1000), call.livevox_to)
                await settle()
                if call.session.silent_side() is not None:
                    break
            assert call.session.silent_side() == "vendor"
            assert call.session.silence("vendor") >= 1.5
            await call.session.release()
            with pytest.raises(NgError, match="Unknown call-id"):
                await relay.command(
                    call.session.instance,
                    {"command": "query", "call-id": call.session.ng_call_id},
                )
            assert call.session.counters().livevox_to_vendor.packets > 2
            assert relay.stats().sessions == 0
        finally:
            await relay.stop()


@pytest_twisted.ensureDeferred
async def test_vendor_behind_nat_latches_to_its_first_packet_and_livevox_stays_strict(
    tmp_path: Path, endpoints: Endpoints
) -> None:
    """vendor_latching = "first_packet": the vendor's media from another port than its SDP's is latched once; LiveVox's side still refuses strangers."""
    async with rtpengine(tmp_path) as daemon:
        relay = make_relay([daemon], CollectorRegistry(), vendor_latching="first_packet")
        try:
            await wait_until(lambda: relay.online() is None, "the instance up")
            session = relay.new_session("nat")
            livevox, vendor_sdp = endpoints.open(LIVEVOX_HOST), endpoints.open(VENDOR_HOST)
            behind_nat = endpoints.open(VENDOR_HOST)  # where the vendor's media really comes from
            stranger = endpoints.open(LIVEVOX_HOST)
            livevox_to, vendor_to = await connect(session, livevox, vendor_sdp)
            stranger.send(rtp(1, ssrc=0xBAD), livevox_to)
            behind_nat.send(rtp(1, ssrc=0x2000), vendor_to)
            await wait_until(lambda: livevox.received, "the vendor's first packet at LiveVox")
            livevox.send(rtp(1, ssrc=0x1000), livevox_to)
            await wait_until(lambda: behind_nat.received, "LiveVox's audio at the NAT address")
            vendor_sdp.send(rtp(2, ssrc=0x2000), vendor_to)  # the latch does not move
            behind_nat.send(rtp(3, ssrc=0x2000), vendor_to)
            await wait_until(
                lambda: len(livevox.received) == 2, "the latched vendor's second packet"
            )
            await settle()
            assert livevox.payloads() == [rtp(1, ssrc=0x2000), rtp(3, ssrc=0x2000)]
            assert behind_nat.payloads() == [rtp(1, ssrc=0x1000)]
            assert stranger.received == [] and vendor_sdp.received == []
        finally:
            await relay.stop()
