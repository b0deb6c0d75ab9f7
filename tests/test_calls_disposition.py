"""Dispositions: from BYE and REFER headers, from the vendor API's JSON, and laid over each other."""

from __future__ import annotations

import json

import pytest
from twisted.logger import capturedLogs

from lvgateway.calls.disposition import (
    DISPOSITION_HEADERS,
    disposition_from_headers,
    disposition_from_json,
)
from lvgateway.calls.errors import DispositionError
from lvgateway.calls.records import Disposition, InviteFacts


def test_every_disposition_header_is_read_in_any_case() -> None:
    """Each documented header reaches its field, whatever case Sippy gave its name."""
    headers = [
        ("x-lv-term-code", "AI Completed"),
        ("X-LV-NEXT-ACTION", "Transfer"),
        ("X-Lv-Call-Outcome", "paid"),
        ("x-lv-result", "AGENT - Completed"),
        ("X-LV-Account", "1001"),
        ("X-LV-Other1", "intent=billing"),
        ("x-lv-other20", "last"),
        ("Via", "SIP/2.0/UDP 127.0.0.1"),
    ]
    assert disposition_from_headers(headers) == Disposition(
        term_code="AI Completed",
        next_action="transfer",
        call_outcome="paid",
        result="AGENT - Completed",
        account="1001",
        other={1: "intent=billing", 20: "last"},
    )


def test_headers_without_a_disposition_give_none() -> None:
    """A BYE with no disposition header gives no disposition, so the end reason's default applies."""
    assert disposition_from_headers({"Reason": "Q.850;cause=16", "X-LV-Term-Code": ""}) is None


def test_bad_header_values_are_logged_and_left_out() -> None:
    """A next action other than done/transfer, or an Other out of 1..20, is dropped with a warning."""
    with capturedLogs() as events:
        d = disposition_from_headers(
            {"X-LV-Next-Action": "escalate", "X-LV-Other21": "x", "X-LV-Term-Code": "done"}, "c1"
        )
    assert d == Disposition(term_code="done")
    text = " ".join(str(e.get("log_format")) for e in events)
    assert "X-LV-Next-Action" in text and "X-LV-Other1..20" in text
    assert all(e.get("call_id") == "c1" for e in events)


def test_documented_header_names() -> None:
    """The header list is the contract of docs/design.md: five named headers and Other1..Other20."""
    assert DISPOSITION_HEADERS[:5] == (
        "X-LV-Term-Code",
        "X-LV-Next-Action",
        "X-LV-Call-Outcome",
        "X-LV-Result",
        "X-LV-Account",
    )
    assert DISPOSITION_HEADERS[5:] == tuple(f"X-LV-Other{n}" for n in range(1, 21))


def test_json_disposition_with_every_field() -> None:
    """The vendor API's JSON gives the same model, plus contact changes."""
    body = {
        "term_code": 101416228,
        "next_action": "DONE",
        "call_outcome": "paid",
        "result": "AGENT - Completed",
        "account": "1001",
        "other": {"1": "a", "Other2": "b", "3": 7, "4": None},
        "contact": {"person": {"firstName": "Jane"}},
        "create_contact": True,
    }
    assert disposition_from_json(json.dumps(body).encode()) == Disposition(
        term_code="101416228",
        next_action="done",
        call_outcome="paid",
        result="AGENT - Completed",
        account="1001",
        other={1: "a", 2: "b", 3: "7"},
        contact={"person": {"firstName": "Jane"}},
        create_contact=True,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"termCode": "done"}', "termCode"),
        (b'{"next_action": "escalate"}', "next_action"),
        (b'{"term_code": ["done"]}', "term_code"),
        (b'{"term_code": "  "}', "term_code"),
        (b'{"call_outcome": 3}', "call_outcome"),
        (b'{"other": ["a"]}', "other"),
        (b'{"other": {"21": "a"}}', "other.21"),
        (b'{"other": {"1": {"a": 1}}}', "other.1"),
        (b'{"contact": "Jane"}', "contact"),
        (b'{"contact": {"account": ""}}', "contact.account"),
        (b'{"create_contact": "yes"}', "create_contact"),
        (('{"result": "' + "x" * 2001 + '"}').encode(), "result"),
    ],
)
def test_malformed_json_names_the_field(body: bytes, field: str) -> None:
    """Every malformed JSON disposition is refused with the field at fault."""
    with pytest.raises(DispositionError) as caught:
        disposition_from_json(body)
    assert caught.value.field == field


def test_a_later_disposition_wins_field_by_field() -> None:
    """What the BYE says overrides what the API said, field by field; Other fields merge."""
    earlier = Disposition(
        term_code="done", call_outcome="x", other={1: "a", 2: "b"}, contact={"city": "Cary"}
    )
    later = Disposition(next_action="transfer", call_outcome="y", other={2: "B"})
    assert later.over(earlier) == Disposition(
        term_code="done",
        next_action="transfer",
        call_outcome="y",
        other={1: "a", 2: "B"},
        contact={"city": "Cary"},
    )
    assert later.over(None) is later


def test_stored_form_round_trips() -> None:
    """A disposition written to the store reads back equal."""
    d = Disposition(term_code="done", other={3: "x"}, contact={"a": 1}, create_contact=False)
    assert Disposition.from_stored(json.loads(json.dumps(d.to_json()))) == d


def test_invite_facts_from_the_guides_headers() -> None:
    """Session-ID is the callSessionId; transaction and agent headers are read in either form."""
    facts = InviteFacts.from_headers(
        "AIVA1",
        "+18990000001",
        [
            ("Session-ID", "U2DB327T5E18E8DC@10.0.0.1"),
            ("Call-ID", "5e18e8dc@10.101.21.27"),
            ("lv-transaction-id", "147516594361"),
            ("X-Agent-Login-Id", "AIVA1"),
        ],
        ani="+19192109237",
    )
    assert facts.call_session_id == "U2DB327T5E18E8DC@10.0.0.1"
    assert facts.sip_call_id == "5e18e8dc@10.101.21.27"
    assert facts.call_transaction_id == "147516594361"
    assert facts.lv_agent_login == "AIVA1"
    bare = InviteFacts.from_headers("AIVA1", "+18990000001", {"Session-ID": "U1@x"})
    assert bare.call_transaction_id is None and bare.lv_agent_login is None
