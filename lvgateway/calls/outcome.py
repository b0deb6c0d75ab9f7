"""How a call ends: one pure decision from the call's record and what just happened.

Every way a call can end goes through :func:`decide`: the LiveVox leg hanging
up, the vendor hanging up or asking for a transfer, a setup failure, a timer,
media silence, the drain running out, crash recovery. It answers, once,

- whether the event ends the call (a second event for an ended call changes
  nothing of the outcome, though a leg still up may still need ending);
- the end reason, and whether the call is done or goes to a human;
- the term code to request;
- what becomes of each leg: ended now (a final response before the answer,
  BYE after), kept up until the transfer's posts are made, or left alone;
- the SIP code and text for that final response or the BYE's ``Reason``.

The SIP part reports events and carries out what it is told; the call store
records the outcome and wraps the call up. Whether the agent goes NOT READY
afterwards is the agent pool's to decide, from the facts in
:class:`~lvgateway.agents.interfaces.CallClose`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from lvgateway.agents.interfaces import CallClose
from lvgateway.calls.records import CallRecord, CallState, Disposition, StepState
from lvgateway.config.model import WrapupConfig

__all__ = [
    "CallEvent",
    "Ending",
    "EventKind",
    "NOT_ROUTED_REASON",
    "LegAction",
    "Outcome",
    "Phase",
    "TRANSFER_STATUS",
    "TransferStatus",
    "call_close",
    "transfer_status",
    "decide",
    "ended_fields",
    "phase_of",
    "requested_term_code",
]


class EventKind(enum.Enum):
    """What happened to a call."""

    LIVEVOX_HANGUP = "livevox_hangup"  # BYE or CANCEL from LiveVox
    VENDOR_HANGUP = "vendor_hangup"  # BYE from the vendor, perhaps with a disposition
    VENDOR_REFER = "vendor_refer"  # REFER from the vendor: a transfer to a human
    VENDOR_DISPOSITION = "vendor_disposition"  # JSON on the vendor API during the call
    SETUP_FAILED = "setup_failed"  # the vendor leg failed, or no endpoint answered
    SETUP_TIMEOUT = "setup_timeout"  # no progress or no answer from the vendor in time
    DURATION_TIMEOUT = "duration_timeout"  # the maximum call length
    MEDIA_SILENCE = "media_silence"  # a side sent no RTP past its media timeout
    SESSION_EXPIRED = "session_expired"  # a leg's RFC 4028 session was not refreshed in time
    DRAIN_TIMEOUT = "drain_timeout"  # the drain's call_drain_timeout ran out
    STORE_FAILED = "store_failed"  # the call record could not be written
    CRASH_RECOVERY = "crash_recovery"  # found live at start-up: the last process died
    VENDOR_DIED = "vendor_died"  # no RTP or RTCP and no answer to OPTIONS: the bot is gone
    NOT_ROUTED = "not_routed"  # LiveVox shows the agent with no such call: a stranger's INVITE


#: The end reason of a call LiveVox never routed: nothing of it is posted to
#: LiveVox, so it has no default term code (it is not one of ``END_REASONS``).
NOT_ROUTED_REASON = "not_routed"


class Phase(enum.Enum):
    """Where a call stands, as the decision sees it."""

    ACCEPTING = "accepting"  # no record yet: it is being written
    DIALLING = "dialling"  # recorded; the vendor has not answered
    CONNECTED = "connected"
    TRANSFERRING = "transferring"  # ended as a transfer; the LiveVox leg waits for the posts
    ENDED = "ended"


class LegAction(enum.Enum):
    """What to do with one leg."""

    NONE = "none"  # leave it: it is down already, or stays as it is
    END = "end"  # end it now: a final response if unanswered, else BYE
    HOLD_FOR_TRANSFER = "hold"  # keep it up; the wrap-up ends it after the transfer's posts


@attrs.frozen
class CallEvent:
    """One event of a call.

    :param kind: what happened.
    :param disposition: what the vendor said with it (its BYE's or REFER's
        headers, or the API's JSON), if anything.
    :param code: the SIP status that came with it (a vendor's failure), if any.
    :param text: a short reason for the log and the ``Reason`` header.
    """

    kind: EventKind
    disposition: Disposition | None = None
    code: int | None = None
    text: str | None = None


@attrs.frozen
class Outcome:
    """What an event means for the call.

    :param ends_call: whether this event ends the call (decided once).
    :param end_reason: one of ``END_REASONS``, when it ends the call.
    :param transfer: the call goes to a human (next action ``transfer``).
    :param term_code: the term code name to request, when a record is wrapped up.
    :param disposition: the vendor's disposition with the event's laid over it.
    :param livevox_leg: what to do with the LiveVox leg.
    :param vendor_leg: what to do with the vendor leg.
    :param cause: the SIP status of a final response, or the ``Reason`` cause of a BYE.
    :param text: the text that goes with it.
    """

    ends_call: bool
    end_reason: str | None = None
    transfer: bool = False
    term_code: str | None = None
    disposition: Disposition | None = None
    livevox_leg: LegAction = LegAction.NONE
    vendor_leg: LegAction = LegAction.NONE
    cause: int = 200
    text: str = ""

    @property
    def posts(self) -> bool:
        """Whether the call store wraps this call up with LiveVox now."""
        return self.ends_call and self.term_code is not None


@attrs.frozen
class TransferStatus:
    """How a transfer went at LiveVox, as the final status of the REFER's NOTIFY (RFC 3515).

    :param code: the SIP status of the ``message/sipfrag`` body.
    :param phrase: its reason phrase.
    :param livevox_status: the HTTP status LiveVox answered, if it answered.
    """

    code: int
    phrase: str
    livevox_status: int | None = None

    @property
    def sipfrag(self) -> str:
        """The NOTIFY's body: ``SIP/2.0 200 OK``."""
        return f"SIP/2.0 {self.code} {self.phrase}"


#: LiveVox's answer to a transfer's posts (manual conference, term code) as
#: the SIP status a REFER's final NOTIFY carries. Any other 4xx is 603, any
#: other 5xx 503; no answer at all (timeout, no connection) is 408, and a
#: transfer whose posts outlived ``transfer_timeout`` is 408 too.
TRANSFER_STATUS: dict[int, tuple[int, str]] = {
    200: (200, "OK"),
    400: (603, "Decline"),
    401: (403, "Forbidden"),
    403: (403, "Forbidden"),
    404: (404, "Not Found"),
    409: (486, "Busy Here"),
    429: (480, "Temporarily Unavailable"),
    500: (500, "Server Internal Error"),
    502: (503, "Service Unavailable"),
    503: (503, "Service Unavailable"),
    504: (504, "Server Time-out"),
}


def transfer_status(http_status: int | None) -> TransferStatus:
    """Map LiveVox's HTTP answer to a transfer's post (``None``: no answer) to a NOTIFY status."""
    if http_status is None:
        return TransferStatus(408, "Request Timeout")
    if 200 <= http_status < 300:
        code, phrase = TRANSFER_STATUS[200]
    elif http_status in TRANSFER_STATUS:
        code, phrase = TRANSFER_STATUS[http_status]
    elif 400 <= http_status < 500:
        code, phrase = 603, "Decline"
    else:
        code, phrase = 503, "Service Unavailable"
    return TransferStatus(code, phrase, http_status)


@attrs.frozen
class Ending:
    """The call store's answer to an event: the decision, and its durable record.

    :param outcome: what to do now (the SIP part carries it out at once).
    :param recorded: fires with the call's record once its end is
        committed (at once when the event changed nothing); errbacks when it
        cannot be written.
    :param transferred: for an event that starts a transfer with the LiveVox
        leg held: fires with the :class:`TransferStatus` once the transfer's
        posts are made (or given up), just before the LiveVox leg is ended.
        ``None`` otherwise.
    """

    outcome: Outcome
    recorded: Deferred[CallRecord | None]
    transferred: Deferred[TransferStatus] | None = None


def phase_of(record: CallRecord | None) -> Phase:
    """Return where a call stands from its record (``None``: not written yet)."""
    if record is None:
        return Phase.ACCEPTING
    if record.state is CallState.ACCEPTED:
        return Phase.DIALLING
    if record.state is CallState.CONNECTED:
        return Phase.CONNECTED
    if record.state is CallState.WRAPUP and record.hangup is StepState.PENDING:
        return Phase.TRANSFERRING
    return Phase.ENDED


def requested_term_code(
    disposition: Disposition | None, transfer: bool, end_reason: str, config: WrapupConfig
) -> str:
    """Return the term code a call asks for: the vendor's, else the transfer one, else the end reason's default."""
    if disposition is not None and disposition.term_code:
        return disposition.term_code
    if transfer or (disposition is not None and disposition.is_transfer):
        return config.transfer_term_code
    return config.defaults.get(end_reason, config.fallback_term_code)


def ended_fields(outcome: Outcome, now: float) -> dict[str, Any]:
    """Return what a call's record takes when ``outcome`` ends it and its wrap-up begins.

    One place for the store, its fake and crash recovery: the record goes to
    ``wrapup`` with the end reason, disposition and term code decided, and a
    transfer holding the LiveVox leg has its hang-up step pending.
    """
    hold = outcome.livevox_leg is LegAction.HOLD_FOR_TRANSFER
    return {
        "state": CallState.WRAPUP,
        "ended_at": now,
        "end_reason": outcome.end_reason,
        "disposition": outcome.disposition,
        "transfer": hold,
        "term_code_name": outcome.term_code,
        "hangup": StepState.PENDING if hold else StepState.SKIPPED,
        "wrapup_started_at": now,
        "attempts": 0,
    }


def call_close(record: CallRecord) -> CallClose:
    """Return the facts of an ended call that the agent pool weighs for ``moveAgentToNotReady``."""
    return CallClose(
        end_reason=record.end_reason or "gateway_failure",
        transfer=record.transfer,
        steps_failed=bool(record.failed_steps()),
    )


#: Each event that ends a call: its end reason, and the SIP code and text
#: used when the gateway ends a leg for it.
_ENDINGS: dict[EventKind, tuple[str, int, str]] = {
    EventKind.LIVEVOX_HANGUP: ("caller_hangup", 200, "caller hung up"),
    EventKind.VENDOR_HANGUP: ("vendor_hangup", 200, "Call completed"),
    EventKind.VENDOR_REFER: ("vendor_hangup", 200, "transfer"),
    EventKind.SETUP_FAILED: ("setup_failed", 503, "Service Unavailable"),
    EventKind.SETUP_TIMEOUT: ("timeout", 408, "vendor did not answer"),
    EventKind.DURATION_TIMEOUT: ("timeout", 408, "maximum call duration reached"),
    EventKind.MEDIA_SILENCE: ("timeout", 408, "no RTP"),
    EventKind.SESSION_EXPIRED: ("timeout", 408, "session expired"),
    EventKind.DRAIN_TIMEOUT: ("gateway_failure", 503, "gateway shutting down"),
    EventKind.STORE_FAILED: ("setup_failed", 503, "Service Unavailable"),
    EventKind.CRASH_RECOVERY: ("gateway_failure", 500, "gateway restarted"),
    EventKind.VENDOR_DIED: ("timeout", 503, "vendor gone"),
    EventKind.NOT_ROUTED: (NOT_ROUTED_REASON, 403, "call not routed by LiveVox"),
}

#: The events about a bridged call's vendor or LiveVox's word on it: they
#: mean nothing before the call is recorded.
_NEEDS_RECORD = frozenset({EventKind.VENDOR_REFER, EventKind.VENDOR_DIED, EventKind.NOT_ROUTED})

#: The events that end a call while it is being set up (before the vendor answers).
_ENDS_WHILE_DIALLING = frozenset(_ENDINGS) - {EventKind.VENDOR_REFER, EventKind.VENDOR_DIED}
#: The events that cut the bot off mid-call: the customer goes to a person.
_HANDED_OVER = (EventKind.DRAIN_TIMEOUT, EventKind.VENDOR_DIED, EventKind.CRASH_RECOVERY)
#: The events that end a connected call.
_ENDS_WHILE_CONNECTED = frozenset(_ENDINGS) - {
    EventKind.SETUP_FAILED,  # a rejected re-INVITE, not the end of the call
    EventKind.SETUP_TIMEOUT,  # a setup timer that outlived the setup
    EventKind.STORE_FAILED,
}


def decide(record: CallRecord | None, event: CallEvent, config: WrapupConfig) -> Outcome:
    """Decide what ``event`` means for the call whose record is ``record``.

    :param record: the call's record as it stands, or ``None`` while it is
        being written (then nothing is posted: the call store does not know it).
    :param event: what happened.
    :param config: the term codes to request.
    """
    phase = phase_of(record)
    kind = event.kind
    reason, cause, text = _ENDINGS.get(kind, ("", 200, ""))
    cause = event.code or cause
    text = event.text or text
    if phase in (Phase.ACCEPTING, Phase.DIALLING) and cause < 400:
        # Before the answer a leg can only be refused, and never redirected
        # around the gateway.
        cause, text = 503, "Service Unavailable"
    from_livevox = kind is EventKind.LIVEVOX_HANGUP
    from_vendor = kind in (EventKind.VENDOR_HANGUP, EventKind.SETUP_FAILED)

    if phase in (Phase.TRANSFERRING, Phase.ENDED):
        # Decided already. During a transfer the LiveVox leg waits for the
        # posts; whatever else is still up goes.
        if kind not in _ENDINGS or kind in (
            EventKind.CRASH_RECOVERY,
            EventKind.STORE_FAILED,
            EventKind.NOT_ROUTED,
        ):
            return Outcome(ends_call=False)
        return Outcome(
            ends_call=False,
            vendor_leg=LegAction.NONE if from_vendor else LegAction.END,
            livevox_leg=LegAction.NONE
            if from_livevox or phase is Phase.TRANSFERRING
            else LegAction.END,
            cause=cause,
            text=text,
        )
    if phase is Phase.ACCEPTING:
        if kind not in _ENDINGS or kind in _NEEDS_RECORD:
            return Outcome(ends_call=False)
        return Outcome(
            ends_call=True,
            end_reason=reason,
            livevox_leg=LegAction.NONE if from_livevox else LegAction.END,
            cause=cause,
            text=text,
        )
    assert record is not None
    ends = _ENDS_WHILE_DIALLING if phase is Phase.DIALLING else _ENDS_WHILE_CONNECTED
    if kind not in ends:
        return Outcome(ends_call=False)
    if kind is EventKind.NOT_ROUTED:
        # A stranger's call: both legs go, and LiveVox hears nothing of it.
        return Outcome(
            ends_call=True,
            end_reason=reason,
            livevox_leg=LegAction.END,
            vendor_leg=LegAction.END,
            cause=cause,
            text=text,
        )
    disposition = record.said(event.disposition)
    if kind is EventKind.VENDOR_REFER:
        disposition = attrs.evolve(disposition or Disposition(), next_action="transfer")
    elif kind in _HANDED_OVER and not (disposition and disposition.is_transfer):
        # The bot was cut off mid-call: whatever it had said, a person takes over.
        disposition = attrs.evolve(
            disposition or Disposition(), next_action="transfer", term_code=None
        )
    transfer = disposition is not None and disposition.is_transfer
    # A transfer needs the customer's leg up: an answered call handed to a
    # person keeps it until the posts are made (the vendor's own hang-up
    # included); one the customer left, or never answered, cannot.
    holds = (
        phase is Phase.CONNECTED
        and transfer
        and kind in (EventKind.VENDOR_REFER, EventKind.VENDOR_HANGUP, *_HANDED_OVER)
    )
    if kind is EventKind.CRASH_RECOVERY:
        # Their dialogs died with the last process: recovery ends each leg
        # with an in-dialog BYE from the saved dialog state, before the posts.
        livevox_leg = vendor_leg = LegAction.END
    else:
        livevox_leg = (
            LegAction.HOLD_FOR_TRANSFER
            if holds
            else LegAction.NONE
            if from_livevox
            else LegAction.END
        )
        vendor_leg = (
            LegAction.NONE if from_vendor or kind is EventKind.VENDOR_REFER else LegAction.END
        )
    return Outcome(
        ends_call=True,
        end_reason=reason,
        transfer=transfer,
        term_code=requested_term_code(disposition, transfer, reason, config),
        disposition=disposition,
        livevox_leg=livevox_leg,
        vendor_leg=vendor_leg,
        cause=cause,
        text=text,
    )
