"""Transfers to a number and dispositions from Refer-To, User-to-User and Reason, through the wrap-up over a fake LiveVox."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvgateway.calls.outcome import TransferStatus, transfer_status
from lvgateway.calls.testing import wrapup_config
from lvgateway.livevox.errors import LiveVoxClientError
from tests.calls_support import PAYMENT_ID, TRANSFER_ID, Harness, run


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    """The wrap-up harness with its default config."""
    return Harness(str(tmp_path))


def test_refer_to_a_number_conferences_before_the_transfer_term_code(h: Harness) -> None:
    """A Refer-To with a number is LiveVox's manual conference to it, posted before the term code; NOTIFY status 200."""
    record = h.place()
    order: list[str] = []
    h.calls.pipeline.add_listener(lambda call_id, step, outcome: order.append(f"{step}:{outcome}"))
    run(h.source.vendor_refers(record.call_id, {"Refer-To": "<tel:+1-415-555-0100>"}))
    assert [c["number"] for c in h.livevox.conferences] == ["+14155550100"]
    assert order.index("conference:done") < order.index("term_code:sent")
    assert [s["term_code_id"] for s in h.saved()] == [TRANSFER_ID]
    assert h.source.transfer_statuses == [(record.call_id, TransferStatus(200, "OK", 200))]
    assert h.source.hang_ups == [(record.call_id, "transfer")]


def test_conference_after_the_term_code_is_refused_and_mapped(tmp_path: Path) -> None:
    """With term_code_then_conference, LiveVox refuses the conference (400, call closed): NOTIFY says 603 Decline."""
    h = Harness(str(tmp_path), config=wrapup_config(conference_order="term_code_then_conference"))
    record = h.place()
    run(h.source.vendor_refers(record.call_id, {"Refer-To": "<sip:4155550100@vendor.example>"}))
    assert [s["term_code_id"] for s in h.saved()] == [TRANSFER_ID]
    assert h.livevox.conferences == []
    assert h.source.transfer_statuses == [(record.call_id, TransferStatus(603, "Decline", 400))]


def test_conference_refused_still_saves_the_term_code(h: Harness) -> None:
    """A conference LiveVox answers 404 is noted for the NOTIFY (404) and the transfer term code still goes."""
    h.livevox.fail_next(
        "manual_conference", LiveVoxClientError("conference_manual", status=404, message="no")
    )
    record = h.place()
    run(h.source.vendor_refers(record.call_id, {"Refer-To": "<tel:+14155550100>"}))
    assert [s["term_code_id"] for s in h.saved()] == [TRANSFER_ID]
    assert h.source.transfer_statuses == [(record.call_id, TransferStatus(404, "Not Found", 404))]


def test_refer_to_embedded_headers_reach_the_aia_and_term_code(h: Harness) -> None:
    """Headers embedded in Refer-To (URL-encoded) are the disposition: AIA fields and the term code."""
    record = h.place()
    refer_to = "<sip:human@vendor.example?X-LV-Term-Code=AI%20Payment%20Taken&X-LV-Call-Outcome=paid%20in%20full&X-LV-Other2=a%3Db>"
    run(h.source.vendor_refers(record.call_id, {"Refer-To": refer_to}))
    [aia] = h.aia.posted  # type: ignore[union-attr]
    assert (aia.next_action, aia.call_outcome, aia.other) == (
        "transfer",
        "paid in full",
        {2: "a=b"},
    )
    assert [s["term_code_id"] for s in h.saved()] == [PAYMENT_ID]
    assert h.livevox.conferences == []


def test_user_to_user_hex_reaches_the_aia_and_term_code(h: Harness) -> None:
    """User-to-User (RFC 7433, hex with an IA5 discriminator) carries term code, outcome and Other fields."""
    record = h.place()
    payload = b"\x04term_code=AI Payment Taken;call_outcome=promised;other3=x"
    run(h.source.vendor_hangs_up(record.call_id, {"User-to-User": payload.hex() + ";encoding=hex"}))
    [aia] = h.aia.posted  # type: ignore[union-attr]
    assert (aia.call_outcome, aia.other) == ("promised", {3: "x"})
    assert [s["term_code_id"] for s in h.saved()] == [PAYMENT_ID]


def test_user_to_user_text_and_json(h: Harness) -> None:
    """User-to-User with a non-hex encoding is text; JSON is read as the vendor API's body."""
    record = h.place()
    uui = '{"next_action": "transfer"};encoding=text'
    run(h.source.vendor_hangs_up(record.call_id, {"User-to-User": uui}))
    assert [s["term_code_id"] for s in h.saved()] == [TRANSFER_ID]
    assert h.source.hang_ups == [(record.call_id, "transfer")]


def test_reason_text_and_cause_reach_the_aia(h: Harness) -> None:
    """Reason: Q.850 cause and text become the call outcome; a text of pairs is a disposition."""
    first = h.place()
    run(
        h.source.vendor_hangs_up(
            first.call_id, {"Reason": 'Q.850;cause=16;text="Normal call clearing"'}
        )
    )
    [aia] = h.aia.posted  # type: ignore[union-attr]
    assert aia.call_outcome == "Q.850 16 Normal call clearing"
    second = h.place()
    run(
        h.source.vendor_hangs_up(
            second.call_id,
            {"Reason": 'SIP;cause=200;text="X-LV-Term-Code=AI Payment Taken;X-LV-Result=PTP"'},
        )
    )
    assert [s["term_code_id"] for s in h.saved()][-1] == PAYMENT_ID
    assert h.aia.posted[-1].lvresult == "PTP"  # type: ignore[union-attr]


def test_precedence_x_lv_over_refer_to_over_uui_over_reason(h: Harness) -> None:
    """Several sources: X-LV-* wins, then Refer-To's headers, then User-to-User, then Reason, field by field."""
    record = h.place()
    headers = {
        "X-LV-Call-Outcome": "from x-lv",
        "Refer-To": "<sip:human@v?X-LV-Call-Outcome=from%20refer&X-LV-Other1=refer>",
        "User-to-User": b"other1=uui;other2=uui;term_code=AI Payment Taken".hex(),
        "Reason": 'SIP;cause=200;text="other2=reason;other3=reason"',
    }
    run(h.source.vendor_refers(record.call_id, headers))
    [aia] = h.aia.posted  # type: ignore[union-attr]
    assert aia.call_outcome == "from x-lv"
    assert aia.other == {1: "refer", 2: "uui", 3: "reason"}
    assert [s["term_code_id"] for s in h.saved()] == [PAYMENT_ID]


def test_transfer_timeout_maps_to_408(h: Harness) -> None:
    """Posts that outlive transfer_timeout: the NOTIFY status is 408 and the leg is ended."""
    h.livevox.gate("save_term_code")
    record = h.place()
    run(h.source.vendor_refers(record.call_id, {"Refer-To": "<sip:human@v>"}))
    h.clock.advance(h.config.transfer_timeout + 0.1)
    assert h.source.transfer_statuses == [(record.call_id, transfer_status(None))]
    assert transfer_status(None).sipfrag == "SIP/2.0 408 Request Timeout"
