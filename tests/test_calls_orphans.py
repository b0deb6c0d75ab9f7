"""Dialogs kept for a restart: noted on live calls, and at start-up the legs of calls found live ended before their wrap-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from lvgateway.calls.blocking import InlineRunner
from lvgateway.calls.book import CallBook
from lvgateway.calls.errors import UnknownCallError
from lvgateway.calls.interfaces import ICallLegs, ICalls
from lvgateway.calls.metrics import CallMetrics
from lvgateway.calls.records import CallState, InviteFacts, StepState
from lvgateway.calls.recovery import recover
from lvgateway.calls.store import CallStore
from lvgateway.calls.testing import FakeCallLegs, FakeCalls, StandInPool
from lvgateway.livevox.errors import LiveVoxClientError
from lvgateway.livevox.testing import failure_of, result_of
from tests.calls_support import Harness, run


def dialog(call_id: str, cseq: int = 100) -> dict[str, Any]:
    """One leg's dialog as the SIP part writes it."""
    return {
        "call_id": call_id,
        "local_tag": "ours",
        "remote_tag": "theirs",
        "local_uri": "<sip:+18990000001@10.0.0.5:5070>",
        "remote_uri": "<sip:+19192109237@10.0.0.9>",
        "remote_target": "sip:lv@10.0.0.9:5060",
        "route_set": ["<sip:10.0.0.1;lr>"],
        "local_cseq": cseq,
        "next_hop_host": "10.0.0.1",
        "next_hop_port": 5060,
        "next_hop_transport": "udp",
    }


def test_note_dialogs_keeps_each_leg_durably(tmp_path: Path) -> None:
    """Legs noted one by one are merged and committed; a repeat writes nothing."""
    h = Harness(str(tmp_path))
    call = h.place("AIVA1")
    noted = result_of(h.calls.note_dialogs(call.call_id, {"livevox": dialog("lv-1")}))
    assert noted.dialogs == {"livevox": dialog("lv-1")}
    both = result_of(h.calls.note_dialogs(call.call_id, {"vendor": dialog("v-1")}))
    assert both.dialogs == {"livevox": dialog("lv-1"), "vendor": dialog("v-1")}
    assert result_of(h.store.get(call.call_id)).dialogs == both.dialogs
    rows = h.store.rows_written
    again = result_of(h.calls.note_dialogs(call.call_id, {"vendor": dialog("v-1")}))
    assert again == both and h.store.rows_written == rows
    later = result_of(h.calls.note_dialogs(call.call_id, {"vendor": dialog("v-1", cseq=101)}))
    assert later.dialogs["vendor"]["local_cseq"] == 101
    assert result_of(h.store.get(call.call_id)).dialogs["vendor"]["local_cseq"] == 101


def test_note_dialogs_refuses_strangers_and_leaves_ended_calls_alone(tmp_path: Path) -> None:
    """An unknown leg is a ValueError, an unknown call UnknownCallError; a call in wrap-up is not changed."""
    h = Harness(str(tmp_path))
    call = h.place("AIVA1")
    assert isinstance(
        failure_of(h.calls.note_dialogs(call.call_id, {"caller": dialog("x")})), ValueError
    )
    assert isinstance(
        failure_of(h.calls.note_dialogs("nope", {"livevox": dialog("x")})), UnknownCallError
    )
    run(h.source.caller_hangs_up(call.call_id))
    ended = result_of(h.calls.note_dialogs(call.call_id, {"livevox": dialog("lv-1")}))
    assert ended.dialogs == {}


def test_the_fake_store_notes_dialogs_like_the_real_one() -> None:
    """FakeCalls merges legs of a live record, keeps every note, and refuses unknown legs."""
    calls = FakeCalls()
    assert verifyObject(ICalls, calls)
    record = result_of(calls.accept(InviteFacts(agent="AIVA1", dnis="+18990000001")))
    result_of(calls.note_dialogs(record.call_id, {"livevox": dialog("lv-1")}))
    merged = result_of(calls.note_dialogs(record.call_id, {"vendor": dialog("v-1")}))
    assert set(merged.dialogs) == {"livevox", "vendor"}
    assert [legs for _, legs in calls.noted] == [
        {"livevox": dialog("lv-1")},
        {"vendor": dialog("v-1")},
    ]
    assert isinstance(failure_of(calls.note_dialogs(record.call_id, {"x": {}})), ValueError)
    assert isinstance(failure_of(calls.note_dialogs("nope", {})), UnknownCallError)


class Restart:
    """The store of a stopped gateway, opened again for a recovery run by hand."""

    def __init__(self, before: Harness, tmp_path: Path) -> None:
        before.stop()
        self.clock = before.clock
        self.store = CallStore(str(tmp_path), InlineRunner())
        result_of(self.store.open())
        self.book = CallBook(self.store, self.clock)
        self.pool = StandInPool(before.livevox, before.agent_configs, self.clock)
        self.metrics = CallMetrics(
            CollectorRegistry(),
            queue_depth=lambda: 0,
            oldest_age=lambda: 0.0,
            dead_letters=lambda: 0,
        )
        self.config = before.config
        self.legs = FakeCallLegs()

    def recover(self, legs: ICallLegs | None) -> Deferred[list[str]]:
        """Run recovery with ``legs`` as the SIP part."""
        return Deferred.fromCoroutine(
            recover(self.book, self.pool, self.clock, self.metrics, self.config, legs)
        )


def test_recovery_ends_the_legs_of_live_calls_before_their_wrapup(tmp_path: Path) -> None:
    """Each live call with dialogs gets its legs ended (Reason 500) before its record goes to wrap-up."""
    h1 = Harness(str(tmp_path))
    both = h1.place("AIVA1")
    result_of(
        h1.calls.note_dialogs(both.call_id, {"livevox": dialog("lv-1"), "vendor": dialog("v-1")})
    )
    livevox_only = h1.place("AIVA2")
    result_of(h1.calls.note_dialogs(livevox_only.call_id, {"livevox": dialog("lv-2")}))
    unnoted = h1.place("AIVA3")
    restart = Restart(h1, tmp_path)
    restart.legs.ending = Deferred()
    recovered = restart.recover(restart.legs)
    asked = {
        call_id: (dialogs, cause, text) for call_id, dialogs, cause, text in restart.legs.orphans
    }
    assert asked == {
        both.call_id: (
            {"livevox": dialog("lv-1"), "vendor": dialog("v-1")},
            500,
            "gateway restarted",
        ),
        livevox_only.call_id: ({"livevox": dialog("lv-2")}, 500, "gateway restarted"),
    }
    # The BYEs are out and unanswered: nothing resumes, the records are still live.
    assert not recovered.called
    assert result_of(restart.store.get(both.call_id)).state is CallState.CONNECTED
    restart.legs.ending.callback(None)
    resumed = result_of(recovered)
    assert sorted(resumed) == sorted([both.call_id, livevox_only.call_id, unnoted.call_id])
    for call_id in resumed:
        stored = result_of(restart.store.get(call_id))
        assert (stored.state, stored.end_reason, stored.hangup) == (
            CallState.WRAPUP,
            "gateway_failure",
            StepState.SKIPPED,
        )
        assert stored.dialogs == {}


def test_recovery_without_a_sip_part_leaves_the_legs_and_says_so(tmp_path: Path) -> None:
    """With no ICallLegs, calls found live are still wrapped up; their dialogs are dropped."""
    h1 = Harness(str(tmp_path))
    call = h1.place("AIVA1")
    result_of(h1.calls.note_dialogs(call.call_id, {"livevox": dialog("lv-1")}))
    restart = Restart(h1, tmp_path)
    assert result_of(restart.recover(None)) == [call.call_id]
    assert result_of(restart.store.get(call.call_id)).state is CallState.WRAPUP


def test_recovery_goes_on_when_the_sip_part_fails(tmp_path: Path) -> None:
    """A failing end_orphaned is logged; the wrap-ups resume all the same."""

    class BrokenLegs(FakeCallLegs):
        def end_orphaned(self, *args: Any, **kwargs: Any) -> Deferred[None]:
            raise RuntimeError("the SIP part fell over")

    h1 = Harness(str(tmp_path))
    call = h1.place("AIVA1")
    result_of(h1.calls.note_dialogs(call.call_id, {"vendor": dialog("v-1")}))
    restart = Restart(h1, tmp_path)
    assert result_of(restart.recover(BrokenLegs())) == [call.call_id]


@pytest.mark.parametrize("state", [CallState.WRAPUP, CallState.DEAD])
def test_recovery_asks_nothing_for_calls_no_longer_live(tmp_path: Path, state: CallState) -> None:
    """A call already in wrap-up (or a dead letter) at the crash has no legs to end."""
    h1 = Harness(str(tmp_path))
    call = h1.place("AIVA1")
    result_of(h1.calls.note_dialogs(call.call_id, {"livevox": dialog("lv-1")}))
    if state is CallState.DEAD:
        h1.livevox.fail_next("save_term_code", LiveVoxClientError("term_code_save", 400, 400, "no"))
    else:
        h1.livevox.gate("save_term_code")  # LiveVox never answers: the wrap-up waits
    run(h1.source.caller_hangs_up(call.call_id))
    assert h1.record(call.call_id).state is state
    restart = Restart(h1, tmp_path)
    result_of(restart.recover(restart.legs))
    assert restart.legs.orphans == []
