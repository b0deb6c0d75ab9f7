"""Reconciliation: staggered status polls, and each kind of drift found, counted and repaired or reported."""

from __future__ import annotations

from twisted.logger import capturedLogs

from lvgateway.agents.interfaces import Refusal
from lvgateway.agents.reconcile import assess
from lvgateway.agents.state import Desired
from lvgateway.agents.testing import probe
from lvgateway.livevox.parsing import AgentStatus

from .test_agents_support import Rig, advance, rig

START = 1_000_000.0


def poll(r: Rig) -> None:
    """Advance past the next poll of a one-agent pool (every 300 s)."""
    advance(r.clock, 300, step=10)


def test_polls_are_staggered_and_skip_agents_on_a_call() -> None:
    """Four agents are polled 75 s apart, each every 300 s; an agent on a call is not polled."""
    r = rig(4)
    r.lv.dispatch("AIVA4")
    r.pool.call_started("AIVA4", "c4")
    advance(r.clock, 600, step=5)
    for i in range(3):
        times = [q.time - START for q in r.lv.ops("status", f"AIVA{i + 1}")]
        assert times == [75.0 * (i + 1), 75.0 * (i + 1) + 300]
    assert r.lv.count("status", "AIVA4") == 0


def test_an_agent_logged_out_by_a_supervisor_logs_in_again() -> None:
    """LOGOFF at LiveVox: drift logged_out, counted, and repaired by login, join and READY."""
    r = rig(1)
    r.lv.set_state("AIVA1", "LOGOFF")
    poll(r)
    assert [q.op for q in r.lv.ops()][-4:] == ["status", "login", "join", "ready"]
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"
    assert r.metric("lvgateway_agent_drifts_total", kind="logged_out") == 1
    assert r.metric("lvgateway_agent_relogins_total", cause="logged_out") == 1


def test_an_agent_taken_out_of_its_service_joins_again() -> None:
    """LOGON at LiveVox: drift not_joined, repaired by join and READY."""
    r = rig(1)
    r.lv.set_state("AIVA1", "LOGON")
    poll(r)
    assert [q.op for q in r.lv.ops()][-3:] == ["status", "join", "ready"]
    assert r.metric("lvgateway_agent_drifts_total", kind="not_joined") == 1
    assert r.lv.state_of("AIVA1") == "READY"


def test_an_agent_not_ready_at_livevox_is_readied() -> None:
    """NOT READY where the gateway thought READY: drift not_ready, repaired by READY."""
    r = rig(1)
    r.lv.set_state("AIVA1", "NOTREADY")
    with capturedLogs() as events:
        poll(r)
    assert [q.op for q in r.lv.ops()][-2:] == ["status", "ready"]
    assert r.metric("lvgateway_agent_drifts_total", kind="not_ready") == 1
    assert r.lv.state_of("AIVA1") == "READY"
    assert any(e.get("kind") == "not_ready" for e in events)


def test_an_agent_ready_while_paused_is_set_not_ready() -> None:
    """READY at LiveVox while the pool is paused: drift unexpected_ready, repaired by NOT READY."""
    r = rig(1)
    r.pool.pause("operator")
    r.lv.set_state("AIVA1", "READY")
    poll(r)
    assert [q.op for q in r.lv.ops()][-2:] == ["status", "not_ready"]
    assert r.metric("lvgateway_agent_drifts_total", kind="unexpected_ready") == 1
    assert r.lv.state_of("AIVA1") == "NOTREADY" and r.state("AIVA1") == "paused"


def test_a_call_unknown_to_the_gateway_is_reported_and_waited_out() -> None:
    """A call LiveVox holds that no INVITE explains is confirmed by a second look, reported, and the agent refused until LiveVox lets go."""
    r = rig(1)
    r.lv.dispatch("AIVA1")  # the gateway never hears of it
    poll(r)
    assert probe(r.pool, "8990000001").allowed, "the INVITE may still be on its way"
    assert r.metric("lvgateway_agent_drifts_total", kind="unknown_call") == 0
    with capturedLogs() as events:
        advance(r.clock, 31, step=1)
    assert r.metric("lvgateway_agent_drifts_total", kind="unknown_call") == 1
    assert [
        e for e in events if e.get("log_level").name == "error" and e.get("kind") == "unknown_call"
    ]
    view = r.pool.agent("AIVA1").view()
    assert view.state.value == "on_call" and view.unknown_call is not None
    assert probe(r.pool, "8990000001").refusal is Refusal.ON_CALL
    advance(r.clock, 1200, step=10)
    assert r.lv.count("ready") == 1 and r.lv.count("not_ready") == 0, "no state change is tried"
    r.lv.term_code("AIVA1", move_not_ready=True)  # a supervisor closes it
    advance(r.clock, 300, step=10)
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"
    assert r.pool.agent("AIVA1").view().unknown_call is None


def test_a_call_whose_invite_arrives_late_is_no_drift() -> None:
    """A poll that sees a call just before its INVITE arrives counts nothing."""
    r = rig(1)
    call = r.lv.dispatch("AIVA1")
    poll(r)
    r.pool.call_started("AIVA1", call)
    advance(r.clock, 60, step=1)
    assert r.metric("lvgateway_agent_drifts_total", kind="unknown_call") == 0
    assert r.state("AIVA1") == "on_call"


def test_a_refused_ready_looks_at_livevox_before_trying_again() -> None:
    """READY refused with 400 (a call LiveVox holds): the agent polls the status instead of retrying blindly."""
    r = rig(1, start=False, jitter=0.0)
    r.pool.startService()
    r.lv.dispatch("AIVA1")
    r.pool.agent("AIVA1").lv_ready = False  # as if a cycle's NOT READY had gone through
    r.pool.agent("AIVA1").kick("test")
    assert [q.op for q in r.lv.ops()][-1] == "ready"
    assert r.state("AIVA1") == "backing_off"
    advance(r.clock, 2, step=0.5)
    assert [q.op for q in r.lv.ops()][-1] == "status"


def test_assess_reads_lenient_statuses() -> None:
    """An empty answer says nothing; an unknown line state is left alone."""
    empty = AgentStatus(lines=(), unchanged=True)
    finding = assess(empty, believed_ready=True, desired=Desired.IN, previous_busy_key=None)
    assert finding.kind is None and finding.lv_ready is True
