"""The values the call store keeps: one :class:`CallRecord` per call, its :class:`Disposition`, its states.

A record is frozen; every change makes a new one (``attrs.evolve``) which the
store writes whole. Its fields map one to one onto the columns of the
``calls`` table (:mod:`lvgateway.calls.store`).

A record's life::

    accepted ──► connected ──► wrapup ──► done
        │                        │  ▲
        └────────────────────────┘  │ re-drive
                                 dead ──► dismissed

``accepted`` and ``connected`` are *live*: the call is up. ``wrapup`` holds
the call through every step of its wrap-up, each with its own
:class:`StepState`. ``dead`` is a dead letter waiting for an operator.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = [
    "DATA_STEPS",
    "DIALOG_LEGS",
    "FINAL_STATES",
    "LIVE_STATES",
    "NEXT_ACTIONS",
    "STEPS",
    "CallRecord",
    "CallState",
    "Disposition",
    "InviteFacts",
    "StepState",
    "header_lookup",
]


class CallState(enum.StrEnum):
    """Where a call is in its life."""

    ACCEPTED = "accepted"
    CONNECTED = "connected"
    WRAPUP = "wrapup"
    DONE = "done"
    DEAD = "dead"
    DISMISSED = "dismissed"


#: The states of a call still up.
LIVE_STATES = frozenset({CallState.ACCEPTED, CallState.CONNECTED})
#: The states nothing more happens in; retention deletes these.
FINAL_STATES = frozenset({CallState.DONE, CallState.DISMISSED})


class StepState(enum.StrEnum):
    """Where one wrap-up step is.

    ``sent`` is written *before* the request goes out: a step found ``sent``
    had its outcome lost (a crash, a timeout), so LiveVox's state is checked
    where the API shows it before the step is sent again.
    """

    PENDING = "pending"
    SENT = "sent"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


#: The wrap-up steps, each a field of :class:`CallRecord`, in the order they run
#: (``hangup``, the end of the LiveVox leg of a transfer, goes before or after
#: ``term_code`` as ``WrapupConfig.transfer_order`` says).
STEPS = ("aia", "contact", "term_code", "hangup")
#: The steps whose permanent failure does not hold back the term code.
DATA_STEPS = ("aia", "contact")
#: The values of a disposition's next action.
NEXT_ACTIONS = ("done", "transfer")
#: The legs of a call whose SIP dialog a record may keep (:attr:`CallRecord.dialogs`).
DIALOG_LEGS = ("livevox", "vendor")


def header_lookup(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return SIP headers keyed by lower-cased name, values stripped; the first of a repeated name wins.

    :param headers: a mapping, or ``(name, value)`` pairs as a SIP stack lists them.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in pairs:
        found.setdefault(name.strip().lower(), str(value).strip())
    return found


def _first(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None


@attrs.frozen
class InviteFacts:
    """What the SIP part knows of a call when it accepts the INVITE.

    :param agent: the virtual agent's LiveVox login, from the pool's admission.
    :param dnis: the 899 number called.
    :param service_id: the agent's service.
    :param ani: the caller's number (the user part of ``From``).
    :param sip_call_id: the SIP ``Call-ID`` of the LiveVox leg.
    :param call_session_id: LiveVox's callSessionId, the ``Session-ID`` header.
    :param call_transaction_id: LiveVox's callTransactionId, when the INVITE
        carries ``X-transaction-id`` or ``lv-transaction-id``.
    :param lv_agent_login: ``X-agent-login-id`` or ``lv-agent-login-id``, when present.
    :param call_id: the gateway's call id, when the SIP part made it first (its
        media logs carry it); ``None`` has the call store make one.
    """

    agent: str
    dnis: str
    service_id: str | None = None
    ani: str | None = None
    sip_call_id: str | None = None
    call_session_id: str | None = None
    call_transaction_id: str | None = None
    lv_agent_login: str | None = None
    call_id: str | None = None

    @classmethod
    def from_headers(
        cls,
        agent: str,
        dnis: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        service_id: str | None = None,
        ani: str | None = None,
        sip_call_id: str | None = None,
        call_id: str | None = None,
    ) -> InviteFacts:
        """Build the facts of an INVITE from its headers (names in any case).

        :param agent: the agent's login, from the pool.
        :param dnis: the 899 number of the Request-URI.
        :param headers: the INVITE's headers.
        :param service_id: the agent's service.
        :param ani: the caller's number.
        :param sip_call_id: the SIP Call-ID.
        :param call_id: the gateway's call id, if already made.
        """
        h = header_lookup(headers)
        return cls(
            agent=agent,
            dnis=dnis,
            service_id=service_id,
            ani=ani,
            sip_call_id=sip_call_id or h.get("call-id"),
            call_session_id=_first(h, "session-id"),
            call_transaction_id=_first(h, "x-transaction-id", "lv-transaction-id"),
            lv_agent_login=_first(h, "x-agent-login-id", "lv-agent-login-id"),
            call_id=call_id,
        )


def _other_numbers(instance: Disposition, attribute: attrs.Attribute[Any], value: Any) -> None:
    bad = [k for k in value if not (isinstance(k, int) and 1 <= k <= 20)]
    if bad:
        raise ValueError(f"Other fields are numbered 1 to 20, not {bad!r}")


@attrs.frozen
class Disposition:
    """How the AI vendor says a call ended: one model for BYE or REFER headers and the JSON API.

    Every field is optional; ``None`` means "not said".

    :param term_code: a name from ``[wrapup.term_codes]``, a LiveVox term code
        name, or a term code id.
    :param next_action: ``done`` or ``transfer`` (to a human).
    :param call_outcome: the vendor's outcome, for the AIA's ``callOutcome``.
    :param result: the AIA's ``lvresult``; the term code's LiveVox result when absent.
    :param account: the contact's account, when the vendor learnt it.
    :param other: the AIA's ``Other1``…``Other20``, by number.
    :param contact: contact fields to update (LiveVox's names: ``person``,
        ``phone``, ``customFields``…); only through the vendor API.
    :param create_contact: create the contact when LiveVox lacks the account;
        ``None`` follows ``WrapupConfig.create_missing_contacts``.
    :param transfer_number: the number a transfer goes to (a REFER's
        ``Refer-To`` with a number): LiveVox's manual conference to it.
    """

    term_code: str | None = None
    next_action: str | None = None
    call_outcome: str | None = None
    result: str | None = None
    account: str | None = None
    other: Mapping[int, str] = attrs.field(factory=dict, validator=_other_numbers)
    contact: Mapping[str, Any] | None = None
    create_contact: bool | None = None
    transfer_number: str | None = None

    @property
    def is_transfer(self) -> bool:
        """Whether the vendor asks for a transfer to a human."""
        return self.next_action == "transfer"

    def over(self, earlier: Disposition | None) -> Disposition:
        """Return this disposition laid over an earlier one: what this one says wins, field by field.

        ``other`` is merged by number.

        :param earlier: what the vendor said before, if anything.
        """
        if earlier is None:
            return self
        return Disposition(
            term_code=_pick(self.term_code, earlier.term_code),
            next_action=_pick(self.next_action, earlier.next_action),
            call_outcome=_pick(self.call_outcome, earlier.call_outcome),
            result=_pick(self.result, earlier.result),
            account=_pick(self.account, earlier.account),
            other={**earlier.other, **self.other},
            contact=_pick(self.contact, earlier.contact),
            create_contact=_pick(self.create_contact, earlier.create_contact),
            transfer_number=_pick(self.transfer_number, earlier.transfer_number),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the disposition as JSON (the vendor API's field names), leaving out what was not said."""
        body: dict[str, Any] = {
            "term_code": self.term_code,
            "next_action": self.next_action,
            "call_outcome": self.call_outcome,
            "result": self.result,
            "account": self.account,
            "contact": dict(self.contact) if self.contact is not None else None,
            "create_contact": self.create_contact,
            "transfer_number": self.transfer_number,
        }
        if self.other:
            body["other"] = {str(n): v for n, v in sorted(self.other.items())}
        return {k: v for k, v in body.items() if v is not None}

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> Disposition:
        """Rebuild a disposition the store wrote with :meth:`to_json` (trusted, not validated).

        :param data: the decoded JSON.
        """
        return cls(
            term_code=data.get("term_code"),
            next_action=data.get("next_action"),
            call_outcome=data.get("call_outcome"),
            result=data.get("result"),
            account=data.get("account"),
            other={int(n): v for n, v in (data.get("other") or {}).items()},
            contact=data.get("contact"),
            create_contact=data.get("create_contact"),
            transfer_number=data.get("transfer_number"),
        )


def _pick(new: Any, old: Any) -> Any:
    return old if new is None else new


@attrs.frozen
class CallRecord:
    """One call, from its INVITE's acceptance until LiveVox has everything.

    Times are the clock's seconds (epoch seconds in production).

    :param call_id: the gateway's id, sent to the vendor as ``X-LVGW-Call-ID``.
    :param state: where the call is (:class:`CallState`).
    :param agent: the virtual agent's LiveVox login.
    :param dnis: the 899 number called.
    :param accepted_at: when the INVITE was accepted.
    :param updated_at: when the record last changed (the ``since`` filter reads this).
    :param service_id: the LiveVox service, from config or from LiveVox.
    :param ani: the caller's number.
    :param sip_call_id: the SIP Call-ID of the LiveVox leg.
    :param call_session_id: LiveVox's callSessionId (SIP ``Session-ID``).
    :param call_transaction_id: LiveVox's callTransactionId.
    :param account: the contact's account as LiveVox gave it.
    :param phone_dialed: the customer's number, the term code's ``phoneDialed``.
    :param ids_source: where the transaction id came from: ``headers`` or ``status``.
    :param lv_agent_login: the agent login the INVITE named, if any.
    :param connected_at: when the vendor leg answered.
    :param ended_at: when the call ended (its wrap-up's clock starts).
    :param end_reason: one of ``lvgateway.config.model.END_REASONS``.
    :param disposition: what the vendor said, merged over its earlier word.
    :param disposition_source: where it last came from: ``bye``, ``refer`` or ``api``.
    :param transfer: the call is transferred while its LiveVox leg is up.
    :param term_code_name: the term code asked for (by disposition or default).
    :param term_code_id: the LiveVox id it resolved to.
    :param lv_result: that term code's LiveVox result, for the AIA.
    :param fallback_used: the name was unknown and the fallback was used.
    :param move_not_ready: the ``moveAgentToNotReady`` sent (fixed once sent).
    :param aia: the AIA post.
    :param contact: the contact update or create.
    :param term_code: the term code save.
    :param hangup: ending the LiveVox leg of a transfer.
    :param attempts: failed attempts of the wrap-up since it (re)started.
    :param last_error: the last failure, for operators.
    :param wrapup_started_at: when the wrap-up (or its re-drive) began, for ``max_age``.
    :param finished_at: when it became ``done``, ``dead`` or ``dismissed``.
    :param dialogs: the SIP dialog of each leg of a live call, by leg
        (:data:`DIALOG_LEGS`), as the SIP part wrote it (JSON values the calls
        part does not read): after a crash, what the restarted gateway ends
        those legs with.
    """

    call_id: str
    state: CallState
    agent: str
    dnis: str
    accepted_at: float
    updated_at: float
    service_id: str | None = None
    ani: str | None = None
    sip_call_id: str | None = None
    call_session_id: str | None = None
    call_transaction_id: str | None = None
    account: str | None = None
    phone_dialed: str | None = None
    ids_source: str | None = None
    lv_agent_login: str | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    disposition: Disposition | None = None
    disposition_source: str | None = None
    transfer: bool = False
    term_code_name: str | None = None
    term_code_id: str | None = None
    lv_result: str | None = None
    fallback_used: bool = False
    move_not_ready: bool | None = None
    aia: StepState = StepState.PENDING
    contact: StepState = StepState.PENDING
    term_code: StepState = StepState.PENDING
    hangup: StepState = StepState.SKIPPED
    attempts: int = 0
    last_error: str | None = None
    wrapup_started_at: float | None = None
    finished_at: float | None = None
    dialogs: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    @property
    def is_live(self) -> bool:
        """Whether the call is still up (accepted or connected)."""
        return self.state in LIVE_STATES

    @property
    def term_code_settled(self) -> bool:
        """Whether LiveVox has the call's term code (or it was closed there without one)."""
        return self.term_code in (StepState.DONE, StepState.SKIPPED)

    def said(self, disposition: Disposition | None) -> Disposition | None:
        """Return the vendor's disposition with ``disposition`` (a later word) laid over it."""
        return disposition.over(self.disposition) if disposition is not None else self.disposition

    def transfers_with(self, disposition: Disposition | None) -> bool:
        """Whether the call is live and, with ``disposition`` laid over, asks for a transfer."""
        merged = self.said(disposition)
        return self.is_live and merged is not None and merged.is_transfer

    def with_dialogs(
        self, dialogs: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Mapping[str, Any]]:
        """Return the record's dialogs with ``dialogs`` laid over them, leg by leg.

        :param dialogs: by leg, as :meth:`~lvgateway.calls.interfaces.ICalls.note_dialogs` takes them.
        :raises ValueError: for a leg not in :data:`DIALOG_LEGS`.
        """
        unknown = sorted(set(dialogs) - set(DIALOG_LEGS))
        if unknown:
            raise ValueError(f"call {self.call_id}: no leg named {', '.join(unknown)}")
        return {**self.dialogs, **{leg: dict(state) for leg, state in dialogs.items()}}

    def step(self, name: str) -> StepState:
        """Return the state of the step ``name`` (one of :data:`STEPS`)."""
        if name not in STEPS:
            raise KeyError(name)
        value: StepState = getattr(self, name)
        return value

    def failed_steps(self) -> list[str]:
        """Return the names of the steps that failed for good."""
        return [name for name in STEPS if self.step(name) is StepState.FAILED]

    def to_json(self) -> dict[str, Any]:
        """Return the record as the vendor and control APIs show it.

        ``dialogs`` shows only which legs have a saved dialog: the SIP
        details of LiveVox's side are nobody's business outside the gateway.
        """
        body: dict[str, Any] = {}
        for field in attrs.fields(CallRecord):
            value = getattr(self, field.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, Disposition):
                value = value.to_json()
            body[field.name] = value
        body["steps"] = {name: body.pop(name) for name in STEPS}
        body["dialogs"] = sorted(self.dialogs)
        return body
