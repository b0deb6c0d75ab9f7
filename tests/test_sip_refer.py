"""REFER per RFC 3515 / RFC 7647 / RFC 4488 and no redirect leaks, end to end with SIPp on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol

from lvgateway.calls.outcome import TransferStatus

from .sip_gateway import SCENARIOS, SipGateway, all_succeed, free_udp_port, sipp, start_gateway
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


def refer_scenario(tmp_path: Path, refer_to: str, final: str) -> str:
    """The NOTIFY-checking vendor scenario with its Refer-To and expected final sipfrag status."""
    text = (SCENARIOS / "vendor_refer_notify.xml").read_text()
    path = tmp_path / "vendor_refer_notify.xml"
    path.write_text(text.replace("REFER_TO", refer_to).replace("FINAL_STATUS", final))
    return str(path)


async def transfer(gateway: SipGateway, status: TransferStatus) -> str:
    """Wait for the REFER's transfer, then finish it as the wrap-up does: status, then BYE."""
    await wait_until(lambda: gateway.calls.transfers, 10, "the REFER to start a transfer")
    [call_id] = gateway.calls.transfers
    gateway.calls.transfer_done(call_id, status)
    await gateway.sip.router.hang_up_livevox(call_id, "transfer")
    return call_id


@pytest_twisted.ensureDeferred
async def test_refer_gets_trying_then_the_final_notify_before_the_bye(
    gateway: SipGateway, vendor_port: int, tmp_path: Path
) -> None:
    """REFER: 202, NOTIFY "100 Trying", then NOTIFY "200 OK" (terminated) once LiveVox took the transfer."""
    scenario = refer_scenario(tmp_path, "<sip:human@[local_ip]>", "200 OK")
    vendor = sipp(scenario, VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
    )
    await wait_until(lambda: gateway.calls.transfers, 10, "the REFER to start a transfer")
    [call] = gateway.sip.router.live
    assert call.ua_o is not None
    await wait_until(lambda: call.ua_o.refer_notifies, 5, "the 100 Trying NOTIFY")
    assert gateway.sip.router.live, "the customer's leg was hung up at the REFER"
    assert call.media.counters().muted == {"vendor"}, "the bot still speaks to the customer"
    await transfer(gateway, TransferStatus(200, "OK"))
    await all_succeed(livevox, vendor)
    statuses = [(status, final) for _, status, final in call.ua_o.refer_notifies]
    assert statuses == [("SIP/2.0 100 Trying", False), ("SIP/2.0 200 OK", True)]


@pytest_twisted.ensureDeferred
async def test_refer_to_a_number_and_a_livevox_refusal_maps_to_the_final_notify(
    gateway: SipGateway, vendor_port: int, tmp_path: Path
) -> None:
    """A tel: Refer-To with embedded headers gives the transfer number and disposition; LiveVox's 400 is "603 Decline"."""
    refer_to = "<tel:+1-415-555-0100?X-LV-Term-Code=billing&X-LV-Other1=a%20b>"
    vendor = sipp(refer_scenario(tmp_path, refer_to, "603 Decline"), VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
    )
    await wait_until(lambda: ended(gateway), 10, "the store to hear of the transfer")
    disposition = ended(gateway)[0]["disposition"]
    assert disposition.transfer_number == "+14155550100"  # type: ignore[attr-defined]
    # The REFER's own X-LV-Term-Code outranks the one embedded in Refer-To.
    assert disposition.term_code == "transfer"  # type: ignore[attr-defined]
    assert disposition.other == {1: "a b"}  # type: ignore[attr-defined]
    await transfer(gateway, TransferStatus(603, "Decline", 400))
    await all_succeed(livevox, vendor)


@pytest_twisted.ensureDeferred
async def test_refer_sub_false_gets_no_notify(gateway: SipGateway, vendor_port: int) -> None:
    """Refer-Sub: false (RFC 4488): the 202 says Refer-Sub: false and no NOTIFY is sent, only the BYE."""
    vendor = sipp("vendor_refer_nosub.xml", VENDOR, port=vendor_port)
    livevox = sipp(
        "livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
    )
    await transfer(gateway, TransferStatus(200, "OK"))
    await all_succeed(livevox, vendor)
    assert ended(gateway)[0]["livevox_leg_up"] is True


@pytest_twisted.ensureDeferred
async def test_refer_without_refer_to_is_refused_400(
    gateway: SipGateway, vendor_port: int, tmp_path: Path
) -> None:
    """A REFER with no Refer-To gets 400 and starts nothing; the vendor's BYE then ends the call."""
    text = (SCENARIOS / "vendor_refer_nosub.xml").read_text()
    text = text.replace("      Refer-To: <sip:human@[local_ip]>\n      Refer-Sub: false\n", "")
    head, _, _ = text.partition('  <recv response="202">')
    bye = (SCENARIOS / "vendor_bye.xml").read_text()
    tail = bye[bye.index("  <send", bye.index('<recv request="ACK"/>')) :]
    scenario = tmp_path / "vendor_refer_400.xml"
    scenario.write_text(
        head
        + '  <recv response="400"/>\n'
        + tail.replace("CSeq: 2 BYE", "CSeq: 3 BYE").replace("SIPpTag02", "SIPpTag03")
    )
    vendor = sipp(str(scenario), VENDOR, port=vendor_port, keys={"next_action": "done"})
    livevox = sipp(
        "livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
    )
    await all_succeed(livevox, vendor)
    assert [d["event"].value for d in ended(gateway)] == ["vendor_hangup"]  # type: ignore[attr-defined]
    assert not gateway.calls.transfers


@pytest_twisted.ensureDeferred
async def test_vendor_redirect_to_an_unknown_host_never_reaches_livevox(
    gateway: SipGateway, vendor_port: int, tmp_path: Path
) -> None:
    """A vendor 302 toward a host not in the config is not followed: LiveVox gets 503, never the 302."""
    template = (SCENARIOS / "livevox_refused.xml").read_text()
    scenario = tmp_path / "livevox_503.xml"
    scenario.write_text(template.replace("EXPECTED_CODE", "503"))
    vendor = sipp("vendor_redirect.xml", VENDOR, port=vendor_port)
    livevox = sipp(str(scenario), LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001")
    await all_succeed(livevox, vendor)
    [(_, event)] = [r for r in gateway.calls.reports if r[1].kind.value == "setup_failed"]
    assert event.code == 503


class _Listener(DatagramProtocol):
    """A vendor endpoint that never answers; it keeps what reaches it."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: object) -> None:
        self.datagrams.append(datagram)


@pytest_twisted.ensureDeferred
async def test_vendor_redirect_to_a_configured_endpoint_is_followed_there(tmp_path: Path) -> None:
    """Endpoints A, B, C: A's 302 names C, so C gets the call, B (next in failover order) never an INVITE."""
    first, third = free_udp_port(VENDOR), free_udp_port(VENDOR)
    silent = _Listener()
    listening = reactor.listenUDP(0, silent, interface=VENDOR)  # type: ignore[attr-defined]
    second = listening.getHost().port
    gateway = start_gateway(tmp_path, [first, second, third])
    try:
        scenario = tmp_path / "vendor_redirect.xml"
        scenario.write_text(
            (SCENARIOS / "vendor_redirect.xml")
            .read_text()
            .replace("sip:elsewhere@127.0.0.99:5099", f"sip:bot@{VENDOR}:{third}")
        )
        redirecting = sipp(str(scenario), VENDOR, port=first)
        answering = sipp("vendor_answer.xml", VENDOR, port=third)
        livevox = sipp(
            "livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        await all_succeed(livevox, redirecting, answering)
        assert not [d for d in silent.datagrams if d.startswith(b"INVITE ")]
        assert [d["reason"] for d in ended(gateway)] == ["caller_hangup"]
    finally:
        await listening.stopListening()
        await gateway.stop()
