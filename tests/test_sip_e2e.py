"""SIP end to end with SIPp on loopback: SIPp plays LiveVox (the guide's INVITE) and the AI vendor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted

from lvgateway.calls.outcome import TransferStatus

from .sip_gateway import SipGateway, all_succeed, free_udp_port, sipp, start_gateway
from .sip_helpers import wait_until

pytestmark = pytest.mark.timeout(60)

LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"


@pytest.fixture
def vendor_port() -> int:
    """The UDP port the SIPp vendor listens on."""
    return free_udp_port(VENDOR)


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path: Path, vendor_port: int) -> AsyncIterator[SipGateway]:
    """The SIP part on 127.0.0.1, its vendor endpoint the SIPp vendor on 127.0.0.3."""
    gw = start_gateway(tmp_path, [vendor_port])
    yield gw
    await gw.stop()


def ended(gw: SipGateway) -> list[dict[str, object]]:
    """What the call store was told at each call's end."""
    return [details for event, _, details in gw.calls.events if event == "ended"]


@pytest_twisted.ensureDeferred
async def test_call_bridges_with_context_headers_and_livevox_bye_ends_both(
    gateway: SipGateway, vendor_port: int
) -> None:
    """A LiveVox INVITE bridges to the vendor with the ids in its headers; LiveVox's BYE ends both legs."""
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    livevox = sipp("livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001")
    await all_succeed(livevox, vendor)
    await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    assert [e for e, _, _ in gateway.calls.events] == ["accept", "connected", "ended"]
    invite = gateway.calls.events[0][2]["invite"]
    assert invite.agent == "AIVA1" and invite.call_session_id.startswith("U2DB327T")
    assert invite.ani == "+19192109237"
    assert ended(gateway)[0]["reason"] == "caller_hangup"


@pytest_twisted.ensureDeferred
async def test_vendor_bye_ends_both_legs_with_its_disposition(
    gateway: SipGateway, vendor_port: int
) -> None:
    """The vendor's BYE ends the LiveVox leg too (with a Reason), and its disposition headers reach the store."""
    vendor = sipp("vendor_bye.xml", VENDOR, port=vendor_port, keys={"next_action": "done"})
    livevox = sipp(
        "livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000002"
    )
    await all_succeed(livevox, vendor)
    [end] = ended(gateway)
    assert end["reason"] == "vendor_hangup" and end["livevox_leg_up"] is False
    disposition = end["disposition"]
    assert disposition.term_code == "done" and disposition.account == "12345"  # type: ignore[attr-defined]
    assert disposition.call_outcome == "paid in full"  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_cancel_before_answer_gets_487_and_cancels_the_vendor_leg(
    gateway: SipGateway, vendor_port: int
) -> None:
    """LiveVox's CANCEL while the vendor rings ends the INVITE 487 and CANCELs the vendor leg."""
    vendor = sipp("vendor_ring.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_cancel.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
    )
    await all_succeed(livevox, vendor)
    await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    assert ended(gateway)[0]["reason"] == "caller_hangup"


async def expect_refusal(gateway: SipGateway, tmp_path: Path, number: str, code: int) -> None:
    """Send an INVITE for ``number`` and expect the final response ``code``."""
    template = (Path(__file__).parent / "sipp" / "livevox_refused.xml").read_text()
    scenario = tmp_path / f"refused_{code}.xml"
    scenario.write_text(template.replace("EXPECTED_CODE", str(code)))
    result = await sipp(str(scenario), LIVEVOX, ("127.0.0.1", gateway.port), service=number)
    assert result.code == 0, result


@pytest_twisted.ensureDeferred
async def test_unknown_number_gets_404(gateway: SipGateway, tmp_path: Path) -> None:
    """An 899 number no agent has is refused 404, and no call record is written."""
    await expect_refusal(gateway, tmp_path, "+18990009999", 404)
    assert gateway.calls.events == []


@pytest_twisted.ensureDeferred
async def test_agent_on_a_call_gets_486(gateway: SipGateway, tmp_path: Path) -> None:
    """An agent already on a call is refused 486 Busy Here."""
    gateway.pool.agent("AIVA3").call_id = "call-elsewhere"
    await expect_refusal(gateway, tmp_path, "18990000003", 486)


@pytest_twisted.ensureDeferred
async def test_logged_out_agent_gets_480(gateway: SipGateway, tmp_path: Path) -> None:
    """An agent the pool holds logged out is refused 480 Temporarily Unavailable."""
    gateway.pool.agent("AIVA2").logged_in = False
    await expect_refusal(gateway, tmp_path, "8990000002", 480)


@pytest_twisted.ensureDeferred
async def test_vendor_unavailable_gets_503(gateway: SipGateway, tmp_path: Path) -> None:
    """While the pool is paused because the vendor is down, INVITEs get 503."""
    from lvgateway.agents.interfaces import Refusal

    await gateway.pool.pause("vendor unavailable", Refusal.VENDOR_UNAVAILABLE)
    await expect_refusal(gateway, tmp_path, "+18990000001", 503)


@pytest_twisted.ensureDeferred
async def test_dead_vendor_endpoint_fails_the_call_503(tmp_path: Path) -> None:
    """With the only vendor endpoint silent, the call fails 503 after the no-progress time."""
    gateway = start_gateway(tmp_path, [free_udp_port(VENDOR)], no_progress=1)
    try:
        await expect_refusal(gateway, tmp_path, "+18990000001", 408)
        assert ended(gateway)[0]["reason"] == "timeout"
    finally:
        await gateway.stop()


@pytest_twisted.ensureDeferred
async def test_update_and_reinvite_refreshes_are_answered_and_the_call_stays_up(
    gateway: SipGateway, vendor_port: int
) -> None:
    """An UPDATE and a re-INVITE a second after the ACK, with a short Session-Expires, get 200; the call lasts."""
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_refresh.xml",
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        keys={"session_expires": "90"},
        hold_ms=1500,
    )
    await all_succeed(livevox, vendor)
    assert ended(gateway)[0]["reason"] == "caller_hangup"


@pytest_twisted.ensureDeferred
async def test_vendor_refer_keeps_the_customer_and_leads_to_the_transfer(
    gateway: SipGateway, vendor_port: int
) -> None:
    """A REFER from the vendor is answered 202, never hangs up on the customer, and starts the transfer."""
    vendor = sipp("vendor_refer.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
    )
    await wait_until(lambda: ended(gateway), 10, "the store to hear of the transfer")
    [end] = ended(gateway)
    assert end["livevox_leg_up"] is True and end["reason"] == "vendor_hangup"
    assert end["disposition"].next_action == "transfer"  # type: ignore[attr-defined]
    assert gateway.sip.router.live, "the customer's leg was hung up at the REFER"
    call_id = gateway.calls.events[0][1]
    # As the wrap-up does once LiveVox has the transfer: the REFER's final NOTIFY, then BYE.
    gateway.calls.transfer_done(call_id, TransferStatus(200, "OK"))
    await gateway.sip.router.hang_up_livevox(
        call_id, "transfer"
    )  # as the store does once LiveVox has it
    assert (await livevox).code == 0
    assert (await vendor).code == 0


@pytest_twisted.ensureDeferred
async def test_source_not_allowed_gets_nothing(gateway: SipGateway, tmp_path: Path) -> None:
    """An INVITE from 127.0.0.2 (not an allowed network) gets no answer at all and makes no call."""
    template = (Path(__file__).parent / "sipp" / "livevox_refused.xml").read_text()
    scenario = tmp_path / "stranger.xml"
    scenario.write_text(template.replace("EXPECTED_CODE", "404"))
    result = await sipp(
        str(scenario), "127.0.0.2", ("127.0.0.1", gateway.port), service="+18990000001", timeout=3
    )
    assert result.code != 0 and "timed out" in result.output
    assert gateway.sip.stack.source_filter.dropped >= 1
    assert gateway.calls.events == [] and gateway.pool.events == []


@pytest_twisted.ensureDeferred
async def test_no_rtp_ends_the_call_with_bye_and_reason(tmp_path: Path) -> None:
    """With neither side sending RTP, the media timeout ends both legs with BYE and a Reason."""
    vendor_port = free_udp_port(VENDOR)
    gateway = start_gateway(tmp_path, [vendor_port], media_timeout=1)
    try:
        vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
        livevox = sipp(
            "livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        await all_succeed(livevox, vendor)
        assert ended(gateway)[0]["reason"] == "timeout"
    finally:
        await gateway.stop()


@pytest_twisted.ensureDeferred
async def test_vendor_503_fails_over_to_the_next_endpoint(tmp_path: Path) -> None:
    """The first vendor endpoint refuses 503; the call bridges through the second."""
    busy_port, good_port = free_udp_port(VENDOR), free_udp_port(VENDOR)
    gateway = start_gateway(tmp_path, [busy_port, good_port])
    try:
        busy = sipp("vendor_busy.xml", VENDOR, port=busy_port)
        good = sipp("vendor_answer.xml", VENDOR, port=good_port)
        livevox = sipp(
            "livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        await all_succeed(livevox, busy, good)
        assert [e for e, _, _ in gateway.calls.events] == ["accept", "connected", "ended"]
    finally:
        await gateway.stop()


@pytest_twisted.ensureDeferred
async def test_invite_without_sdp_is_bridged(gateway: SipGateway, vendor_port: int) -> None:
    """A delayed offer (INVITE with no SDP) is not rejected: the vendor's offer reaches LiveVox in the 200."""
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_delayed_offer.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
    )
    await all_succeed(livevox, vendor)
    assert ended(gateway)[0]["reason"] == "caller_hangup"


@pytest_twisted.ensureDeferred
async def test_vendor_digest_challenge_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vendor endpoint that answers 401 gets the INVITE again with the right digest credentials."""
    monkeypatch.setenv("LVGW_TEST_VENDOR_PASSWORD", "vendor-digest-secret")
    vendor_port = free_udp_port(VENDOR)
    auth = 'username = "lvgw"\npassword_env = "LVGW_TEST_VENDOR_PASSWORD"\n'
    gateway = start_gateway(tmp_path, [vendor_port], endpoint_auth=auth)
    try:
        vendor = sipp("vendor_digest.xml", VENDOR, port=vendor_port)
        livevox = sipp(
            "livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        await all_succeed(livevox, vendor)
    finally:
        await gateway.stop()


@pytest_twisted.ensureDeferred
async def test_bodyless_reinvite_is_answered_and_the_call_stays_up(
    gateway: SipGateway, vendor_port: int
) -> None:
    """A re-INVITE without SDP from LiveVox gets 200 with an offer; the vendor sees a re-INVITE; the call lasts."""
    vendor = sipp("vendor_reinvite.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_bodyless_reinvite.xml",
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        hold_ms=500,
    )
    await all_succeed(livevox, vendor)
    assert ended(gateway)[0]["reason"] == "caller_hangup"


@pytest_twisted.ensureDeferred
async def test_oversized_vendor_invite_is_warned_about(tmp_path: Path) -> None:
    """A B-leg INVITE larger than max_invite_bytes logs a warning naming its size; the call still bridges."""
    from twisted.logger import LogEvent, formatEvent, globalLogPublisher

    seen: list[str] = []

    def observer(event: LogEvent) -> None:
        seen.append(formatEvent(event))

    vendor_port = free_udp_port(VENDOR)
    gateway = start_gateway(tmp_path, [vendor_port], max_invite_bytes=500)
    globalLogPublisher.addObserver(observer)
    try:
        vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
        livevox = sipp(
            "livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        await all_succeed(livevox, vendor)
    finally:
        globalLogPublisher.removeObserver(observer)
        await gateway.stop()
    warnings = [line for line in seen if "the vendor INVITE is" in line and "over 500" in line]
    assert len(warnings) == 1, warnings
