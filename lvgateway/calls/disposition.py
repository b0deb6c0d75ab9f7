"""The AI vendor's dispositions, three ways into one :class:`~lvgateway.calls.records.Disposition`.

1. Headers on the vendor's BYE (docs/design.md, "Contracts between the gateway
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

4. What hosted voice platforms can send when they cannot set X- headers
   (:func:`disposition_from_request`): headers embedded in a REFER's
   ``Refer-To`` (``<sip:human@vendor?X-LV-Term-Code=billing>``, URL-decoded),
   the ``Refer-To`` target itself (a number is a transfer to that number;
   a user part named in ``[vendor.refer_targets]`` asks for its term code),
   ``User-to-User`` (RFC 7433; hex unless ``encoding`` says otherwise) and
   ``Reason`` (RFC 3326, SIP or Q.850).

**Precedence**, field by field, when several say the same thing (highest
first): ``X-LV-*`` headers, headers embedded in ``Refer-To``, the
``Refer-To`` target, ``User-to-User``, ``Reason``. See :data:`PRECEDENCE`.

Headers cannot be answered with an error (the BYE is already accepted), so
a bad header value is logged and left out; JSON is checked strictly and a
:class:`~lvgateway.calls.errors.DispositionError` names the field at fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

import attrs
from twisted.logger import Logger

from lvgateway.calls.errors import DispositionError
from lvgateway.calls.records import NEXT_ACTIONS, Disposition, header_lookup

__all__ = [
    "DISPOSITION_HEADERS",
    "PRECEDENCE",
    "ReferTarget",
    "disposition_from_reason",
    "disposition_from_request",
    "disposition_from_uui",
    "parse_refer_to",
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
    "transfer_number",
)

#: Where a disposition may come from on a vendor's request, highest precedence first.
PRECEDENCE = ("x-lv-headers", "refer-to-headers", "refer-to-target", "user-to-user", "reason")

#: The short names a payload (``User-to-User``, ``Reason`` text) may use for each header.
_PAYLOAD_NAMES = {
    "term_code": "X-LV-Term-Code",
    "termcode": "X-LV-Term-Code",
    "next_action": "X-LV-Next-Action",
    "call_outcome": "X-LV-Call-Outcome",
    "result": "X-LV-Result",
    "account": "X-LV-Account",
    **{f"other{n}": f"X-LV-Other{n}" for n in range(1, 21)},
}

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
        transfer_number=_text(data, "transfer_number", numbers=True),
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


# -- what platforms that cannot set X- headers send ---------------------------------


@attrs.frozen
class ReferTarget:
    """What a REFER's ``Refer-To`` says.

    :param uri: the URI, without its embedded headers.
    :param user: the user part (a ``tel:`` URI's number), URL-decoded.
    :param number: the number to transfer to, when the user part is one.
    :param headers: the headers embedded after ``?``, URL-decoded.
    """

    uri: str
    user: str | None
    number: str | None
    headers: tuple[tuple[str, str], ...] = ()


_NUMBER = re.compile(r"\+?[0-9]{3,15}")
_VISUAL = re.compile(r"[-.() ]")


def parse_refer_to(value: str) -> ReferTarget | None:
    """Parse a ``Refer-To`` value (RFC 3515): ``<sip:user@host;params?Hdr=v&Hdr2=v>`` or a ``tel:`` URI.

    :returns: ``None`` for a value with no URI in it.
    """
    value = value.strip()
    if "<" in value:
        start, end = value.find("<"), value.find(">", value.find("<"))
        value = value[start + 1 : end if end >= 0 else len(value)]
    else:
        value = value.split(";", 1)[0] if value.lower().startswith("tel:") else value
    value = value.strip()
    if ":" not in value:
        return None
    uri, _, query = value.partition("?")
    headers: list[tuple[str, str]] = []
    for pair in query.split("&") if query else ():
        name, sep, item = pair.partition("=")
        if sep and name:
            headers.append((unquote(name), unquote(item)))
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    user: str | None
    if scheme == "tel":
        user = unquote(rest.split(";", 1)[0])
    elif scheme in ("sip", "sips") and "@" in rest:
        user = unquote(rest.rsplit("@", 1)[0].split(":", 1)[0].split(";", 1)[0])
    else:
        user = None
    number = None
    if user:
        digits = _VISUAL.sub("", user)
        if _NUMBER.fullmatch(digits):
            number = digits
    return ReferTarget(uri=uri, user=user or None, number=number, headers=tuple(headers))


def _payload(text: str, source: str, call_id: str | None) -> Disposition | None:
    """Read a disposition from free text: a JSON object, ``name=value`` pairs, or a bare term code.

    Pairs are separated by ``&`` or ``;`` and named like the headers
    (``X-LV-Term-Code``) or the JSON fields (``term_code``, ``other1``).
    """
    text = text.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            return disposition_from_json(text)
        except DispositionError as e:
            log.warn(
                "call {call_id}: {source} carries JSON that is not a disposition ({error}): ignored",
                call_id=call_id,
                source=source,
                error=str(e),
            )
            return None
    if "=" not in text:
        return disposition_from_headers([("X-LV-Term-Code", text)], call_id)
    pairs: list[tuple[str, str]] = []
    for part in re.split(r"[&;]", text):
        name, sep, item = part.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        pairs.append((_PAYLOAD_NAMES.get(name.lower(), name), unquote(item.strip())))
    return disposition_from_headers(pairs, call_id)


def _params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``token-or-"quoted" ;name=value ;...`` into the first item and its parameters."""
    value = value.strip()
    if value.startswith('"'):
        end = value.find('"', 1)
        end = len(value) if end < 0 else end
        first, rest = value[1:end], value[end + 1 :]
    else:
        first, _, rest = value.partition(";")
        rest = ";" + rest if rest else ""
    params: dict[str, str] = {}
    for match in re.finditer(r';\s*([^=;\s]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;]*))?', rest):
        item = (match.group(2) or "").strip()
        if item.startswith('"') and item.endswith('"') and len(item) >= 2:
            item = item[1:-1].replace('\\"', '"')
        params[match.group(1).lower()] = item
    return first.strip(), params


def disposition_from_uui(value: str, call_id: str | None = None) -> Disposition | None:
    """Return the disposition in a ``User-to-User`` header (RFC 7433).

    The data is hex unless ``encoding`` names something else, when it is
    taken as text. Hex data whose first byte is a control character (an
    ISDN protocol discriminator, such as 04 for IA5 text) loses that byte.
    The decoded text is read as JSON, ``name=value`` pairs or a bare term code.
    """
    data, params = _params(value)
    encoding = params.get("encoding", "hex").lower()
    if encoding == "hex":
        try:
            raw = bytes.fromhex(data)
        except ValueError:
            log.warn("call {call_id}: User-to-User is not hex: ignored", call_id=call_id)
            return None
        if raw and raw[0] < 0x20:
            raw = raw[1:]
        text = raw.decode("utf-8", errors="replace")
    else:
        text = unquote(data)
    return _payload(text, "User-to-User", call_id)


def disposition_from_reason(value: str, call_id: str | None = None) -> Disposition | None:
    """Return the disposition in a ``Reason`` header (RFC 3326): ``SIP;cause=200;text="..."`` or ``Q.850;cause=16``.

    A ``text`` of ``name=value`` pairs (or JSON) is read as a payload; any
    other text, with the protocol and cause, becomes the call outcome
    (``Q.850 16 Normal call clearing``).
    """
    protocol, params = _params(value)
    text = params.get("text", "").strip()
    if text and ("=" in text or text.startswith("{")):
        return _payload(text, "Reason", call_id)
    cause = params.get("cause", "").strip()
    outcome = " ".join(part for part in (protocol, cause, text) if part)
    if not (cause or text):
        return None
    return Disposition(call_outcome=outcome[:MAX_TEXT])


def disposition_from_request(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    call_id: str | None = None,
    refer_targets: Mapping[str, str] | None = None,
) -> Disposition | None:
    """Return the disposition a vendor's BYE or REFER carries, from every source, in :data:`PRECEDENCE`.

    :param headers: the request's headers.
    :param call_id: the gateway's call id, for the log.
    :param refer_targets: ``Refer-To`` user parts (lower case) mapped to term codes.
    """
    h = header_lookup(headers)
    layers: list[Disposition | None] = []
    reason = h.get("reason")
    layers.append(disposition_from_reason(reason, call_id) if reason else None)
    uui = h.get("user-to-user") or h.get("x-user-to-user")
    layers.append(disposition_from_uui(uui, call_id) if uui else None)
    refer_to = h.get("refer-to") or h.get("r")
    target = parse_refer_to(refer_to) if refer_to else None
    if target is not None:
        named = (refer_targets or {}).get((target.user or "").lower())
        if target.number is not None:
            layers.append(Disposition(transfer_number=target.number))
        elif named is not None:
            layers.append(Disposition(term_code=named))
        layers.append(disposition_from_headers(target.headers, call_id) if target.headers else None)
    layers.append(disposition_from_headers(headers, call_id))
    merged: Disposition | None = None
    for layer in layers:
        if layer is not None:
            merged = layer.over(merged)
    return merged
