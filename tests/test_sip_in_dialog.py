"""What LiveVox may send besides a call, with SIPp: in-dialog requests the gateway does not relay, and Max-Forwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted

from .sip_gateway import SCENARIOS, SipGateway, all_succeed, free_udp_port, sipp, start_gateway

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


def vendor_expecting_hops(tmp_path: Path, hops: int) -> str:
    """A copy of vendor_answer_hops.xml that fails the call unless Max-Forwards is ``hops``."""
    scenario = tmp_path / f"vendor_hops_{hops}.xml"
    scenario.write_text(
        (SCENARIOS / "vendor_answer_hops.xml").read_text().replace("HOPS", str(hops))
    )
    return str(scenario)


@pytest_twisted.ensureDeferred
async def test_notify_and_message_get_405_and_update_after_bye_gets_481(
    gateway: SipGateway, tmp_path: Path, vendor_port: int
) -> None:
    """In the dialog, NOTIFY and MESSAGE get 405 (or 501); after BYE, an UPDATE gets 481; the vendor sees 67 hops."""
    vendor = sipp(vendor_expecting_hops(tmp_path, 67), VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_in_dialog.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
    )
    await all_succeed(livevox, vendor)
    assert [event for event, _, _ in gateway.calls.events].count("ended") == 1


@pytest_twisted.ensureDeferred
async def test_the_vendor_check_fails_on_a_value_it_does_not_expect(
    gateway: SipGateway, tmp_path: Path, vendor_port: int
) -> None:
    """The vendor's Max-Forwards check is real: expecting 68 (the undecremented value) fails the call."""
    vendor = sipp(vendor_expecting_hops(tmp_path, 68), VENDOR, port=vendor_port, timeout=8)
    livevox = sipp(
        "livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001", timeout=8
    )
    assert (await vendor).code != 0
    await livevox  # it fails or completes; only the vendor's verdict matters here


@pytest_twisted.ensureDeferred
async def test_invite_with_max_forwards_0_gets_483(gateway: SipGateway, tmp_path: Path) -> None:
    """An INVITE with Max-Forwards: 0 is refused 483 Too Many Hops, and no call starts."""
    template = (SCENARIOS / "livevox_refused.xml").read_text()
    scenario = tmp_path / "refused_483.xml"
    scenario.write_text(
        template.replace("EXPECTED_CODE", "483").replace("Max-Forwards: 68", "Max-Forwards: 0", 1)
    )
    assert "Max-Forwards: 0" in scenario.read_text()
    result = await sipp(str(scenario), LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001")
    assert result.code == 0, result
    assert gateway.calls.events == []


@pytest_twisted.ensureDeferred
async def test_options_with_max_forwards_0_gets_200(gateway: SipGateway) -> None:
    """An OPTIONS with Max-Forwards: 0 is answered 200: the limit is for proxies, not the UAS."""
    result = await sipp("livevox_options.xml", LIVEVOX, ("127.0.0.1", gateway.port))
    assert result.code == 0, result
