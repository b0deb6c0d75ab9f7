"""Lenient parsing of LiveVox's JSON answers into attrs values.

docs/livevox-api.md marks most response types as inferred, so every reader here
accepts both readings it knows of:

- ids as strings or numbers, always kept as strings (transaction ids pass
  2**31, and ``"007"`` must stay ``"007"``);
- times (epoch milliseconds) as strings or numbers;
- booleans as ``true`` or ``"true"`` (any case), ``1`` or ``"1"``;
- an empty body wherever JSON might come (a 204, or nothing changed);
- wrappers present or absent (``{"readContactDetails": {...}}`` or the bare
  contact), one object where a list might come and the other way round.

Fields the gateway does not use are kept in ``raw`` rather than dropped, so
a caller can read them without a change here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from lvgateway.config.secret import shorten

__all__ = [
    "BUSY_LINE_STATES",
    "FREE_LINE_STATES",
    "AgentStatus",
    "CallDetails",
    "ContactCreated",
    "LineStatus",
    "Session",
    "TermCode",
    "TermCodeCatalogue",
    "as_bool",
    "as_id",
    "as_int",
    "as_str",
    "error_fields",
    "parse_agent_status",
    "parse_contact",
    "parse_contact_created",
    "parse_json",
    "parse_login",
    "parse_term_codes",
]


# -- scalars -------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    """Return the JSON value of ``body``, or ``None`` when the body is empty or blank.

    :param body: a response body.
    :raises ValueError: when the body is not empty and not JSON.
    """
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    return json.loads(text)


def as_id(value: object) -> str | None:
    """Return an id as a string: ``123``, ``123.0`` and ``"123"`` all give ``"123"``.

    :param value: a JSON value; ``None``, ``""``, booleans and containers give ``None``.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None


def as_str(value: object) -> str | None:
    """Return a string field, numbers turned to text; ``None`` for null, empty or containers.

    :param value: a JSON value.
    """
    return as_id(value)


def as_int(value: object) -> int | None:
    """Return an integer given as a number or a string of digits, else ``None``.

    :param value: a JSON value, such as epoch milliseconds ``"1573809485123"``.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return int(float(text))
            except ValueError:
                return None
    return None


def as_bool(value: object, default: bool = False) -> bool:
    """Return a boolean given as ``true``, ``"true"``, ``1`` or ``"1"`` (and their false forms).

    :param value: a JSON value.
    :param default: the answer for ``None`` or anything unrecognised.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "y"):
            return True
        if text in ("false", "0", "no", "n"):
            return False
    return default


def _mapping(value: object) -> Mapping[str, Any]:
    """Return ``value`` when it is a JSON object, else an empty mapping."""
    return value if isinstance(value, Mapping) else {}


def _objects(value: object) -> list[Mapping[str, Any]]:
    """Return the JSON objects in a list, or a lone object as a list of one."""
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, Mapping)]
    return []


def error_fields(body: bytes) -> tuple[int | None, str | None]:
    """Return LiveVox's ``code`` and ``message`` from an error body, as far as it has them.

    A body that is not JSON gives its first 200 characters as the message.

    :param body: the response body.
    """
    try:
        data = parse_json(body)
    except ValueError:
        text = body.decode("utf-8", errors="replace").strip()
        return None, (text[:200] or None)
    if isinstance(data, Mapping):
        message = as_str(data.get("message") or data.get("error") or data.get("errorMessage"))
        return as_int(data.get("code")), message
    if isinstance(data, str):
        return None, data[:200] or None
    return None, None


# -- session ---------------------------------------------------------------------


@attrs.frozen
class Session:
    """A LiveVox session, as login returned it.

    The session id is a bearer credential: its ``repr`` shows only a prefix.

    :param session_id: the value of ``LV-Session`` on later calls.
    :param user_name: the login it belongs to, for log lines.
    :param agent: whether it is an agent login (``agent: true``).
    :param user_id: LiveVox's user id, as a string.
    :param client_id: LiveVox's client id, as a string.
    :param days_until_password_expires: when LiveVox said so.
    """

    session_id: str = attrs.field(repr=shorten)
    user_name: str
    agent: bool
    user_id: str | None = None
    client_id: str | None = None
    days_until_password_expires: int | None = None

    @property
    def short_id(self) -> str:
        """The first characters of the session id, for log lines."""
        return shorten(self.session_id)


def parse_login(data: Any, user_name: str, agent: bool) -> Session:
    """Return the session from a login answer.

    :param data: the parsed body.
    :param user_name: the login, kept on the session for logs.
    :param agent: whether it was an agent login.
    :raises ValueError: when the body has no ``sessionId``.
    """
    body = _mapping(data)
    session_id = as_id(body.get("sessionId"))
    if session_id is None:
        raise ValueError("login answer has no sessionId")
    return Session(
        session_id=session_id,
        user_name=user_name,
        agent=agent,
        user_id=as_id(body.get("userId")),
        client_id=as_id(body.get("clientId")),
        days_until_password_expires=as_int(body.get("daysUntilPasswordExpires")),
    )


# -- agent status ----------------------------------------------------------------


@attrs.frozen
class CallDetails:
    """The call on one of the agent's lines.

    :param call_transaction_id: LiveVox's ``callTransactionId``.
    :param call_session_id: LiveVox's ``callSessionId``, the SIP ``Session-ID``.
    :param account_number: the contact's account, if LiveVox knows it.
    :param phone_number: the number dialled (``phoneDialed`` for the term code).
    :param service_id: the service the call came through.
    """

    call_transaction_id: str | None
    call_session_id: str | None
    account_number: str | None = None
    phone_number: str | None = None
    service_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    call_center_id: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


def _call_details(data: Mapping[str, Any]) -> CallDetails | None:
    """Return the call in ``data``, or ``None`` when it names neither id."""
    transaction = as_id(data.get("callTransactionId") or data.get("transactionId"))
    session = as_id(data.get("callSessionId") or data.get("sessionId"))
    if transaction is None and session is None:
        return None
    return CallDetails(
        call_transaction_id=transaction,
        call_session_id=session,
        account_number=as_id(data.get("accountNumber") or data.get("account")),
        phone_number=as_id(data.get("phoneNumber") or data.get("phoneDialed")),
        service_id=as_id(data.get("serviceId")),
        first_name=as_str(data.get("firstName")),
        last_name=as_str(data.get("lastName")),
        call_center_id=as_id(data.get("callCenterId")),
        raw=dict(data),
    )


#: Line states in which LiveVox has the agent busy with a call.
BUSY_LINE_STATES = frozenset(
    {
        "INCALL",
        "WRAPUP",
        "TRANSFERRING",
        "HOLD",
        "DIALING",
        "MANUALDIAL",
        "PREVIEWDIAL",
        "RESERVED",
    }
)
#: Line states in which the call shown on the line is closed at LiveVox (its
#: term code saved): the agent is free again, whether or not the line still
#: names its last call.
FREE_LINE_STATES = frozenset({"READY", "NOTREADY"})


@attrs.frozen
class LineStatus:
    """One of the agent's lines (``ACD`` is the main one).

    :param line_number: ``ACD``, ``DIRECT``, ``EXT1``…
    :param state: ``READY``, ``NOTREADY``, ``INCALL``, ``WRAPUP``… upper-cased.
    :param state_changed_time: epoch milliseconds.
    :param call: the call on the line, if any.
    """

    line_number: str | None
    state: str | None
    state_changed_time: int | None
    call: CallDetails | None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class AgentStatus:
    """The answer to ``POST /callControl/agent/status``.

    :param lines: the agent's lines, the ACD line usually first.
    :param reason_code: the NOT READY reason, if any.
    :param agent_call_connected: LiveVox's ``agentCallConnected``.
    :param unchanged: ``True`` when LiveVox sent no body (nothing changed
        after ``stateChangedAfter``, one reading of the unknown); the lines
        are then empty and say nothing about the agent.
    """

    lines: tuple[LineStatus, ...]
    reason_code: str | None = None
    agent_call_connected: bool = False
    unchanged: bool = False
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def state(self) -> str | None:
        """The state of the ACD line, or of the first line when none is named ACD."""
        for line in self.lines:
            if (line.line_number or "").upper() == "ACD":
                return line.state
        return self.lines[0].state if self.lines else None

    def calls(self) -> list[CallDetails]:
        """Return the calls on all lines, in line order."""
        return [line.call for line in self.lines if line.call is not None]

    def find_call(self, call_session_id: str) -> CallDetails | None:
        """Return the call whose ``callSessionId`` matches, ignoring case and blanks.

        :param call_session_id: the SIP ``Session-ID`` of the call.
        """
        wanted = call_session_id.strip().lower()
        for call in self.calls():
            if (call.call_session_id or "").strip().lower() == wanted:
                return call
        return None


def parse_agent_status(data: Any) -> AgentStatus:
    """Return the agent status in an answer, however it is wrapped.

    Accepts ``{"agentStatus": {...}}`` (LVNET's shape), ``agentStatus`` as a
    list (its first object is used), the status object unwrapped, lines as a
    list or a lone object, call ids under ``call`` or on the line itself,
    and no body at all (``unchanged``).

    :param data: the parsed body, or ``None`` for an empty one.
    """
    if data is None:
        return AgentStatus(lines=(), unchanged=True)
    top = _mapping(data)
    if isinstance(data, list):
        top = {"agentStatus": data}
    wrapped = top.get("agentStatus", top)
    candidates = _objects(wrapped)
    status = candidates[0] if candidates else {}
    lines = []
    for line in _objects(status.get("lines")):
        call = _call_details(_mapping(line.get("call"))) or _call_details(line)
        state = as_str(line.get("state"))
        lines.append(
            LineStatus(
                line_number=as_str(line.get("lineNumber")),
                state=state.upper() if state else None,
                state_changed_time=as_int(line.get("stateChangedTime")),
                call=call,
                raw=dict(line),
            )
        )
    return AgentStatus(
        lines=tuple(lines),
        reason_code=as_str(status.get("reasonCode")),
        agent_call_connected=as_bool(status.get("agentCallConnected")),
        raw=dict(status),
    )


# -- term codes ------------------------------------------------------------------


@attrs.frozen
class TermCode:
    """One term code (disposition) of a service.

    :param id: the ``termCodeId`` a save names, as a string.
    :param name: its display name, such as ``Paid``.
    :param category: the name of the category it was listed under.
    :param lv_result: the LiveVox ("TFH") result name, the AIA's ``lvresult``.
    """

    id: str
    name: str | None
    category: str | None = None
    lv_result: str | None = None
    lv_result_id: str | None = None
    action_type: str | None = None
    report_display_order: int | None = None
    payment_amt_required: bool = False
    preview_dial_enabled: bool = False


@attrs.frozen
class TermCodeCatalogue:
    """The term codes of one service.

    :param service_id: the service asked about.
    :param codes: every term code, in the order LiveVox listed them.
    """

    service_id: str
    codes: tuple[TermCode, ...]

    def by_id(self, term_code_id: str) -> TermCode | None:
        """Return the term code with this id.

        :param term_code_id: the id, as a string.
        """
        wanted = term_code_id.strip()
        return next((c for c in self.codes if c.id == wanted), None)

    def by_name(self, name: str) -> TermCode | None:
        """Return the first term code with this name, ignoring case and surrounding blanks.

        :param name: the name, such as ``Paid``.
        """
        wanted = name.strip().casefold()
        return next((c for c in self.codes if (c.name or "").strip().casefold() == wanted), None)

    def find(self, name_or_id: str) -> TermCode | None:
        """Return the term code with this id, or else with this name.

        :param name_or_id: what a config or a vendor named.
        """
        return self.by_id(name_or_id) or self.by_name(name_or_id)


def _term_code(data: Mapping[str, Any], category: str | None) -> TermCode | None:
    """Return one term code, or ``None`` when it has no id."""
    code_id = as_id(data.get("id") if "id" in data else data.get("termCodeId"))
    if code_id is None:
        return None
    return TermCode(
        id=code_id,
        name=as_str(data.get("name")),
        category=category,
        lv_result=as_str(data.get("lvResult")),
        lv_result_id=as_id(data.get("lvResultId")),
        action_type=as_str(data.get("actionType")),
        report_display_order=as_int(data.get("reportDisplayOrder")),
        payment_amt_required=as_bool(data.get("paymentAmtRequired")),
        preview_dial_enabled=as_bool(data.get("previewDialEnabled")),
    )


def parse_term_codes(data: Any, service_id: str) -> TermCodeCatalogue:
    """Return the catalogue in a term code answer.

    Accepts ``{"termCodeCategories": [{"name", "termCodes": [...]}]}`` (LVNET's
    shape), a flat ``{"termCodes": [...]}``, or a bare list of either.
    Entries without an id are skipped.

    :param data: the parsed body, or ``None`` for an empty one.
    :param service_id: the service asked about.
    """
    codes: list[TermCode] = []
    top = _mapping(data)
    categories = top.get("termCodeCategories")
    flat = top.get("termCodes")
    if isinstance(data, list):
        if any("termCodes" in item for item in _objects(data)):
            categories = data
        else:
            flat = data
    for category in _objects(categories):
        name = as_str(category.get("name"))
        for entry in _objects(category.get("termCodes")):
            code = _term_code(entry, name)
            if code is not None:
                codes.append(code)
    for entry in _objects(flat):
        code = _term_code(entry, as_str(entry.get("category")))
        if code is not None:
            codes.append(code)
    return TermCodeCatalogue(service_id=service_id, codes=tuple(codes))


# -- contacts --------------------------------------------------------------------


@attrs.frozen
class ContactCreated:
    """What Create Contact answered.

    :param account: the account created.
    :param id: LiveVox's ``id`` for the new contact, as a string, when it sent one.
    """

    account: str
    id: str | None


def parse_contact_created(data: Any, account: str) -> ContactCreated:
    """Return the result of a contact creation; an empty body is a success without id.

    :param data: the parsed body.
    :param account: the account sent.
    """
    return ContactCreated(account=account, id=as_id(_mapping(data).get("id")))


def parse_contact(data: Any) -> dict[str, Any]:
    """Return the contact in a read answer, without its ``readContactDetails`` wrapper.

    :param data: the parsed body.
    :raises ValueError: when the body holds no JSON object.
    """
    body = _mapping(data)
    if not isinstance(data, Mapping):
        raise ValueError("contact answer is not a JSON object")
    inner = body.get("readContactDetails", body)
    if not isinstance(inner, Mapping):
        raise ValueError("readContactDetails is not a JSON object")
    return dict(inner)
