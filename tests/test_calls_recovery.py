"""Start-up after a stop or a crash: live calls closed as gateway_failure, wrap-ups resumed, the pool gated."""

from __future__ import annotations

import json
from pathlib import Path

from lvgateway.calls.disposition import disposition_from_json
from lvgateway.calls.errors import UnknownCallError
from lvgateway.calls.records import CallState, StepState
from lvgateway.livevox.errors import LiveVoxClientError, LiveVoxServerError
from lvgateway.livevox.testing import failure_of, result_of
from tests.calls_support import DONE_ID, TRANSFER_ID, Harness, run


def restart(before: Harness, tmp_path: Path) -> Harness:
    """Stop ``before`` and start a new gateway on the same state, LiveVox and clock."""
    before.stop()
    return Harness(str(tmp_path), livevox=before.livevox, clock=before.clock, bring_in=False)


def test_live_calls_and_wrapups_are_recovered_at_start(tmp_path: Path) -> None:
    """Calls live at the stop go to a person (the transfer term code, whatever the vendor had said); one in flight is not sent twice."""
    h1 = Harness(str(tmp_path))
    live = h1.place("AIVA1")
    with_word = h1.place("AIVA2")
    word = disposition_from_json(json.dumps({"term_code": "AI Payment Taken"}))
    result_of(h1.calls.set_disposition(with_word.call_id, word, "api"))
    gate = h1.livevox.gate("save_term_code")
    in_flight = h1.place("AIVA3")
    run(h1.source.caller_hangs_up(in_flight.call_id))
    assert h1.record(in_flight.call_id).term_code is StepState.SENT
    h1.stop()
    # LiveVox applied the held term code; the gateway never heard its answer.
    gate.callback(None)
    del h1.livevox.gates["save_term_code"]
    assert len(h1.saved()) == 1

    h2 = Harness(str(tmp_path), livevox=h1.livevox, clock=h1.clock, bring_in=False)
    recovered = h2.calls.when_recovered()
    assert recovered.called
    by_call = {s["call_transaction_id"]: s["term_code_id"] for s in h2.saved()}
    assert by_call == {
        live.call_transaction_id: TRANSFER_ID,
        with_word.call_transaction_id: TRANSFER_ID,
        in_flight.call_transaction_id: DONE_ID,
    }
    assert len(h2.saved()) == 3
    for call_id in (live.call_id, with_word.call_id, in_flight.call_id):
        assert h2.record(call_id).state is CallState.DONE
    assert h2.record(live.call_id).end_reason == "gateway_failure"
    assert h2.record(in_flight.call_id).end_reason == "caller_hangup"
    events = [(e[0], e[2]) for e in h2.pool.events if e[0] != "session_expired"]
    for call_id in (live.call_id, with_word.call_id, in_flight.call_id):
        assert [name for name, c in events if c == call_id] == [
            "call_started",
            "call_ended",
            "wrapup_done",
        ]
    sample = h2.registry.get_sample_value
    assert sample("lvgateway_calls_ended_total", {"reason": "gateway_failure"}) == 2
    assert sample("lvgateway_wrapup_steps_total", {"step": "term_code", "outcome": "checked"}) == 1


def test_pool_waits_for_recovery(tmp_path: Path) -> None:
    """when_recovered fires only once LiveVox has every recovered call's term code."""
    h1 = Harness(str(tmp_path))
    h1.place("AIVA1")
    h1.livevox.fail_next("save_term_code", LiveVoxServerError("term_code_save", 503), times=3)
    h2 = restart(h1, tmp_path)
    recovered = h2.calls.when_recovered()
    assert not recovered.called
    h2.clock.pump([1.0] * 10)
    assert recovered.called
    assert len(h2.saved()) == 1


def test_no_record_means_recovered_at_once(tmp_path: Path) -> None:
    """An empty store is recovered as soon as it is open."""
    h = Harness(str(tmp_path))
    assert h.calls.when_recovered().called


def test_dead_letters_stay_dead_and_keep_their_agent_out(tmp_path: Path) -> None:
    """A dead letter survives a restart, does not hold recovery, and its agent stays in wrap-up at the pool."""
    h1 = Harness(str(tmp_path))
    h1.livevox.fail_next("save_term_code", LiveVoxClientError("term_code_save", 400, 400, "no"))
    record = h1.place()
    run(h1.source.caller_hangs_up(record.call_id))
    assert h1.record(record.call_id).state is CallState.DEAD
    h2 = restart(h1, tmp_path)
    assert h2.calls.when_recovered().called
    assert h2.record(record.call_id).state is CallState.DEAD
    assert [e[0] for e in h2.pool.events] == ["call_started", "call_ended"]
    assert h2.registry.get_sample_value("lvgateway_wrapup_dead_letters") == 1
    result_of(h2.calls.redrive(record.call_id))
    assert h2.record(record.call_id).state is CallState.DONE


def transfer_cut_by_a_stop(tmp_path: Path, dialog: dict[str, object] | None) -> tuple[Harness, str]:
    """A call the vendor REFERs, whose term code is in flight when the gateway stops; the restarted harness."""
    h1 = Harness(str(tmp_path))
    gate = h1.livevox.gate("save_term_code")
    record = h1.place()
    if dialog is not None:
        result_of(h1.calls.note_dialogs(record.call_id, {"livevox": dialog}))
    run(h1.source.vendor_refers(record.call_id))
    h1.stop()
    gate.callback(None)
    del h1.livevox.gates["save_term_code"]
    return restart(h1, tmp_path), record.call_id


def test_pending_transfer_hang_up_is_skipped_after_a_restart(tmp_path: Path) -> None:
    """A transfer cut by a stop, with no noted dialog: it resumes without asking SIP to end a leg it cannot reach."""
    h2, call_id = transfer_cut_by_a_stop(tmp_path, None)
    done = h2.record(call_id)
    assert (done.state, done.hangup) == (CallState.DONE, StepState.SKIPPED)
    assert h2.source.hang_ups == []


def test_pending_transfer_hang_up_ends_the_held_leg_from_its_dialog_after_the_term_code(
    tmp_path: Path,
) -> None:
    """A transfer cut by a crash: the customer's leg outlived it, so after the term code the SIP part ends it from its noted dialog."""
    dialog = {"call_id": "sip-1", "local_tag": "a", "remote_tag": "b", "cseq": 3}
    h2, call_id = transfer_cut_by_a_stop(tmp_path, dialog)
    done = h2.record(call_id)
    assert (done.state, done.hangup) == (CallState.DONE, StepState.DONE)
    assert h2.source.hang_ups == [(call_id, "transfer")]
    assert h2.source.dialogs_ended == [(call_id, dialog)]
    assert len(h2.saved()) == 1  # the transfer term code, saved before the hang-up


def test_finished_records_are_purged_after_retention(tmp_path: Path) -> None:
    """Finished records older than the retention are deleted at start and then hourly."""
    h1 = Harness(str(tmp_path))
    old = h1.place("AIVA1")
    run(h1.source.caller_hangs_up(old.call_id))
    h1.clock.advance(h1.config.retention - 1800)
    recent = h1.place("AIVA2")
    run(h1.source.caller_hangs_up(recent.call_id))
    h1.clock.advance(3600)
    assert isinstance(failure_of(h1.calls.lookup(old.call_id)), UnknownCallError)
    assert h1.record(recent.call_id).state is CallState.DONE
