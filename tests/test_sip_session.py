"""Re-INVITEs and RFC 4028 session timers across the bridge, with SIPp on loopback.

A rejected re-INVITE is relayed and the call goes on with its SDP; a
body-less re-INVITE is relayed as one, its answer carried back in the ACK;
every 2xx to a refresh names the refresher; the gateway refreshes when it is
the refresher, and ends both legs when a refresh due from the peer does not
come. Session intervals are short real seconds (Sippy's timers are real);
``[sip] session_min_se`` lowers the floor for that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor

from lvgateway.agents.testing import FakeAgent, FakeAgentPool
from lvgateway.calls.testing import FakeCalls
from lvgateway.drain import OrderedDrain
from lvgateway.health import Readiness
from lvgateway.media.select import make_media_relay
from lvgateway.metrics import new_registry
from lvgateway.sip.service import SipService
from lvgateway.sip.sippy_reactor import SippyOnReactor

from .sip_gateway import SCENARIOS, SipGateway, all_succeed, free_udp_port, gateway_config, sipp

pytestmark = pytest.mark.timeout(60)

LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"


def start(tmp: Path, vendor_port: int, min_se: int = 90, quiet_for: int = 60) -> SipGateway:
    """As ``sip_gateway.start_gateway``, with ``[sip] session_min_se`` set to ``min_se``.

    The SIPp peers send no RTP and answer no OPTIONS: for ``quiet_for``
    seconds the vendor is not probed with OPTIONS (in the dialog or out of
    it, for its health) nor is a call ended for want of media.
    """
    config = gateway_config(tmp, [vendor_port], media_timeout=quiet_for, health_interval=quiet_for)
    config = attrs.evolve(
        config,
        sip=attrs.evolve(config.sip, session_min_se=min_se),
        vendor=attrs.evolve(config.vendor, session_expires=0, silence_timeout=float(quiet_for)),
    )
    pool = FakeAgentPool(FakeAgent(f"AIVA{n}", f"+189900000{n:02d}") for n in range(1, 5))
    calls = FakeCalls(reactor.seconds)  # type: ignore[attr-defined]
    registry = new_registry(process_metrics=False)
    media = make_media_relay(
        reactor,
        config.media,
        registry,
        config.sip.allowed_networks,
        ensure_sippy=lambda: SippyOnReactor.for_reactor(reactor),
    )
    media.start()
    drain = OrderedDrain(reactor, config.gateway.drain_timeout)
    readiness = Readiness()
    sip = SipService(reactor, config, pool, calls, media, registry, drain, readiness)
    sip.startService()
    return SipGateway(config, pool, calls, media, sip, drain, readiness)


@pytest.fixture
def vendor_port() -> int:
    """The UDP port the SIPp vendor listens on."""
    return free_udp_port(VENDOR)


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path: Path, vendor_port: int) -> AsyncIterator[SipGateway]:
    """The SIP part with a session floor of 2 s, its vendor the SIPp vendor on 127.0.0.3."""
    gw = start(tmp_path, vendor_port, min_se=2)
    yield gw
    await gw.stop()


def ended(gw: SipGateway) -> list[dict[str, Any]]:
    """What the call store was told at each call's end."""
    return [details for event, _, details in gw.calls.events if event == "ended"]


def with_code(tmp: Path, name: str, code: int) -> str:
    """A copy of scenario ``name`` with REJECT_CODE replaced by ``code``."""
    path = tmp / f"{code}-{name}"
    path.write_text((SCENARIOS / name).read_text().replace("REJECT_CODE", str(code)))
    return str(path)


async def caller_ends_it(gateway: SipGateway, vendor: Any, scenario: str, **kw: Any) -> None:
    """Run SIPp LiveVox ``scenario`` against ``gateway`` beside the running ``vendor``; both succeed, and the call ends by LiveVox's BYE."""
    livevox = sipp(scenario, LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001", **kw)
    await all_succeed(livevox, vendor)
    [end] = ended(gateway)
    assert end["reason"] == "caller_hangup"  # not a refusal, an expiry or a failure


def unrelayable(tmp: Path, name: str) -> str:
    """A copy of scenario ``name`` (REJECT_CODE 488) whose re-INVITE names a host, not an address, in ``c=``."""
    path = Path(with_code(tmp, name, 488))
    text = path.read_text().replace(
        "c=IN IP4 [media_ip]\n      t=0 0\n      m=audio [media_port+2]",
        "c=IN IP4 media.example.com\n      t=0 0\n      m=audio [media_port+2]",
    )
    assert text.count("media.example.com") == 1, name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("code", [488, 491, 503])
@pytest_twisted.ensureDeferred
async def test_reinvite_rejected_by_the_vendor_is_relayed_and_the_call_goes_on(
    gateway: SipGateway, tmp_path: Path, vendor_port: int, code: int
) -> None:
    """LiveVox's re-INVITE refused by the vendor gets that code back; the call and its SDP survive."""
    vendor = sipp(
        with_code(tmp_path, "vendor_reinvite_rejected.xml", code), VENDOR, port=vendor_port
    )
    livevox = sipp(
        with_code(tmp_path, "livevox_reinvite_rejected.xml", code),
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        keys={"session_expires": "30"},
    )
    await all_succeed(livevox, vendor)
    [end] = ended(gateway)
    assert end["reason"] == "caller_hangup"  # not the re-INVITE's failure


@pytest_twisted.ensureDeferred
async def test_bodyless_reinvite_is_relayed_without_a_body_and_the_ack_carries_the_answer(
    gateway: SipGateway, vendor_port: int
) -> None:
    """LiveVox's body-less re-INVITE reaches the vendor body-less; LiveVox's answer reaches it in the ACK."""
    vendor = sipp("vendor_bodyless_reinvite.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_bodyless_reinvite.xml",
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        hold_ms=300,
    )
    await all_succeed(livevox, vendor)
    assert ended(gateway)[0]["reason"] == "caller_hangup"


@pytest_twisted.ensureDeferred
async def test_no_refresher_named_makes_the_gateway_refresh_by_update(
    gateway: SipGateway, vendor_port: int
) -> None:
    """Session-Expires: 2 with no refresher: the 200 says refresher=uas, and the gateway sends UPDATE."""
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_gateway_refreshes.xml",
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        keys={"session_expires": "2"},
        hold_ms=200,
    )
    await all_succeed(livevox, vendor)
    assert ended(gateway)[0]["reason"] == "caller_hangup"


@pytest_twisted.ensureDeferred
async def test_missing_refresh_ends_both_legs_with_bye_and_reason(
    gateway: SipGateway, vendor_port: int
) -> None:
    """LiveVox promises to refresh every 2 s and does not: both legs get BYE with a Reason."""
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_wait_bye.xml",
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        keys={"session_expires": "2"},
    )
    await all_succeed(livevox, vendor)
    [end] = ended(gateway)
    assert end["reason"] == "timeout"
    kinds = [e for e, _, d in gateway.calls.events]
    assert kinds == ["accept", "connected", "ended"]


@pytest_twisted.ensureDeferred
async def test_session_expires_under_min_se_gets_422(gateway: SipGateway, tmp_path: Path) -> None:
    """An INVITE whose Session-Expires is under the floor is refused 422 with Min-SE; no call starts."""
    template = (SCENARIOS / "livevox_refused.xml").read_text()
    text = template.replace("EXPECTED_CODE", "422").replace(
        "Max-Forwards: 68", "Max-Forwards: 68\n      Session-Expires: 1\n      Supported: timer", 1
    )
    assert "Session-Expires: 1" in text
    scenario = tmp_path / "refused_422.xml"
    scenario.write_text(text)
    result = await sipp(
        str(scenario),
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        keys={"session_expires": "1"},
    )
    assert result.code == 0, result
    assert gateway.calls.events == []
    assert not gateway.sip.router.live


@pytest_twisted.ensureDeferred
async def test_update_with_a_new_sdp_is_relayed_and_answered_with_the_vendors_answer(
    gateway: SipGateway, vendor_port: int
) -> None:
    """LiveVox's UPDATE with a new offer reaches the vendor (as a re-INVITE); its answer comes back in the 200."""
    vendor = sipp("vendor_reinvite.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_update_offer.xml",
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        keys={"session_expires": "30"},
        hold_ms=300,
    )
    await all_succeed(livevox, vendor)
    assert ended(gateway)[0]["reason"] == "caller_hangup"


@pytest.mark.parametrize(
    ("scenario", "refreshes"),
    [("livevox_gateway_refreshes_often.xml", 6), ("livevox_gateway_refreshes_by_reinvite.xml", 3)],
    ids=["update", "reinvite"],
)
@pytest_twisted.ensureDeferred
async def test_refresher_uas_makes_the_gateway_refresh_and_the_call_outlive_the_interval(
    gateway: SipGateway, vendor_port: int, scenario: str, refreshes: int
) -> None:
    """Session-Expires: 2;refresher=uas: the gateway refreshes every second, by UPDATE where LiveVox allows it, else by re-INVITE.

    Each refresh comes half an interval after the last one was answered, so
    six refreshes (the scenario's loop) outlive three intervals; a call the
    gateway did not keep alive would be ended at its first expiry, with BYE.
    """
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port, timeout=30)
    await caller_ends_it(
        gateway, vendor, scenario, keys={"session_expires": "2"}, hold_ms=200, timeout=30
    )


@pytest_twisted.ensureDeferred
async def test_vendor_reinvite_refused_by_livevox_is_relayed_and_the_call_goes_on(
    gateway: SipGateway, tmp_path: Path, vendor_port: int
) -> None:
    """The vendor's re-INVITE refused 488 by LiveVox: the vendor gets 488, LiveVox's refresh is still answered, the call ends by LiveVox's BYE."""
    vendor = sipp(
        with_code(tmp_path, "vendor_reinvite_refused_by_livevox.xml", 488),
        VENDOR,
        port=vendor_port,
        hold_ms=300,
    )
    await caller_ends_it(
        gateway,
        vendor,
        with_code(tmp_path, "livevox_refuses_reinvite.xml", 488),
        keys={"session_expires": "30"},
    )


@pytest_twisted.ensureDeferred
async def test_refresh_reinvite_under_min_se_gets_422_and_the_call_goes_on(
    gateway: SipGateway, vendor_port: int
) -> None:
    """An in-dialog refresh asking for 1 s, under the 2 s floor, gets 422 with Min-SE; a proper refresh then gets 200."""
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    await caller_ends_it(
        gateway,
        vendor,
        "livevox_refresh_too_small.xml",
        keys={"session_expires": "30"},
        hold_ms=200,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest_twisted.ensureDeferred
async def test_livevox_refreshing_every_45s_at_the_real_90s_floor_outlives_two_intervals(
    tmp_path: Path, vendor_port: int
) -> None:
    """Session-Expires: 90;refresher=uac under the RFC's own floor: refreshed every 45 s, the call lasts three minutes.

    The gateway would end it 60 s after the last refresh (RFC 4028 section
    10); four refreshes 45 s apart keep it up for two whole intervals, each
    answered 200 with Session-Expires. About three minutes: marked ``slow``.
    """
    gateway = start(tmp_path, vendor_port, min_se=90, quiet_for=600)
    try:
        vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port, timeout=240)
        await caller_ends_it(
            gateway, vendor, "livevox_refreshes_at_the_floor.xml", hold_ms=45_000, timeout=240
        )
        assert [e for e, _, _ in gateway.calls.events] == ["accept", "connected", "ended"]
    finally:
        await gateway.stop()


@pytest_twisted.ensureDeferred
async def test_reinvite_whose_sdp_the_relay_refuses_gets_488_and_the_call_goes_on(
    gateway: SipGateway, tmp_path: Path, vendor_port: int
) -> None:
    """LiveVox re-INVITEs with a host name in c= (the relay takes addresses only): 488 back, and the call goes on."""
    text = unrelayable(tmp_path, "livevox_reinvite_rejected.xml")
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    await caller_ends_it(gateway, vendor, text, keys={"session_expires": "30"})


@pytest_twisted.ensureDeferred
async def test_vendor_reinvite_whose_sdp_the_relay_refuses_gets_488_and_the_call_goes_on(
    gateway: SipGateway, tmp_path: Path, vendor_port: int
) -> None:
    """The vendor re-INVITEs with a host name in c=: 488 back to it, nothing to LiveVox, and the call goes on."""
    text = unrelayable(tmp_path, "vendor_reinvite_refused_by_livevox.xml")
    vendor = sipp(text, VENDOR, port=vendor_port, hold_ms=300)
    await caller_ends_it(gateway, vendor, "livevox_call.xml", hold_ms=1500)
