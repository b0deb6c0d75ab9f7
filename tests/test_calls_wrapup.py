"""The wrap-up pipeline on task.Clock over the in-memory LiveVox: dispositions, term codes, AIA, contacts, transfers, failures."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from lvgateway.calls.disposition import disposition_from_json
from lvgateway.calls.errors import (
    AlreadyWrappedUpError,
    CallStoreUnavailableError,
    UnknownCallError,
)
from lvgateway.calls.outcome import EventKind
from lvgateway.calls.records import CallState, Disposition, InviteFacts, StepState
from lvgateway.calls.testing import aia_config, wrapup_config
from lvgateway.config.model import END_REASONS
from lvgateway.livevox.aia import AiaClient
from lvgateway.livevox.errors import (
    LiveVoxClientError,
    LiveVoxServerError,
    LiveVoxTimeoutError,
    NotFoundError,
    SessionExpiredError,
)
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.testing import RecordingResource, failure_of, result_of, stub_http
from tests.calls_support import DONE_ID, PAYMENT_ID, TRANSFER_ID, Harness, run


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    """A call store with three READY agents over the in-memory LiveVox."""
    return Harness(str(tmp_path))


def metric(h: Harness, name: str, **labels: str) -> float:
    """Return a sample of the harness's registry (0 when absent)."""
    value = h.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- defaults and the three disposition paths -----------------------------------------------

DEFAULT_IDS = {
    "caller_hangup": DONE_ID,
    "vendor_hangup": DONE_ID,
    "setup_failed": TRANSFER_ID,
    "timeout": TRANSFER_ID,
    "gateway_failure": TRANSFER_ID,
}


#: An event that ends a connected call with each end reason.
ENDING_EVENTS = {
    "caller_hangup": EventKind.LIVEVOX_HANGUP,
    "vendor_hangup": EventKind.VENDOR_HANGUP,
    "setup_failed": None,  # only while dialling: see the outcome table
    "timeout": EventKind.DURATION_TIMEOUT,
    "gateway_failure": EventKind.CRASH_RECOVERY,
}


@pytest.mark.parametrize("reason", END_REASONS)
def test_default_term_code_for_each_end_reason(h: Harness, reason: str) -> None:
    """With no disposition, each end reason's configured default term code is saved."""
    kind = ENDING_EVENTS[reason]
    record = h.place() if kind is not None else h.place(connect=False)
    run(h.source.ends(record.call_id, kind or EventKind.SETUP_FAILED))
    [saved] = h.saved()
    assert saved["term_code_id"] == DEFAULT_IDS[reason]
    done = h.record(record.call_id)
    assert saved["call_transaction_id"] == done.call_transaction_id is not None
    assert saved["call_session_id"] == record.call_session_id
    assert saved["phone_dialed"] == "9195550100"
    assert saved["move_agent_to_not_ready"] is False
    done = h.record(record.call_id)
    assert done.state is CallState.DONE and done.end_reason == reason
    assert h.pool.wrapups_done() == {record.call_id: False}
    assert metric(h, "lvgateway_calls_ended_total", reason=reason) == 1


def test_disposition_from_the_vendors_bye_headers(h: Harness) -> None:
    """Headers on the vendor's BYE choose the term code and fill the AIA; the LiveVox leg is hung up."""
    record = h.place()
    run(
        h.source.vendor_hangs_up(
            record.call_id,
            {
                "X-LV-Term-Code": "AI Payment Taken",
                "X-LV-Call-Outcome": "paid",
                "X-LV-Other3": "amount=10",
            },
        )
    )
    assert [s["term_code_id"] for s in h.saved()] == [PAYMENT_ID]
    [aia] = h.aia.posted  # type: ignore[union-attr]
    assert (aia.call_outcome, aia.other, aia.next_action) == ("paid", {3: "amount=10"}, "done")
    assert aia.lvresult is None and aia.transaction_id == record.call_transaction_id
    assert h.source.hang_ups == [(record.call_id, "vendor_hangup")]
    assert h.record(record.call_id).disposition_source == "bye"


def test_refer_transfers_term_code_then_end(h: Harness) -> None:
    """A REFER posts the AIA and the transfer term code while the LiveVox leg is up, then hangs it up."""
    seen: list[tuple[str, int, int]] = []

    def hang_up(call_id: str, reason: str, dialog: object = None) -> Deferred[None]:
        seen.append((reason, len(h.saved()), len(h.aia.posted)))  # type: ignore[union-attr]
        return _fired()

    h.source.hang_up_livevox = hang_up  # type: ignore[method-assign]
    record = h.place()
    run(h.source.vendor_refers(record.call_id, {"X-LV-Call-Outcome": "wants a human"}))
    assert [s["term_code_id"] for s in h.saved()] == [TRANSFER_ID]
    assert seen == [("transfer", 1, 1)]
    [aia] = h.aia.posted  # type: ignore[union-attr]
    assert aia.next_action == "transfer" and aia.call_outcome == "wants a human"
    done = h.record(record.call_id)
    assert done.transfer and done.hangup is StepState.DONE
    assert done.disposition_source == "refer"


def _fired() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    d.callback(None)
    return d


def test_transfer_end_then_term_code(tmp_path: Path) -> None:
    """With transfer_order end_then_term_code, the leg is hung up after the AIA and before the term code."""
    h = Harness(str(tmp_path), config=wrapup_config(transfer_order="end_then_term_code"))
    seen: list[tuple[int, int]] = []

    def hang_up(call_id: str, reason: str, dialog: object = None) -> Deferred[None]:
        seen.append((len(h.saved()), len(h.aia.posted)))  # type: ignore[union-attr]
        return _fired()

    h.source.hang_up_livevox = hang_up  # type: ignore[method-assign]
    record = h.place()
    run(h.source.vendor_refers(record.call_id))
    assert seen == [(0, 1)]
    assert [s["term_code_id"] for s in h.saved()] == [TRANSFER_ID]


def test_transfer_hangs_up_when_its_time_runs_out(h: Harness) -> None:
    """A transfer whose term code is held ends the LiveVox leg at transfer_timeout, then finishes."""
    gate = h.livevox.gate("save_term_code")
    record = h.place()
    run(h.source.vendor_refers(record.call_id))
    assert h.source.hang_ups == []
    h.clock.advance(h.config.transfer_timeout - 0.1)
    assert h.source.hang_ups == []
    h.clock.advance(0.2)
    assert h.source.hang_ups == [(record.call_id, "transfer")]
    gate.callback(None)
    assert h.record(record.call_id).state is CallState.DONE
    assert h.source.hang_ups == [(record.call_id, "transfer")]


def test_json_disposition_during_the_call(h: Harness) -> None:
    """A JSON disposition posted during the call is used at its end; a transfer posted beforehand transfers on BYE."""
    record = h.place()
    body = {"next_action": "transfer", "call_outcome": "billing", "other": {"1": "x"}}
    disposition = disposition_from_json(json.dumps(body))
    result_of(h.calls.set_disposition(record.call_id, disposition, "api"))
    run(h.source.vendor_hangs_up(record.call_id))
    assert [s["term_code_id"] for s in h.saved()] == [TRANSFER_ID]
    assert h.source.hang_ups == [(record.call_id, "transfer")]
    [aia] = h.aia.posted  # type: ignore[union-attr]
    assert (aia.next_action, aia.call_outcome, aia.other) == ("transfer", "billing", {1: "x"})
    assert h.record(record.call_id).disposition_source == "api"


def test_disposition_after_the_end_or_for_no_call_is_refused(h: Harness) -> None:
    """A disposition for an unknown call, or once the call has ended, is refused."""
    assert isinstance(
        failure_of(h.calls.set_disposition("nope", Disposition(), "api")), UnknownCallError
    )
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    error = failure_of(h.calls.set_disposition(record.call_id, Disposition(), "api"))
    assert isinstance(error, AlreadyWrappedUpError) and error.state == "done"


def test_a_second_end_changes_nothing(h: Harness) -> None:
    """The SIP part may report an end twice (BYE crossing BYE): one wrap-up, one term code."""
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    run(h.source.vendor_hangs_up(record.call_id, {"X-LV-Term-Code": "transfer"}))
    assert [s["term_code_id"] for s in h.saved()] == [DONE_ID]


# -- term codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("named", "expected"),
    [("transfer", TRANSFER_ID), ("ai payment taken", PAYMENT_ID), (PAYMENT_ID, PAYMENT_ID)],
)
def test_term_code_by_config_name_livevox_name_or_id(h: Harness, named: str, expected: str) -> None:
    """A term code named by config name, LiveVox name (any case) or id resolves to its id."""
    record = h.place()
    run(h.source.vendor_hangs_up(record.call_id, {"X-LV-Term-Code": named}))
    assert [s["term_code_id"] for s in h.saved()] == [expected]
    assert not h.record(record.call_id).fallback_used


def test_unknown_term_code_falls_back_with_an_error(h: Harness) -> None:
    """An unknown name saves the fallback term code and logs an error naming it."""
    record = h.place()
    with capturedLogs() as events:
        run(h.source.vendor_hangs_up(record.call_id, {"X-LV-Term-Code": "Promise To Pay"}))
    assert [s["term_code_id"] for s in h.saved()] == [DONE_ID]
    done = h.record(record.call_id)
    assert done.fallback_used and done.term_code_name == "Promise To Pay"
    errors = [e for e in events if e.get("requested") == "Promise To Pay"]
    assert errors and errors[0]["log_level"].name == "error"
    assert errors[0]["call_id"] == record.call_id


def test_an_unknown_name_refetches_the_catalogue_once(h: Harness) -> None:
    """A term code added at LiveVox after the catalogue was fetched is found on a refetch."""
    h.clock.advance(120)
    h.livevox.add_term_code("1234567", "101416231", "Callback Later")
    record = h.place()
    run(h.source.vendor_hangs_up(record.call_id, {"X-LV-Term-Code": "Callback Later"}))
    assert [s["term_code_id"] for s in h.saved()] == ["101416231"]


# -- the AIA ----------------------------------------------------------------------------------


def test_aia_body_field_names_follow_the_config(tmp_path: Path) -> None:
    """The AIA post carries the guide's fields, each under the name the client's spec gives it."""
    resource = RecordingResource(lambda r: (200, {"ok": True}))
    http = stub_http(resource)
    config = aia_config(
        "http://aia.test/result",
        token="aia-token",
        field_names={"lvresult": "lvResult", "Other1": "intent", "transactionId": "txn"},
    )
    h0 = Harness(str(tmp_path), aia=None, bring_in=False)
    client = AiaClient(config, h0.clock, http.client, LiveVoxMetrics(h0.registry))
    h0.stop()
    h = Harness(str(tmp_path), aia=client, livevox=h0.livevox, clock=h0.clock)
    record = h.place()
    run(
        h.source.vendor_hangs_up(
            record.call_id,
            {"X-LV-Result": "AGENT - Completed", "X-LV-Other1": "billing", "X-LV-Account": "77"},
        )
    )
    [request] = resource.requests
    assert request.header("X-AIA-Token") == "aia-token"
    assert request.json() == {
        "txn": record.call_transaction_id,
        "sessionId": record.call_session_id,
        "ani": "+19195550100",
        "accountNumber": "77",
        "nextAction": "done",
        "lvResult": "AGENT - Completed",
        "intent": "billing",
    }


def test_without_aia_the_step_is_skipped(tmp_path: Path) -> None:
    """With no [aia] the AIA step is skipped and the term code still goes."""
    h = Harness(str(tmp_path), aia=None)
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    done = h.record(record.call_id)
    assert done.aia is StepState.SKIPPED and done.state is CallState.DONE


# -- contacts ---------------------------------------------------------------------------------


def contact_disposition(**fields: Any) -> Disposition:
    """A JSON disposition carrying contact changes."""
    return disposition_from_json(json.dumps(fields))


def test_contact_changes_update_a_known_account(h: Harness) -> None:
    """Contact changes for an account LiveVox knows are sent as an update, before the term code."""
    h.livevox.contacts["1001"] = {"account": "1001", "person": {"firstName": "John"}}
    record = h.place()
    change = contact_disposition(contact={"person": {"firstName": "Jane"}})
    result_of(h.calls.set_disposition(record.call_id, change, "api"))
    run(h.source.caller_hangs_up(record.call_id))
    assert h.calls_made("update_contact") == [
        {"account": "1001", "details": {"person": {"firstName": "Jane"}}}
    ]
    assert h.calls_made("create_contact") == []
    names = [name for name, _ in h.livevox.log]
    assert names.index("update_contact") < names.index("save_term_code")
    assert h.record(record.call_id).contact is StepState.DONE


def test_contact_created_when_the_account_is_unknown_and_asked_for(h: Harness) -> None:
    """An account LiveVox gave no record of is created when the disposition asks for it."""
    record = h.place()
    h.livevox.contacts.clear()
    # The caller was not a LiveVox-validated consumer: LiveVox gave no account.
    h.calls.book.update(record.call_id, account=None)
    change = contact_disposition(account="2002", contact={"city": "Cary"}, create_contact=True)
    result_of(h.calls.set_disposition(record.call_id, change, "api"))
    run(h.source.caller_hangs_up(record.call_id))
    assert h.calls_made("create_contact") == [{"details": {"account": "2002", "city": "Cary"}}]
    assert h.calls_made("update_contact") == []
    assert h.livevox.contacts["2002"] == {"account": "2002", "city": "Cary"}


def test_contact_update_not_found_creates_when_config_allows(tmp_path: Path) -> None:
    """An update answered 404 becomes a create under create_missing_contacts."""
    h = Harness(str(tmp_path), config=wrapup_config(create_missing_contacts=True))
    record = h.place()
    result_of(
        h.calls.set_disposition(record.call_id, contact_disposition(contact={"city": "Cary"}))
    )
    run(h.source.caller_hangs_up(record.call_id))
    assert [n for n, _ in h.livevox.log if "contact" in n] == ["update_contact", "create_contact"]
    assert h.livevox.contacts["1001"] == {"account": "1001", "city": "Cary"}
    assert h.record(record.call_id).state is CallState.DONE


def test_contact_create_that_already_exists_updates(h: Harness) -> None:
    """Creating an account that turns out to exist updates it instead (already-exists is no failure)."""
    h.livevox.contacts["2002"] = {"account": "2002"}
    record = h.place()
    h.calls.book.update(record.call_id, account=None)
    change = contact_disposition(account="2002", contact={"city": "Cary"}, create_contact=True)
    result_of(h.calls.set_disposition(record.call_id, change))
    run(h.source.caller_hangs_up(record.call_id))
    assert h.livevox.contacts["2002"] == {"account": "2002", "city": "Cary"}
    assert h.record(record.call_id).state is CallState.DONE


def test_contact_not_found_without_create_is_a_dead_letter_after_the_term_code(
    h: Harness,
) -> None:
    """A contact step that fails for good still lets the term code go, NOT READY, and dead-letters the record."""
    record = h.place()
    result_of(h.calls.set_disposition(record.call_id, contact_disposition(contact={"a": "b"})))
    run(h.source.caller_hangs_up(record.call_id))
    [saved] = h.saved()
    assert saved["move_agent_to_not_ready"] is True
    dead = h.record(record.call_id)
    assert dead.state is CallState.DEAD and dead.contact is StepState.FAILED
    assert dead.term_code is StepState.DONE
    assert h.pool.wrapups_done() == {}
    assert metric(h, "lvgateway_wrapup_dead_letters") == 1
    assert metric(h, "lvgateway_wrapup_steps_total", step="contact", outcome="failed") == 1


# -- LiveVox's ids ------------------------------------------------------------------------------


def test_ids_found_by_status_when_the_invite_has_no_transaction_id(h: Harness) -> None:
    """At acceptance the agent's status gives the transaction id, account and number dialled."""
    record = h.place()
    assert h.calls_made("agent_status")
    found = h.record(record.call_id)
    assert found.call_transaction_id == "147516594301"
    assert found.ids_source == "status"
    assert (found.account, found.phone_dialed) == ("1001", "9195550100")


def test_transaction_header_is_used_and_the_session_id_still_confirmed(h: Harness) -> None:
    """An INVITE with X-transaction-id keeps that id, and is still confirmed by its Session-ID in one read."""
    record = h.place(transaction_header=True)
    assert record.call_transaction_id == "147516594301" and record.ids_source == "headers"
    assert len(h.calls_made("agent_status")) == 1, "headers can be forged: one read confirms"
    h.clock.advance(h.config.confirm_within + 1)
    assert len(h.calls_made("agent_status")) == 1, "confirmed: no more reads"
    run(h.source.caller_hangs_up(record.call_id))
    [saved] = h.saved()
    assert saved["call_transaction_id"] == "147516594301"
    assert saved["phone_dialed"] == "9195550100"


def test_failed_id_lookup_is_retried_at_wrap_up(h: Harness) -> None:
    """When every look-up at acceptance fails, the call stands, and the wrap-up finds the ids before the term code."""
    polls = h.config.confirm_polls
    h.livevox.fail_next("agent_status", LiveVoxServerError("agent_status", 503), times=polls)
    record = h.place()
    h.clock.pump([1.0] * int(h.config.confirm_within + 2))
    assert len(h.calls_made("agent_status")) == polls
    assert h.record(record.call_id).state is CallState.CONNECTED, "an outage ends no call"
    assert h.record(record.call_id).call_transaction_id is None
    run(h.source.caller_hangs_up(record.call_id))
    [saved] = h.saved()
    assert saved["call_transaction_id"] == "147516594301"
    assert h.record(record.call_id).ids_source == "status"


def test_a_call_livevox_never_routed_is_ended_and_nothing_posted(h: Harness) -> None:
    """The agent's status shows no such call after confirm_within: both legs end, nothing is posted, the agent is free."""
    h.rogue = True
    record = h.place()
    h.clock.pump([0.5] * int(2 * h.config.confirm_within - 2))
    assert h.record(record.call_id).is_live, "not before the deciding read"
    h.clock.pump([0.5] * 6)
    assert [event.kind for _, event in h.source.told] == [EventKind.NOT_ROUTED]
    assert h.source.hang_ups == [(record.call_id, "not_routed")], "the SIP part ends the legs"
    closed = h.record(record.call_id)
    assert (closed.state, closed.end_reason) == (CallState.DONE, "not_routed")
    assert h.saved() == [] and h.aia is not None and h.aia.posted == []  # type: ignore[attr-defined]
    assert h.pool.wrapups_done() == {record.call_id: False}
    assert metric(h, "lvgateway_calls_ended_total", reason="not_routed") == 1
    assert len(h.calls_made("agent_status")) == h.config.confirm_polls
    h.rogue = False
    routed = h.place()
    run(h.source.caller_hangs_up(routed.call_id))
    assert [s["call_transaction_id"] for s in h.saved()] == [
        h.record(routed.call_id).call_transaction_id
    ]


def test_an_unchanged_status_never_ends_a_call(h: Harness) -> None:
    """A status that says nothing (no body) is no proof: the stranger's call stands until it ends."""
    h.rogue = True
    h.livevox.unchanged_status = True
    record = h.place()
    h.clock.pump([1.0] * int(h.config.confirm_within + 2))
    assert h.source.told == [] and h.record(record.call_id).is_live


def test_call_closed_at_livevox_without_ids_is_skipped(h: Harness) -> None:
    """A call LiveVox closed on its own (no ids, not on the line) needs no term code: skipped, agent freed."""
    polls = h.config.confirm_polls
    h.livevox.fail_next("agent_status", LiveVoxServerError("agent_status", 503), times=polls)
    record = h.place()
    h.clock.pump([1.0] * int(h.config.confirm_within + 2))
    h.livevox.agent("AIVA1").state = "READY"
    h.livevox.agent("AIVA1").call = None
    run(h.source.caller_hangs_up(record.call_id))
    assert h.saved() == []
    done = h.record(record.call_id)
    assert done.state is CallState.DONE and done.term_code is StepState.SKIPPED
    assert h.pool.wrapups_done() == {record.call_id: False}


# -- failures -------------------------------------------------------------------------------------


def test_expired_session_logs_in_again_and_retries_at_once(h: Harness) -> None:
    """A 401 on the term code tells the pool, which logs in again; the save is retried without delay."""
    h.livevox.fail_next("save_term_code", SessionExpiredError("term_code_save", 401))
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    assert [e[0] for e in h.pool.events if e[0] == "session_expired"] == ["session_expired"]
    assert len(h.saved()) == 1
    assert h.record(record.call_id).state is CallState.DONE


def test_unavailable_livevox_is_retried_with_backoff(h: Harness) -> None:
    """5xx answers make the wrap-up wait 1, 2, 4 s (half to all of it, jittered) and try again."""
    h.livevox.fail_next("save_term_code", LiveVoxServerError("term_code_save", 503), times=3)
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    waiting = h.record(record.call_id)
    assert waiting.state is CallState.WRAPUP and waiting.attempts == 1
    assert metric(h, "lvgateway_wrapup_queue_depth") == 1
    h.clock.advance(10)
    assert metric(h, "lvgateway_wrapup_oldest_age_seconds") == 10
    h.clock.advance(0.75)  # 0.75 (1 s jittered at 0.5)
    assert h.record(record.call_id).attempts == 2
    h.clock.advance(1.5)
    h.clock.advance(3.0)
    done = h.record(record.call_id)
    assert done.state is CallState.DONE and done.attempts == 3
    assert metric(h, "lvgateway_wrapup_steps_total", step="term_code", outcome="retried") == 3
    assert metric(h, "lvgateway_wrapup_queue_depth") == 0


def test_past_max_age_is_a_dead_letter(tmp_path: Path) -> None:
    """A wrap-up still failing max_age after the call's end becomes a dead letter; the agent is not freed."""
    h = Harness(str(tmp_path), config=wrapup_config(max_age=120.0))
    h.livevox.fail_next("save_term_code", LiveVoxServerError("term_code_save", 503), times=1000)
    record = h.place()
    with capturedLogs() as events:
        run(h.source.caller_hangs_up(record.call_id))
        h.clock.pump([30.0] * 5)
    dead = h.record(record.call_id)
    assert dead.state is CallState.DEAD and "max_age" in (dead.last_error or "")
    assert h.pool.wrapups_done() == {}
    assert metric(h, "lvgateway_wrapup_dead_lettered_total") == 1
    assert any("dead letter" in str(e.get("log_format")) for e in events)


def test_flush_retries_waiting_wrapups_now(h: Harness) -> None:
    """The drain's flush step does not wait out a backoff: it retries at once."""
    h.livevox.fail_next("save_term_code", LiveVoxServerError("term_code_save", 503), times=1)
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    assert h.record(record.call_id).state is CallState.WRAPUP
    flushed = h.calls.flush()
    assert flushed.called
    assert h.record(record.call_id).state is CallState.DONE


def test_pool_decides_move_to_not_ready(h: Harness) -> None:
    """moveAgentToNotReady is what the pool says for that agent, and wrapup_done reports it."""
    h.pool.not_ready_after_call.add("AIVA2")
    record = h.place("AIVA2")
    run(h.source.caller_hangs_up(record.call_id))
    assert [s["move_agent_to_not_ready"] for s in h.saved()] == [True]
    assert h.pool.wrapups_done() == {record.call_id: True}


# -- at least once ----------------------------------------------------------------------------------


class AnswerLost:
    """Wraps the fake LiveVox's save so that it applies the term code, then fails as if its answer was lost."""

    def __init__(self, h: Harness, error: Exception) -> None:
        self.real = h.livevox.save_term_code
        self.error = error
        self.calls = 0
        h.livevox.save_term_code = self.save  # type: ignore[method-assign]

    def save(self, *args: Any, **kwargs: Any) -> Deferred[None]:
        self.calls += 1
        d = self.real(*args, **kwargs)
        if self.calls == 1:
            result_of(d)
            failed: Deferred[None] = Deferred()
            failed.errback(self.error)
            return failed
        return d


def test_lost_answer_is_checked_not_resent(h: Harness) -> None:
    """A term code whose answer was lost is found applied on the agent's status and not sent again."""
    lost = AnswerLost(h, LiveVoxTimeoutError("term_code_save", message="timed out"))
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    h.clock.advance(1)
    assert lost.calls == 1 and len(h.saved()) == 1
    done = h.record(record.call_id)
    assert done.state is CallState.DONE
    assert metric(h, "lvgateway_wrapup_steps_total", step="term_code", outcome="checked") == 1


def test_refused_repeat_of_an_applied_term_code_counts_as_done(h: Harness) -> None:
    """A 4xx on a term code whose call LiveVox no longer holds means an earlier attempt landed."""
    AnswerLost(h, LiveVoxClientError("term_code_save", 400, 400, "no such call", attempts=2))
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    assert h.record(record.call_id).state is CallState.DONE
    assert len(h.saved()) == 1


def test_unsent_term_code_found_sent_is_sent_again(h: Harness) -> None:
    """A term code marked sent whose call LiveVox still holds (the request never left) is sent again."""
    h.livevox.fail_next("save_term_code", LiveVoxTimeoutError("term_code_save"), times=1)
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    assert h.record(record.call_id).term_code is StepState.SENT
    h.clock.advance(1)
    assert len(h.saved()) == 1
    assert h.record(record.call_id).state is CallState.DONE


# -- dead letters: re-drive and dismiss ----------------------------------------------------------------


def dead_by_refusal(h: Harness) -> str:
    """Make one call whose term code LiveVox refuses for good; return its id."""
    h.livevox.fail_next(
        "save_term_code", LiveVoxClientError("term_code_save", 400, 400, "bad termCodeId")
    )
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    dead = h.record(record.call_id)
    assert dead.state is CallState.DEAD and dead.term_code is StepState.FAILED
    assert h.pool.wrapups_done() == {}
    return record.call_id


def test_redrive_of_a_dead_letter(h: Harness) -> None:
    """Re-driving a dead letter sends its failed step again; the agent is freed when it lands."""
    call_id = dead_by_refusal(h)
    redriven = result_of(h.calls.redrive(call_id))
    assert redriven.call_id == call_id
    assert h.record(call_id).state is CallState.DONE
    assert len(h.saved()) == 1
    assert h.pool.wrapups_done() == {call_id: False}
    assert metric(h, "lvgateway_wrapup_dead_letters") == 0


def test_dismiss_of_a_dead_letter(h: Harness) -> None:
    """Dismissing a dead letter gives up on it and hands its agent back to the pool, held NOT READY."""
    call_id = dead_by_refusal(h)
    result_of(h.calls.dismiss(call_id))
    assert h.record(call_id).state is CallState.DISMISSED
    assert h.saved() == []
    assert [e[:3] for e in h.pool.events if e[0] == "dismissed"] == [
        ("dismissed", h.record(call_id).agent, call_id)
    ]


def test_redrive_or_dismiss_of_a_live_record_is_refused(h: Harness) -> None:
    """Only dead letters can be re-driven or dismissed."""
    record = h.place()
    for action in (h.calls.redrive, h.calls.dismiss):
        error = failure_of(action(record.call_id))
        assert type(error).__name__ == "NotDeadLetterError"
    assert isinstance(failure_of(h.calls.redrive("nope")), UnknownCallError)


def test_redrive_of_a_failed_data_step(tmp_path: Path) -> None:
    """An AIA refused for good is re-sent on re-drive; the term code is not sent twice."""
    h = Harness(str(tmp_path))
    h.aia.failures.append(NotFoundError("aia_post", 404))  # type: ignore[union-attr]
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    dead = h.record(record.call_id)
    assert (dead.state, dead.aia, dead.term_code) == (
        CallState.DEAD,
        StepState.FAILED,
        StepState.DONE,
    )
    assert h.saved()[0]["move_agent_to_not_ready"] is True
    result_of(h.calls.redrive(record.call_id))
    assert h.record(record.call_id).state is CallState.DONE
    assert len(h.aia.posted) == 1 and len(h.saved()) == 1  # type: ignore[union-attr]
    assert h.pool.wrapups_done() == {record.call_id: True}


def test_query_by_since_and_state(h: Harness) -> None:
    """Records are listed by the time they last changed and by state, settled and unsettled alike."""
    first = h.place("AIVA1")
    run(h.source.caller_hangs_up(first.call_id))
    h.clock.advance(10)
    cut = h.clock.seconds()
    second = h.place("AIVA2")
    assert [r.call_id for r in result_of(h.calls.query())] == [first.call_id, second.call_id]
    assert [r.call_id for r in result_of(h.calls.query(since=cut))] == [second.call_id]
    done = result_of(h.calls.query(states=[CallState.DONE]))
    assert [r.call_id for r in done] == [first.call_id]


def test_accept_is_refused_when_the_record_cannot_be_written(h: Harness) -> None:
    """A call whose record cannot be committed is refused (SIP answers 503) and leaves no record behind."""
    trigger = "CREATE TRIGGER no BEFORE INSERT ON calls BEGIN SELECT RAISE(ABORT, 'disk'); END"
    result_of(h.store.run(lambda c: c.execute(trigger)))
    invite = InviteFacts("AIVA1", "+18990000001", call_session_id="U1@x")
    assert isinstance(failure_of(h.calls.accept(invite)), sqlite3.IntegrityError)
    assert h.calls.book.records() == [] and h.pool.events == []
    h.stop()
    assert isinstance(failure_of(h.calls.accept(invite)), CallStoreUnavailableError)
