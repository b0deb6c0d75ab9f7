"""Unit tests of the lenient parsing of LiveVox's answers."""

from __future__ import annotations

from typing import Any

import pytest

from lvgateway.livevox.parsing import (
    Session,
    as_bool,
    as_id,
    as_int,
    error_fields,
    parse_agent_status,
    parse_contact,
    parse_contact_created,
    parse_json,
    parse_login,
    parse_term_codes,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (147516594361, "147516594361"),
        ("147516594361", "147516594361"),
        (" 007 ", "007"),
        (1234567.0, "1234567"),
        ("", None),
        (None, None),
        (True, None),
        ({"id": 1}, None),
    ],
)
def test_as_id_keeps_ids_as_strings(value: Any, expected: str | None) -> None:
    """Ids given as numbers or strings become strings; blanks, booleans and objects give None."""
    assert as_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1573809485123, 1573809485123),
        ("1573809485123", 1573809485123),
        ("12.0", 12),
        ("x", None),
        (None, None),
        (False, None),
    ],
)
def test_as_int_reads_numbers_and_digit_strings(value: Any, expected: int | None) -> None:
    """Epoch milliseconds as numbers or strings are read; anything else is None."""
    assert as_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        (1, True),
        (False, False),
        ("false", False),
        ("False", False),
        (0, False),
        (None, False),
        ("maybe", False),
    ],
)
def test_as_bool_accepts_string_booleans(value: Any, expected: bool) -> None:
    """Booleans come as true or "true" (any case), 1 or "1"."""
    assert as_bool(value) is expected


def test_as_bool_default_for_unknown() -> None:
    """An unrecognised or absent value gives the default asked for."""
    assert as_bool(None, default=True) is True
    assert as_bool("maybe", default=True) is True


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n"])
def test_parse_json_of_empty_body_is_none(body: bytes) -> None:
    """An empty or blank body parses to None, not an error."""
    assert parse_json(body) is None


def test_parse_json_rejects_garbage() -> None:
    """A non-empty body that is not JSON raises ValueError."""
    with pytest.raises(ValueError):
        parse_json(b"<html>")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"code":401,"message":"Session is not valid"}', (401, "Session is not valid")),
        (b'{"code":"404","message":"Contact not found"}', (404, "Contact not found")),
        (b'{"error":"bad"}', (None, "bad")),
        (b"Service Unavailable", (None, "Service Unavailable")),
        (b"", (None, None)),
        (b"[1,2]", (None, None)),
    ],
)
def test_error_fields(body: bytes, expected: tuple[int | None, str | None]) -> None:
    """LiveVox's code and message are read from JSON, a code as a string too, or the text."""
    assert error_fields(body) == expected


def test_parse_login_numbers_and_strings() -> None:
    """Login ids are strings whatever their JSON type; days may be a string."""
    session = parse_login(
        {
            "sessionId": "abc-123-def",
            "userId": 1234,
            "clientId": "5678",
            "daysUntilPasswordExpires": "30",
        },
        "AIVA1",
        True,
    )
    assert (session.user_id, session.client_id, session.days_until_password_expires) == (
        "1234",
        "5678",
        30,
    )


def test_parse_login_optional_fields_missing() -> None:
    """Only sessionId is required."""
    session = parse_login({"sessionId": "abc-123-def"}, "u", False)
    assert session.user_id is None and session.days_until_password_expires is None


@pytest.mark.parametrize("data", [None, {}, [], {"sessionId": ""}, "x"])
def test_parse_login_without_session_id_raises(data: Any) -> None:
    """A login answer without a session id is a ValueError."""
    with pytest.raises(ValueError):
        parse_login(data, "u", True)


def test_session_repr_hides_the_session_id() -> None:
    """A session's repr shows only a prefix of its id."""
    session = Session("5eb4ad6c-50b7-45da-8d56-f4e9ac7d9cbd", "AIVA1", True)
    assert "50b7-45da" not in repr(session)
    assert "5eb4ad6c" in repr(session)
    assert session.short_id == "5eb4ad6c…"


def test_agent_status_lvnet_shape() -> None:
    """The LVNET shape parses: lines, state, times and the call's ids."""
    status = parse_agent_status(
        {
            "agentStatus": {
                "agentCallConnected": True,
                "reasonCode": None,
                "lines": [
                    {
                        "lineNumber": "ACD",
                        "state": "wrapup",
                        "stateChangedTime": 1573809485123,
                        "call": {
                            "callTransactionId": "147516594361",
                            "callSessionId": "UF200T64DE3A63@10.1.1.1",
                            "accountNumber": 12345,
                            "phoneNumber": 9174645253,
                        },
                    },
                ],
            }
        }
    )
    assert status.state == "WRAPUP"
    assert status.lines[0].state_changed_time == 1573809485123
    call = status.calls()[0]
    assert call.account_number == "12345" and call.phone_number == "9174645253"
    assert not status.unchanged


def test_agent_status_as_a_list_and_lone_line() -> None:
    """agentStatus as a list and lines as a lone object are both read."""
    status = parse_agent_status(
        {"agentStatus": [{"lines": {"lineNumber": "ACD", "state": "READY"}}]}
    )
    assert status.state == "READY" and status.calls() == []


def test_agent_status_unwrapped_with_ids_on_the_line() -> None:
    """A status without its wrapper, call ids on the line itself, is read."""
    status = parse_agent_status(
        {
            "lines": [
                {"lineNumber": "DIRECT", "state": "NOTREADY"},
                {
                    "lineNumber": "ACD",
                    "state": "INCALL",
                    "callTransactionId": 1,
                    "callSessionId": "S1",
                },
            ]
        }
    )
    assert status.state == "INCALL"
    assert status.find_call("s1") is not None
    assert status.find_call("S2") is None


def test_agent_status_without_body_is_unchanged() -> None:
    """An empty answer is "unchanged", with no lines."""
    status = parse_agent_status(None)
    assert status.unchanged and status.lines == () and status.state is None


def test_agent_status_with_odd_body_has_no_lines() -> None:
    """A body of an unexpected shape gives an empty status rather than an error."""
    assert parse_agent_status({"agentStatus": "busy"}).lines == ()
    assert parse_agent_status([1, 2]).lines == ()


def test_term_codes_flat_and_bare_lists() -> None:
    """A flat termCodes list and a bare list are read; entries without id are skipped."""
    flat = parse_term_codes({"termCodes": [{"id": 1, "name": "A"}, {"name": "no id"}]}, "9")
    assert [c.id for c in flat.codes] == ["1"]
    bare = parse_term_codes([{"termCodeId": "2", "name": "B"}], "9")
    assert bare.find("b").id == "2"
    nested = parse_term_codes([{"name": "Cat", "termCodes": [{"id": "3", "name": "C"}]}], "9")
    assert nested.by_id("3").category == "Cat"
    assert parse_term_codes(None, "9").codes == ()


def test_term_code_find_prefers_id_then_name() -> None:
    """find() looks an id up first, then a name, ignoring case and blanks."""
    catalogue = parse_term_codes(
        {
            "termCodeCategories": [
                {
                    "name": "X",
                    "termCodes": [{"id": "10", "name": "20"}, {"id": "20", "name": " Paid "}],
                }
            ]
        },
        "1",
    )
    assert catalogue.find("20").name == "Paid"
    assert catalogue.find("PAID").id == "20"
    assert catalogue.find("nothing") is None


def test_contact_parsing() -> None:
    """A contact is read with or without its readContactDetails wrapper."""
    assert parse_contact({"readContactDetails": {"account": "1"}}) == {"account": "1"}
    assert parse_contact({"account": "1"}) == {"account": "1"}
    with pytest.raises(ValueError):
        parse_contact(None)
    with pytest.raises(ValueError):
        parse_contact({"readContactDetails": []})


def test_contact_created_id() -> None:
    """The new contact's id is kept as a string; no body gives no id."""
    assert parse_contact_created({"id": 42}, "A").id == "42"
    assert parse_contact_created(None, "A").id is None
