"""What the simulated LiveVox keeps and how LiveVox shows it: sessions, calls, agent lines, errors.

The records are plain attrs classes, changed only by
:class:`~lvgateway.sandbox.livevox_state.LiveVoxState`; the ``*_json``
functions render them in the JSON shapes docs/livevox-api.md documents (LVNET's
models), ids and times as strings.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from lvgateway.config.secret import shorten
from lvgateway.sandbox.sandbox_config import ServiceConfig, UserConfig


class LiveVoxError(Exception):
    """An answer LiveVox gives as ``{"code": status, "message": message}``.

    :param status: the HTTP status, also the body's ``code``.
    :param message: the body's ``message``.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        """Return the JSON body, ``code`` first."""
        return {"code": self.status, "message": self.message}


#: The breach a second term code for a call already closed commits.
REPEATED_TERM_CODE = "repeated term code"


class ContractError(LiveVoxError):
    """A request the gateway's contract with LiveVox forbids, answered as LiveVox's error.

    The simulator answers it like any :class:`LiveVoxError`, and also counts
    it and names the breach on the request's journal entry, so a test can
    tell a gateway that broke the contract from one LiveVox merely refused.

    :param status: the HTTP status, also the body's ``code``.
    :param message: the body's ``message``.
    :param breach: what was breached, such as :data:`REPEATED_TERM_CODE`.
    """

    def __init__(self, status: int, message: str, breach: str) -> None:
        super().__init__(status, message)
        self.breach = breach


class LineState(enum.StrEnum):
    """An agent line's state, as ``lines[].state`` names it [C:LVNET LineState]."""

    LOGOFF = "LOGOFF"
    LOGON = "LOGON"
    READY = "READY"
    NOTREADY = "NOTREADY"
    INCALL = "INCALL"
    WRAPUP = "WRAPUP"


def parse_bool(value: Any, name: str, default: bool = False) -> bool:
    """Read a LiveVox boolean, sent as ``true`` or as the string ``"true"``.

    :param value: the JSON value, or ``None`` when absent.
    :param name: the field name, for the 400 message.
    :param default: the value when absent.
    :raises LiveVoxError: 400 for anything else.
    """
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise LiveVoxError(400, f"{name} must be true or false")


def id_field(body: Mapping[str, Any], name: str) -> str | None:
    """Read an id sent as a string or a number; ``None`` when absent or empty."""
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def normalize_number(number: str) -> str:
    """Return a phone number's digits, without a leading US country code: ``+18990000001`` → ``8990000001``."""
    digits = "".join(c for c in number if c.isdigit())
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits


@attrs.define
class Session:
    """A live LiveVox session.

    :param session_id: the id sent back in ``LV-Session``.
    :param user: whose session it is.
    :param agent: whether it was an agent login.
    :param token_index: which configured API token opened it.
    :param created: clock time of the login.
    :param last_used: clock time of the last request that used it.
    """

    session_id: str = attrs.field(repr=shorten)
    user: UserConfig
    agent: bool
    token_index: int
    created: float
    last_used: float

    @property
    def short_id(self) -> str:
        """A prefix of the id, safe to log."""
        return shorten(self.session_id)


@attrs.define
class Call:
    """A call the simulated LiveVox put through to an agent.

    :param call_transaction_id: LiveVox's numeric transaction id, as a string.
    :param call_session_id: LiveVox's ``U...T...@10.x.x.x`` session id (also
        the SIP ``Session-ID`` header).
    :param agent: the agent's login name.
    :param service_id: the service it came in on.
    :param dnis: the agent's 899 number.
    :param phone_number: the customer's number (``phoneDialed`` on the term code).
    :param account_number: the customer's account.
    :param first_name: from the contact, if known.
    :param last_name: from the contact, if known.
    :param started: clock time it was put through.
    :param ended: clock time the customer leg ended, if it has.
    :param term_code_id: the term code applied, once applied.
    :param term_coded_at: clock time of the term code.
    :param repeats: how many further term codes came for it after the first
        (each refused as a contract error).
    :param transfer_number: the number of a manual conference, if any.
    """

    call_transaction_id: str
    call_session_id: str
    agent: str
    service_id: str
    dnis: str
    phone_number: str
    account_number: str
    first_name: str | None
    last_name: str | None
    started: float
    ended: float | None = None
    term_code_id: str | None = None
    term_coded_at: float | None = None
    move_agent_to_not_ready: bool | None = None
    repeats: int = 0
    transfer_number: str | None = None

    @property
    def closed(self) -> bool:
        """Whether a term code has been applied."""
        return self.term_code_id is not None

    def to_json(self) -> dict[str, Any]:
        """Return the call as the sandbox controls show it."""
        return {
            "callTransactionId": self.call_transaction_id,
            "callSessionId": self.call_session_id,
            "agent": self.agent,
            "serviceId": self.service_id,
            "dnis": self.dnis,
            "phoneNumber": self.phone_number,
            "accountNumber": self.account_number,
            "started": self.started,
            "ended": self.ended,
            "termCodeId": self.term_code_id,
            "termCodedAt": self.term_coded_at,
            "moveAgentToNotReady": self.move_agent_to_not_ready,
            "repeats": self.repeats,
            "transferNumber": self.transfer_number,
        }


@attrs.define
class AgentLine:
    """An agent's ACD line.

    :param user: the agent.
    :param state: its state.
    :param state_changed: clock time of the last state change.
    :param service_id: the joined service, if any.
    :param phone_number: the 899 number it joined with.
    :param reason_code: the not-ready reason, while NOTREADY.
    :param current_call: the call on the line (INCALL or WRAPUP).
    :param last_call: the call before, closed or not.
    :param calls_handled: calls given a term code.
    """

    user: UserConfig
    state: LineState = LineState.LOGOFF
    state_changed: float = 0.0
    service_id: str | None = None
    phone_number: str | None = None
    reason_code: str | None = None
    current_call: Call | None = None
    last_call: Call | None = None
    calls_handled: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return the line as the sandbox controls show it."""
        return {
            "user": self.user.name,
            "state": self.state.value,
            "stateChanged": self.state_changed,
            "serviceId": self.service_id,
            "phoneNumber": self.phone_number,
            "reasonCode": self.reason_code,
            "currentCall": self.current_call.to_json() if self.current_call else None,
            "lastCall": self.last_call.to_json() if self.last_call else None,
            "callsHandled": self.calls_handled,
        }


@attrs.frozen
class TermCodeResult:
    """What a term code did: it closed ``call``.

    :param call: the call it was for.
    :param warnings: what was accepted but looked wrong, such as a missing phoneDialed.
    """

    call: Call
    warnings: tuple[str, ...] = ()


ContactLookup = Callable[[str], "Mapping[str, Any] | None"]


def call_json(call: Call) -> dict[str, Any]:
    """Return a call as ``lines[].call`` shows it: ids as strings, serviceId a number."""
    return {
        "callTransactionId": call.call_transaction_id,
        "callSessionId": call.call_session_id,
        "firstName": call.first_name,
        "lastName": call.last_name,
        "accountNumber": call.account_number,
        "phoneNumber": call.phone_number,
        # a number in LVNET's CallDetails (int ServiceId) and the guide's example
        "serviceId": int(call.service_id),
        "callCenterId": 1,
        "callRequiresAcceptance": False,
        "callAcceptanceTimeout": 0,
        "callRecordingStarted": True,
        "accountNumberRequired": False,
    }


#: Line states on which a closed last call may still be shown (``status_shows_last_call``).
FREE_STATES = frozenset({LineState.READY, LineState.NOTREADY})


def shown_call(line: AgentLine, show_last_call: bool = False) -> Call | None:
    """Return the call a line's status shows: its current call, else perhaps its last one.

    :param line: the agent's line.
    :param show_last_call: show the last call, once closed, while the line
        is READY or NOTREADY (the reading of docs/livevox-api.md section 3.4 in
        which LiveVox keeps a closed call on the line); without it a line
        shows only a call in progress.
    """
    if line.current_call is not None:
        return line.current_call
    last = line.last_call
    if show_last_call and last is not None and last.closed and line.state in FREE_STATES:
        return last
    return None


def agent_status_json(
    line: AgentLine, calls_in_progress: int, show_last_call: bool = False
) -> dict[str, Any]:
    """Return ``POST /callControl/agent/status``'s body, in LVNET's documented shape.

    :param line: the agent's line.
    :param calls_in_progress: calls up in the agent's service.
    :param show_last_call: see :func:`shown_call`.
    """
    current = line.current_call
    shown = shown_call(line, show_last_call)
    line_json = {
        "lineNumber": "ACD",
        "displayName": "ACD",
        "state": line.state.value,
        "stateChangedTime": str(int(line.state_changed * 1000)),
        "active": line.state is not LineState.LOGOFF,
        "callControl": line.state is LineState.INCALL,
        "playingMessage": False,
        "customerDisconnectedBeforeBridge": False,
        "conferenceInitiated": bool(current and current.transfer_number),
        "supervisorCallSuccessBeforeConferenced": False,
        "callConferenced": False,
        "transferToQueue": False,
        "transferToQueueFailed": False,
        "transferCallOnHold": False,
        "callTransferredToAgent": None,
        "supervisorPhoneNumber": current.transfer_number if current else None,
        "call": call_json(shown) if shown else None,
    }
    return {
        "agentStatus": {
            "agentCallConnected": line.state is LineState.INCALL,
            "agentCallFailed": False,
            "agentCallFailedErrorCode": 0,
            "agentManualDialingFailed": False,
            "agentManualDialingFailedErrorCode": 0,
            "agentManualDialingFailedReason": None,
            "previewDialingFailed": False,
            "previewDialingFailedErrorCode": 0,
            "previewDialingFailedReason": None,
            "voicemailStorageLimitReached": False,
            "newVoicemailsCount": 0,
            "reasonCode": line.reason_code if line.state is LineState.NOTREADY else None,
            "agentMuted": False,
            "service": {
                "callsInProgress": calls_in_progress,
                "callsRemaining": 0,
                "callsOnHold": 0,
                "reloadServiceFeatures": False,
                "reloadServiceId": 0,
            },
            "voicemail": {
                "voicemailCallConnected": False,
                "voicemailFailureErrorCode": 0,
                "voicemailFailureReson": None,
            },
            "chat": {"chatMessages": [], "terminatedChatSessions": []},
            "lines": [line_json],
        }
    }


def term_codes_json(service: ServiceConfig) -> dict[str, Any]:
    """Return ``GET /callControl/agent/termCode``'s body for a service [C:LVNET shape]."""
    return {
        "termCodeCategories": [
            {
                "name": category.name,
                "termCodes": [
                    {
                        "id": code.id,
                        "name": code.name,
                        "lvResultId": code.lv_result_id,
                        "lvResult": code.lv_result,
                        "reportDisplayOrder": code.report_display_order,
                        "previewDialEnabled": code.preview_dial_enabled,
                        "actionType": code.action_type,
                        "paymentAmtRequired": code.payment_amt_required,
                    }
                    for code in category.term_codes
                ],
            }
            for category in service.categories
        ]
    }


def screenpop_json(call: Call | None) -> dict[str, Any]:
    """Return ``GET /callControl/agent/screenpop``'s body for the call on the line."""
    if call is None:
        return {"screenPopRow": []}
    rows = [
        ("First Name", call.first_name or ""),
        ("Last Name", call.last_name or ""),
        ("Account Number", call.account_number),
        ("Phone Dialed", call.phone_number),
        ("Call Direction", "Inbound"),
    ]
    return {"screenPopRow": [{"key": k, "value": v} for k, v in rows]}
