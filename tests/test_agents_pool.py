"""The agent pool on a fake LiveVox: start-up, admission, calls, moveAgentToNotReady, pause and resume."""

from __future__ import annotations

from twisted.logger import capturedLogs
from zope.interface.verify import verifyObject

from lvgateway.agents.interfaces import IAgentPool, Refusal
from lvgateway.agents.testing import probe

from .test_agents_support import SERVICE, advance, rig


def test_pool_provides_iagentpool() -> None:
    """The pool provides every method of IAgentPool."""
    assert verifyObject(IAgentPool, rig(start=False).pool)


def test_start_up_logs_in_joins_and_readies_every_agent() -> None:
    """Each agent is logged in as an agent, joined with its own 899 number and set READY."""
    r = rig(3)
    assert r.states() == {"ready"}
    for n in (1, 2, 3):
        user = f"AIVA{n}"
        assert [q.op for q in r.lv.ops(user=user)] == ["login", "join", "ready"]
        line = r.lv.line(user)
        assert (line.state, line.service_id, line.phone_number) == (
            "READY",
            SERVICE,
            f"+1899000{n:04d}",
        )
    assert r.metric("lvgateway_agents", state="ready") == 3
    assert r.metric("lvgateway_agents", state="logged_out") == 0
    assert r.metric("lvgateway_agent_logins_total", outcome="success") == 3


def test_every_state_is_a_registered_series_from_the_start() -> None:
    """lvgateway_agents has a series, at zero, for every state before any event."""
    r = rig(2, start=False)
    for state in (
        "logged_out",
        "logging_in",
        "joining",
        "becoming_ready",
        "ready",
        "cycling",
        "on_call",
        "wrap_up",
        "paused",
        "closing",
        "backing_off",
        "login_denied",
    ):
        assert r.registry.get_sample_value("lvgateway_agents", {"state": state}) is not None
    assert r.metric("lvgateway_agents", state="logged_out") == 2


def test_login_concurrency_is_bounded() -> None:
    """With slow answers, no more agents than login_concurrency are being brought in at once."""
    r = rig(25, latency=0.5, login_concurrency=4)
    advance(r.clock, 30, step=0.1)
    assert r.states() == {"ready"}
    assert r.lv.peak_in_flight == 4
    # logins went out in waves of four, not all 25 at once
    first_logins = [q.time for q in r.lv.ops("login")]
    assert first_logins.count(first_logins[0]) == 4


def test_admission_by_any_form_of_the_number() -> None:
    """+1899…, 1899… and 899… all find the agent; an unknown number is refused 'unknown number'."""
    r = rig(2)
    for number in ("+18990000001", "18990000001", "8990000001", " +18990000001 "):
        admission = r.pool.admit(number)
        assert admission.allowed, admission
        assert (admission.user_name, admission.service_id) == ("AIVA1", SERVICE)
        assert admission.reservation is not None
        admission.reservation.release()
    unknown = probe(r.pool, "+18990009999")
    assert unknown.refusal is Refusal.UNKNOWN_NUMBER and unknown.user_name is None


def test_a_call_makes_the_agent_busy_until_its_wrapup_is_done() -> None:
    """On a call and in wrap-up the agent is refused 'on a call'; after the wrap-up it admits again."""
    r = rig(1)
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    assert r.state("AIVA1") == "on_call"
    assert probe(r.pool, "8990000001").refusal is Refusal.ON_CALL
    r.pool.call_ended("AIVA1", "c1")
    assert r.state("AIVA1") == "wrap_up"
    assert probe(r.pool, "8990000001").refusal is Refusal.ON_CALL
    assert r.pool.move_to_not_ready_after_call("AIVA1") is False
    before = r.lv.count()
    r.lv.term_code("AIVA1", move_not_ready=False)
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=False)
    assert r.state("AIVA1") == "ready"
    assert r.lv.count() == before, "a wrap-up that left the agent READY needs no request"
    assert probe(r.pool, "8990000001").allowed


def test_agent_left_not_ready_by_its_wrapup_is_readied_again() -> None:
    """A term code saved with moveAgentToNotReady while paused leaves the agent NOT READY; resume readies it."""
    r = rig(1)
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    r.pool.pause("vendor health", Refusal.VENDOR_UNAVAILABLE)
    assert r.lv.count("not_ready") == 0, "an agent on a call is not touched"
    assert r.pool.move_to_not_ready_after_call("AIVA1") is True
    r.pool.call_ended("AIVA1", "c1")
    r.lv.term_code("AIVA1", move_not_ready=True)
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=True)
    assert r.state("AIVA1") == "paused"
    assert r.lv.count("not_ready") == 0, "already NOT READY: nothing to send"
    r.pool.resume("vendor health")
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"


def test_move_to_not_ready_in_each_pool_state() -> None:
    """moveAgentToNotReady is false normally, true while paused, draining, closed or held."""
    r = rig(2)
    assert r.pool.move_to_not_ready_after_call("AIVA1") is False
    r.pool.pause("operator")
    assert r.pool.move_to_not_ready_after_call("AIVA1") is True
    r.pool.resume("operator")
    assert r.pool.move_to_not_ready_after_call("AIVA1") is False
    r.pool.force_not_ready("AIVA1")
    assert r.pool.move_to_not_ready_after_call("AIVA1") is True
    assert r.pool.move_to_not_ready_after_call("AIVA2") is False
    r.pool.force_ready("AIVA1")
    r.pool.force_log_out("AIVA2")
    assert r.pool.move_to_not_ready_after_call("AIVA2") is True
    r.pool.force_log_in("AIVA2")
    assert r.pool.move_to_not_ready_after_call("AIVA2") is False
    r.pool._open = False  # as outside open hours (tested through the timer elsewhere)
    assert r.pool.move_to_not_ready_after_call("AIVA1") is True
    r.pool._open = True
    r.pool.log_out_all()
    assert r.pool.move_to_not_ready_after_call("AIVA1") is True
    assert r.pool.move_to_not_ready_after_call("nobody") is True


def test_pause_keeps_causes_and_refuses_with_the_earliest() -> None:
    """Pause sets every agent NOT READY with the reason code; calls are refused by the earliest cause until all are withdrawn."""
    r = rig(3)
    d = r.pool.pause("vendor health", Refusal.VENDOR_UNAVAILABLE)
    assert d.called
    assert r.states() == {"paused"}
    assert {r.lv.state_of(f"AIVA{n}") for n in (1, 2, 3)} == {"NOTREADY"}
    assert probe(r.pool, "8990000001").refusal is Refusal.VENDOR_UNAVAILABLE
    r.pool.pause("drain", Refusal.DRAINING)
    assert probe(r.pool, "8990000002").refusal is Refusal.VENDOR_UNAVAILABLE
    r.pool.resume("vendor health")
    assert probe(r.pool, "8990000002").refusal is Refusal.DRAINING
    assert r.states() == {"paused"}
    assert r.metric("lvgateway_agent_pool_paused") == 1
    r.pool.resume("drain")
    assert r.states() == {"ready"}
    assert probe(r.pool, "8990000002").allowed
    assert r.metric("lvgateway_agent_pool_paused") == 0


def test_pause_waits_for_slow_livevox_and_leaves_calls_alone() -> None:
    """pause() fires once every agent not on a call is NOT READY; the agent on a call is not touched."""
    r = rig(3, latency=0.2)
    advance(r.clock, 5, step=0.1)
    r.lv.dispatch("AIVA2")
    r.pool.call_started("AIVA2", "c2")
    d = r.pool.pause("operator")
    assert not d.called
    advance(r.clock, 1, step=0.1)
    assert d.called
    assert r.lv.state_of("AIVA1") == "NOTREADY" and r.lv.state_of("AIVA2") == "INCALL"
    assert r.lv.count("not_ready", "AIVA2") == 0


def test_listeners_hear_every_transition() -> None:
    """A listener gets (user, old, new) for each transition; one that raises does not stop the others."""
    r = rig(1, start=False)
    heard: list[tuple[str, str, str]] = []

    def broken(user: str, old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    r.pool.add_listener(broken)
    r.pool.add_listener(lambda *t: heard.append(t))
    with capturedLogs() as events:
        r.pool.startService()
    assert heard[-1] == ("AIVA1", "becoming_ready", "ready")
    assert ("AIVA1", "logged_out", "logging_in") in heard
    assert any("listener" in str(e.get("log_format")) for e in events)


def test_each_transition_is_logged_with_its_reason() -> None:
    """Every change of state is a log event naming the agent, both states and the reason."""
    r = rig(1, start=False)
    with capturedLogs() as events:
        r.pool.startService()
    moves = [e for e in events if e.get("log_format") == "agent {agent}: {old} -> {new}: {reason}"]
    assert [(e["old"], e["new"]) for e in moves if e["old"] != e["new"]] == [
        ("logged_out", "logging_in"),
        ("logging_in", "joining"),
        ("joining", "becoming_ready"),
        ("becoming_ready", "ready"),
    ]
    assert all(e["reason"] for e in moves)


def test_password_expiry_is_warned_about_at_every_login() -> None:
    """A password expiring within the warning days is warned about at each login, a later one is not."""
    r = rig(2, start=False)
    r.lv.days["aiva1"] = 5
    with capturedLogs() as events:
        r.pool.startService()
        session = r.pool.agent("AIVA1").session
        assert session is not None
        r.lv.expire("AIVA1")
        r.pool.session_expired("AIVA1", session)
    assert r.state("AIVA1") == "ready" and r.lv.count("login", "AIVA1") == 2
    warnings = [e for e in events if "password expires" in str(e.get("log_format"))]
    assert [(e["agent"], e["days"]) for e in warnings] == [("AIVA1", 5), ("AIVA1", 5)]
    assert r.pool.agent("AIVA1").view().password_expires_in_days == 5


def test_a_listener_may_act_on_the_pool_from_within_a_transition() -> None:
    """A listener that pauses the pool when an agent becomes READY is obeyed for that agent too."""
    r = rig(2, start=False)

    def pause_when_all_ready(user: str, old: str, new: str) -> None:
        if new == "ready" and r.pool.counts()["ready"] == 2:
            r.pool.pause("operator")

    r.pool.add_listener(pause_when_all_ready)
    r.pool.startService()
    assert r.states() == {"paused"}
    assert {r.lv.state_of("AIVA1"), r.lv.state_of("AIVA2")} == {"NOTREADY"}


def test_a_pool_paused_before_start_logs_in_and_joins_but_readies_nobody() -> None:
    """Paused from the start (call recovery), agents log in and join, NOT READY; the resume is one READY each."""
    r = rig(2, start=False)
    assert r.pool.pause("call recovery").called
    r.pool.startService()
    assert r.states() == {"paused"}
    assert [q.op for q in r.lv.ops(user="AIVA1")] == ["login", "join"]
    assert r.lv.state_of("AIVA1") == "NOTREADY"
    assert probe(r.pool, "8990000001").refusal is Refusal.PAUSED
    r.pool.resume("call recovery")
    assert [q.op for q in r.lv.ops(user="AIVA1")] == ["login", "join", "ready"]
    assert r.states() == {"ready"}


def test_a_draining_pool_logs_nobody_in() -> None:
    """Paused by the drain, an agent without a session is not logged in just to be logged out."""
    r = rig(1, start=False)
    r.lv.down = True
    r.pool.startService()
    assert r.state("AIVA1") == "backing_off"
    r.lv.down = False
    r.pool.pause("drain", Refusal.DRAINING)
    assert r.state("AIVA1") == "logged_out"
    advance(r.clock, 600, step=10)
    assert r.lv.count("login") == 1


def test_a_dismissed_call_leaves_its_agent_held_not_ready_until_an_operator_readies_it() -> None:
    """LiveVox may still hold a dismissed call: the agent stays NOT READY (no READY tried) until readied."""
    r = rig(1)
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    r.pool.call_ended("AIVA1", "c1")
    r.lv.term_code("AIVA1", move_not_ready=True)  # LiveVox has it NOT READY, as a dead letter leaves it
    before = r.lv.count("ready")
    r.pool.dismissed("AIVA1", "c1")
    advance(r.clock, 600)
    assert r.lv.count("ready") == before, "READY tried for an agent LiveVox may still hold"
    assert probe(r.pool, "8990000001").refusal is Refusal.PAUSED
    r.pool.force_ready("AIVA1")
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"
