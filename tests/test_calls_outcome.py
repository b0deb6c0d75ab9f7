"""The outcome table: what every event means in every phase of a call, decided in one place."""

from __future__ import annotations

import itertools

import attrs
import pytest

from lvgateway.calls.outcome import (
    CallEvent,
    EventKind,
    LegAction,
    Outcome,
    Phase,
    decide,
    phase_of,
)
from lvgateway.calls.records import CallRecord, CallState, Disposition, StepState
from lvgateway.calls.testing import wrapup_config

CONFIG = wrapup_config()
N, E, H = LegAction.NONE, LegAction.END, LegAction.HOLD_FOR_TRANSFER
K = EventKind

#: A record in each phase (``None``: not written yet).
RECORDS: dict[Phase, CallRecord | None] = {
    Phase.ACCEPTING: None,
    Phase.DIALLING: CallRecord("c1", CallState.ACCEPTED, "AIVA1", "+18990000001", 1.0, 1.0),
    Phase.CONNECTED: CallRecord("c1", CallState.CONNECTED, "AIVA1", "+18990000001", 1.0, 1.0),
    Phase.TRANSFERRING: CallRecord(
        "c1",
        CallState.WRAPUP,
        "AIVA1",
        "+18990000001",
        1.0,
        1.0,
        transfer=True,
        hangup=StepState.PENDING,
    ),
    Phase.ENDED: CallRecord("c1", CallState.WRAPUP, "AIVA1", "+18990000001", 1.0, 1.0),
}

#: (ends the call, end reason, transfer, LiveVox leg, vendor leg) for every phase and event.
#: ``-`` marks an event that changes nothing of the call's end.
NOTHING = (False, None, False, N, N)
TABLE: dict[tuple[Phase, EventKind], tuple[bool, str | None, bool, LegAction, LegAction]] = {
    # Being written: nothing is posted, the LiveVox leg is refused unless it left.
    (Phase.ACCEPTING, K.LIVEVOX_HANGUP): (True, "caller_hangup", False, N, N),
    (Phase.ACCEPTING, K.VENDOR_HANGUP): (True, "vendor_hangup", False, E, N),
    (Phase.ACCEPTING, K.VENDOR_REFER): NOTHING,
    (Phase.ACCEPTING, K.VENDOR_DISPOSITION): NOTHING,
    (Phase.ACCEPTING, K.SETUP_FAILED): (True, "setup_failed", False, E, N),
    (Phase.ACCEPTING, K.SETUP_TIMEOUT): (True, "timeout", False, E, N),
    (Phase.ACCEPTING, K.DURATION_TIMEOUT): (True, "timeout", False, E, N),
    (Phase.ACCEPTING, K.MEDIA_SILENCE): (True, "timeout", False, E, N),
    (Phase.ACCEPTING, K.SESSION_EXPIRED): (True, "timeout", False, E, N),
    (Phase.ACCEPTING, K.DRAIN_TIMEOUT): (True, "gateway_failure", False, E, N),
    (Phase.ACCEPTING, K.STORE_FAILED): (True, "setup_failed", False, E, N),
    (Phase.ACCEPTING, K.CRASH_RECOVERY): (True, "gateway_failure", False, E, N),
    (Phase.ACCEPTING, K.VENDOR_DIED): NOTHING,
    (Phase.ACCEPTING, K.NOT_ROUTED): NOTHING,
    # Dialling the vendor: the LiveVox leg is unanswered, so it can only be refused.
    (Phase.DIALLING, K.LIVEVOX_HANGUP): (True, "caller_hangup", False, N, E),
    (Phase.DIALLING, K.VENDOR_HANGUP): (True, "vendor_hangup", False, E, N),
    (Phase.DIALLING, K.VENDOR_REFER): NOTHING,
    (Phase.DIALLING, K.VENDOR_DISPOSITION): NOTHING,
    (Phase.DIALLING, K.SETUP_FAILED): (True, "setup_failed", False, E, N),
    (Phase.DIALLING, K.SETUP_TIMEOUT): (True, "timeout", False, E, E),
    (Phase.DIALLING, K.DURATION_TIMEOUT): (True, "timeout", False, E, E),
    (Phase.DIALLING, K.MEDIA_SILENCE): (True, "timeout", False, E, E),
    (Phase.DIALLING, K.SESSION_EXPIRED): (True, "timeout", False, E, E),
    (Phase.DIALLING, K.DRAIN_TIMEOUT): (True, "gateway_failure", True, E, E),
    (Phase.DIALLING, K.STORE_FAILED): (True, "setup_failed", False, E, E),
    (Phase.DIALLING, K.CRASH_RECOVERY): (True, "gateway_failure", True, E, E),
    (Phase.DIALLING, K.VENDOR_DIED): NOTHING,  # the setup timers cover a vendor that never answers
    (Phase.DIALLING, K.NOT_ROUTED): (True, "not_routed", False, E, E),
    # Connected: a transfer keeps the customer's leg up until the posts are made.
    (Phase.CONNECTED, K.LIVEVOX_HANGUP): (True, "caller_hangup", False, N, E),
    (Phase.CONNECTED, K.VENDOR_HANGUP): (True, "vendor_hangup", False, E, N),
    (Phase.CONNECTED, K.VENDOR_REFER): (True, "vendor_hangup", True, H, N),
    (Phase.CONNECTED, K.VENDOR_DISPOSITION): NOTHING,
    (Phase.CONNECTED, K.SETUP_FAILED): NOTHING,  # a rejected re-INVITE
    (Phase.CONNECTED, K.SETUP_TIMEOUT): NOTHING,  # a setup timer outlived the setup
    (Phase.CONNECTED, K.DURATION_TIMEOUT): (True, "timeout", False, E, E),
    (Phase.CONNECTED, K.MEDIA_SILENCE): (True, "timeout", False, E, E),
    (Phase.CONNECTED, K.SESSION_EXPIRED): (True, "timeout", False, E, E),
    (Phase.CONNECTED, K.DRAIN_TIMEOUT): (True, "gateway_failure", True, H, E),
    (Phase.CONNECTED, K.STORE_FAILED): NOTHING,
    (Phase.CONNECTED, K.CRASH_RECOVERY): (True, "gateway_failure", True, E, E),
    (Phase.CONNECTED, K.VENDOR_DIED): (True, "timeout", True, H, E),
    (Phase.CONNECTED, K.NOT_ROUTED): (True, "not_routed", False, E, E),
    # A transfer under way: the LiveVox leg waits for the posts; the vendor leg goes.
    (Phase.TRANSFERRING, K.LIVEVOX_HANGUP): (False, None, False, N, E),
    (Phase.TRANSFERRING, K.VENDOR_HANGUP): (False, None, False, N, N),
    (Phase.TRANSFERRING, K.VENDOR_REFER): (False, None, False, N, E),
    (Phase.TRANSFERRING, K.VENDOR_DISPOSITION): NOTHING,
    (Phase.TRANSFERRING, K.SETUP_FAILED): (False, None, False, N, N),
    (Phase.TRANSFERRING, K.SETUP_TIMEOUT): (False, None, False, N, E),
    (Phase.TRANSFERRING, K.DURATION_TIMEOUT): (False, None, False, N, E),
    (Phase.TRANSFERRING, K.MEDIA_SILENCE): (False, None, False, N, E),
    (Phase.TRANSFERRING, K.SESSION_EXPIRED): (False, None, False, N, E),
    (Phase.TRANSFERRING, K.DRAIN_TIMEOUT): (False, None, False, N, E),
    (Phase.TRANSFERRING, K.STORE_FAILED): NOTHING,
    (Phase.TRANSFERRING, K.CRASH_RECOVERY): NOTHING,
    (Phase.TRANSFERRING, K.VENDOR_DIED): (False, None, False, N, E),
    (Phase.TRANSFERRING, K.NOT_ROUTED): NOTHING,
    # Ended: the end stands; a leg still up goes.
    (Phase.ENDED, K.LIVEVOX_HANGUP): (False, None, False, N, E),
    (Phase.ENDED, K.VENDOR_HANGUP): (False, None, False, E, N),
    (Phase.ENDED, K.VENDOR_REFER): (False, None, False, E, E),
    (Phase.ENDED, K.VENDOR_DISPOSITION): NOTHING,
    (Phase.ENDED, K.SETUP_FAILED): (False, None, False, E, N),
    (Phase.ENDED, K.SETUP_TIMEOUT): (False, None, False, E, E),
    (Phase.ENDED, K.DURATION_TIMEOUT): (False, None, False, E, E),
    (Phase.ENDED, K.MEDIA_SILENCE): (False, None, False, E, E),
    (Phase.ENDED, K.SESSION_EXPIRED): (False, None, False, E, E),
    (Phase.ENDED, K.DRAIN_TIMEOUT): (False, None, False, E, E),
    (Phase.ENDED, K.STORE_FAILED): NOTHING,
    (Phase.ENDED, K.CRASH_RECOVERY): NOTHING,
    (Phase.ENDED, K.VENDOR_DIED): (False, None, False, E, E),
    (Phase.ENDED, K.NOT_ROUTED): NOTHING,
}


def test_the_table_covers_every_phase_and_event() -> None:
    """No cell is left to chance."""
    assert set(TABLE) == set(itertools.product(Phase, EventKind))


@pytest.mark.parametrize(("phase", "kind"), sorted(TABLE, key=lambda k: (k[0].value, k[1].value)))
def test_outcome_of_each_event_in_each_phase(phase: Phase, kind: EventKind) -> None:
    """Each (phase, event) gives the outcome the table says, and a consistent one."""
    record = RECORDS[phase]
    assert phase_of(record) is phase
    outcome = decide(record, CallEvent(kind), CONFIG)
    got = (
        outcome.ends_call,
        outcome.end_reason,
        outcome.transfer,
        outcome.livevox_leg,
        outcome.vendor_leg,
    )
    assert got == TABLE[phase, kind]
    # A leg held for a transfer is a transfer; a posted call has a term code.
    assert outcome.livevox_leg is not H or outcome.transfer
    assert outcome.posts == (
        outcome.ends_call and record is not None and outcome.end_reason != "not_routed"
    )
    if outcome.livevox_leg is E and phase in (Phase.ACCEPTING, Phase.DIALLING):
        assert outcome.cause >= 400, "an unanswered leg is refused, never redirected"


@pytest.mark.parametrize(
    ("kind", "disposition", "term_code"),
    [
        (K.LIVEVOX_HANGUP, None, CONFIG.defaults["caller_hangup"]),
        (K.VENDOR_HANGUP, None, CONFIG.defaults["vendor_hangup"]),
        (K.DURATION_TIMEOUT, None, CONFIG.defaults["timeout"]),
        (K.CRASH_RECOVERY, Disposition(term_code="Paid"), CONFIG.transfer_term_code),
        (K.VENDOR_HANGUP, Disposition(term_code="AI Payment Taken"), "AI Payment Taken"),
        (K.VENDOR_HANGUP, Disposition(next_action="transfer"), CONFIG.transfer_term_code),
        (K.VENDOR_REFER, None, CONFIG.transfer_term_code),
        (K.VENDOR_REFER, Disposition(term_code="billing"), "billing"),
        # The drain cuts the bot off: a person takes over whatever it had said.
        (
            K.DRAIN_TIMEOUT,
            Disposition(term_code="Paid", next_action="done"),
            CONFIG.transfer_term_code,
        ),
    ],
)
def test_term_code_requested(
    kind: EventKind, disposition: Disposition | None, term_code: str
) -> None:
    """The vendor's term code, else the transfer one, else the end reason's default."""
    outcome = decide(RECORDS[Phase.CONNECTED], CallEvent(kind, disposition), CONFIG)
    assert outcome.term_code == term_code


def test_a_transfer_posted_beforehand_holds_the_customer_on_the_vendors_bye() -> None:
    """A disposition posted on the vendor API during the call is laid under the BYE's."""
    record = attrs.evolve(
        RECORDS[Phase.CONNECTED], disposition=Disposition(next_action="transfer", call_outcome="x")
    )
    assert isinstance(record, CallRecord)
    held = decide(record, CallEvent(K.VENDOR_HANGUP), CONFIG)
    assert (held.transfer, held.livevox_leg, held.term_code) == (True, H, CONFIG.transfer_term_code)
    done = decide(record, CallEvent(K.VENDOR_HANGUP, Disposition(next_action="done")), CONFIG)
    assert (done.transfer, done.livevox_leg) == (False, E)
    # The customer left: still a transfer for LiveVox, but no leg to hold.
    left = decide(record, CallEvent(K.LIVEVOX_HANGUP), CONFIG)
    assert (left.transfer, left.livevox_leg, left.term_code) == (True, N, CONFIG.transfer_term_code)


def test_a_vendor_redirect_before_the_answer_is_refused_503() -> None:
    """A 3xx from the vendor is never relayed: LiveVox could follow it around the gateway."""
    outcome = decide(RECORDS[Phase.DIALLING], CallEvent(K.SETUP_FAILED, code=302), CONFIG)
    assert (outcome.livevox_leg, outcome.cause) == (E, 503)
    busy = decide(RECORDS[Phase.DIALLING], CallEvent(K.SETUP_FAILED, code=486), CONFIG)
    assert busy.cause == 486


def test_a_call_livevox_never_routed_posts_nothing() -> None:
    """Both legs end with a 403 Reason, and no term code is asked: LiveVox has no such call."""
    outcome = decide(RECORDS[Phase.CONNECTED], CallEvent(K.NOT_ROUTED), CONFIG)
    assert (outcome.term_code, outcome.posts, outcome.cause) == (None, False, 403)


def test_a_dead_vendor_hands_the_customer_to_a_person() -> None:
    """Whatever the bot had said, the customer's leg is held for the transfer's posts."""
    record = attrs.evolve(RECORDS[Phase.CONNECTED], disposition=Disposition(term_code="Paid"))
    assert isinstance(record, CallRecord)
    outcome = decide(record, CallEvent(K.VENDOR_DIED), CONFIG)
    assert (outcome.term_code, outcome.livevox_leg) == (CONFIG.transfer_term_code, H)


def test_nothing_outcome_is_the_default() -> None:
    """An event that changes nothing says so plainly."""
    assert decide(RECORDS[Phase.ENDED], CallEvent(K.CRASH_RECOVERY), CONFIG) == Outcome(
        ends_call=False
    )
