"""The AI vendor's dispositions, three ways into one :class:`~lvgateway.calls.records.Disposition`.

1. Headers on the vendor's BYE (DESIGN.md, "Contracts between the gateway
   and the AI vendor"): ``X-LV-Term-Code``, ``X-LV-Next-Action``,
   ``X-LV-Call-Outcome``, ``X-LV-Result``, ``X-LV-Account``,
   ``X-LV-Other1`` … ``X-LV-Other20``. :func:`disposition_from_headers`.
2. The same headers on a REFER: the same function; the caller sets the next
   action to ``transfer`` (a REFER is a transfer whatever it says).
3. JSON on the vendor API, ``PUT /v1/calls/{call_id}/disposition``:
   :func:`disposition_from_json`, the only way to send contact changes::

       {"term_code": "done", "next_action": "transfer", "call_outcome": "paid",
        "result": "AGENT - Completed", "account": "1001",
        "other": {"1": "intent=billing", "2": "..."},
        "contact": {"person": {"firstName": "Jane"}}, "create_contact": false}

Headers cannot be answered with an error (the BYE is already accepted), so
a bad header value is logged and left out; JSON is checked strictly and a
:class:`~lvgateway.calls.errors.DispositionError` names the field at fault.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from twisted.logger import Logger

from lvgateway.calls.errors import DispositionError
from lvgateway.calls.records import NEXT_ACTIONS, Disposition, header_lookup

__all__ = [
    "DISPOSITION_HEADERS",
    "JSON_FIELDS",
    "MAX_TEXT",
    "disposition_from_headers",
    "disposition_from_json",
]

log = Logger()

#: The disposition headers, in their documented case.
DISPOSITION_HEADERS = (
    "X-LV-Term-Code",
    "X-LV-Next-Action",
    "X-LV-Call-Outcome",
    "X-LV-Result",
    "X-LV-Account",
    *(f"X-LV-Other{n}" for n in range(1, 21)),
)

#: The fields of a JSON disposition.
JSON_FIELDS = (
    "term_code",
    "next_action",
    "call_outcome",
    "result",
    "account",
    "other",
    "contact",
    "create_contact",
)

#: The longest text a disposition field may hold.
MAX_TEXT = 2000


def disposition_from_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], call_id: str | None = None
) -> Disposition | None:
    """Return the disposition carried by a BYE's or REFER's headers, or ``None`` when there is none.

    Header names match in any case (Sippy re-cases them). A next action other
    than ``done`` or ``transfer``, an ``X-LV-Other`` outside 1..20, or a value
    longer than :data:`MAX_TEXT` is logged and left out.

    :param headers: the request's headers, as a mapping or ``(name, value)`` pairs.
    :param call_id: the gateway's call id, for the log lines.
    """
    h = header_lookup(headers)

    def text(name: str) -> str | None:
        value = h.get(name.lower())
        if not value:
            return None
        if len(value) > MAX_TEXT:
            log.warn(
                "call {call_id}: header {header} longer than {limit} characters: ignored",
                call_id=call_id,
                header=name,
                limit=MAX_TEXT,
            )
            return None
        return value

    next_action = text("X-LV-Next-Action")
    if next_action is not None:
        if next_action.lower() in NEXT_ACTIONS:
            next_action = next_action.lower()
        else:
            log.warn(
                "call {call_id}: X-LV-Next-Action {value!r} is neither done nor transfer: ignored",
                call_id=call_id,
                value=next_action,
            )
            next_action = None
    other: dict[int, str] = {}
    for name in h:
        if not name.startswith("x-lv-other"):
            continue
        number = name[len("x-lv-other") :]
        if not (number.isdigit() and 1 <= int(number) <= 20):
            log.warn(
                "call {call_id}: header {header} is not one of X-LV-Other1..20: ignored",
                call_id=call_id,
                header=name,
            )
            continue
        value = text(name)
        if value is not None:
            other[int(number)] = value
    disposition = Disposition(
        term_code=text("X-LV-Term-Code"),
        next_action=next_action,
        call_outcome=text("X-LV-Call-Outcome"),
        result=text("X-LV-Result"),
        account=text("X-LV-Account"),
        other=other,
    )
    return None if disposition == Disposition() else disposition


def disposition_from_json(body: bytes | str | Mapping[str, Any]) -> Disposition:
    """Return the disposition in a vendor API request body, checked field by field.

    :param body: the raw body, or JSON already decoded.
    :raises DispositionError: naming the field at fault (``body`` for a body
        that is not a JSON object).
    """
    data: Any = body
    if isinstance(body, bytes | str):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise DispositionError("body", f"not JSON ({e})") from e
    if not isinstance(data, Mapping):
        raise DispositionError("body", "expected a JSON object")
    for key in data:
        if key not in JSON_FIELDS:
            raise DispositionError(key, f"unknown field; expected one of {', '.join(JSON_FIELDS)}")
    next_action = _text(data, "next_action")
    if next_action is not None:
        if next_action.lower() not in NEXT_ACTIONS:
            raise DispositionError("next_action", "expected 'done' or 'transfer'")
        next_action = next_action.lower()
    create = data.get("create_contact")
    if create is not None and not isinstance(create, bool):
        raise DispositionError("create_contact", "expected true or false")
    contact = data.get("contact")
    if contact is not None and not isinstance(contact, Mapping):
        raise DispositionError("contact", "expected a JSON object of contact fields")
    if contact is not None and "account" in contact and not _scalar_text(contact["account"]):
        raise DispositionError("contact.account", "expected a non-empty string")
    return Disposition(
        term_code=_text(data, "term_code", numbers=True),
        next_action=next_action,
        call_outcome=_text(data, "call_outcome"),
        result=_text(data, "result"),
        account=_text(data, "account", numbers=True),
        other=_other(data.get("other")),
        contact=dict(contact) if contact is not None else None,
        create_contact=create,
    )


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _text(data: Mapping[str, Any], field: str, numbers: bool = False) -> str | None:
    """Return a text field, ``None`` when absent or null; refuse any other type."""
    value = data.get(field)
    if value is None:
        return None
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        expected = "a string or a number" if numbers else "a string"
        raise DispositionError(field, f"expected {expected}")
    value = value.strip()
    if not value:
        raise DispositionError(field, "must not be empty (leave it out instead)")
    if len(value) > MAX_TEXT:
        raise DispositionError(field, f"longer than {MAX_TEXT} characters")
    return value


def _other(value: Any) -> dict[int, str]:
    """Return ``other`` ({"1": "…", …, "20": "…"}) by number; refuse anything else."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DispositionError("other", 'expected an object such as {"1": "..."}')
    found: dict[int, str] = {}
    for key, item in value.items():
        field = f"other.{key}"
        number = str(key).strip()
        if number.lower().startswith("other"):
            number = number[len("other") :]
        if not (number.isdigit() and 1 <= int(number) <= 20):
            raise DispositionError(field, "Other fields are numbered 1 to 20")
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise DispositionError(field, "expected a string")
        text = str(item)
        if len(text) > MAX_TEXT:
            raise DispositionError(field, f"longer than {MAX_TEXT} characters")
        found[int(number)] = text
    return found
