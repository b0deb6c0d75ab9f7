"""The fake agent pool other parts test with: it provides IAgentPool and answers as the real pool does."""

from __future__ import annotations

from zope.interface.verify import verifyObject

from lvgateway.agents.interfaces import IAgentPool, Refusal
from lvgateway.agents.testing import FakeAgent, FakeAgentPool, probe

from .test_agents_support import rig


def test_fake_pool_provides_iagentpool() -> None:
    """FakeAgentPool provides every method of IAgentPool."""
    assert verifyObject(IAgentPool, FakeAgentPool([("AIVA1", "+18990000001")]))


def test_fake_pool_answers_like_the_real_pool() -> None:
    """For the same story (ready, call, wrap-up, pause by two causes, resume) both pools give the same admissions, flags and states."""
    real = rig(1)
    fake = FakeAgentPool([("AIVA1", "+18990000001")])
    real_states: list[tuple[str, str, str]] = []
    fake_states: list[tuple[str, str, str]] = []
    real.pool.add_listener(lambda *t: real_states.append(t))
    fake.add_listener(lambda *t: fake_states.append(t))

    def both(check):  # type: ignore[no-untyped-def]
        assert check(real.pool) == check(fake)

    for number in ("+18990000001", "18990000001", "8990000001", "+18990000002"):
        both(lambda p, n=number: probe(p, n).refusal)
    both(lambda p: probe(p, "8990000001").user_name)
    both(lambda p: p.move_to_not_ready_after_call("AIVA1"))
    real.lv.dispatch("AIVA1")
    for p in (real.pool, fake):
        p.call_started("AIVA1", "c1")
    both(lambda p: probe(p, "8990000001").refusal)
    for p in (real.pool, fake):
        p.call_ended("AIVA1", "c1")
    real.lv.term_code("AIVA1", move_not_ready=False)
    for p in (real.pool, fake):
        p.wrapup_done("AIVA1", "c1", False)
    both(lambda p: probe(p, "8990000001").refusal)
    for p in (real.pool, fake):
        p.pause("vendor health", Refusal.VENDOR_UNAVAILABLE)
        p.pause("drain", Refusal.DRAINING)
    both(lambda p: probe(p, "8990000001").refusal)
    both(lambda p: p.move_to_not_ready_after_call("AIVA1"))
    for p in (real.pool, fake):
        p.resume("vendor health")
    both(lambda p: probe(p, "8990000001").refusal)
    for p in (real.pool, fake):
        p.resume("drain")
    both(lambda p: probe(p, "8990000001").refusal)
    call_states = {("AIVA1", "ready", "on_call"), ("AIVA1", "on_call", "wrap_up")}
    assert call_states <= set(real_states) and call_states <= set(fake_states)
    assert ("AIVA1", "wrap_up", "ready") in real_states and (
        "AIVA1",
        "wrap_up",
        "ready",
    ) in fake_states


def test_fake_pool_sessions_and_records() -> None:
    """session_for makes a session, session_expired replaces it, a login error errbacks; every call is recorded."""
    fake = FakeAgentPool([FakeAgent("AIVA1", "+18990000001"), FakeAgent("AIVA2", "8990000002")])
    first = fake.session_for("aiva1").result
    assert fake.session_for("AIVA1").result is first
    fake.session_expired("AIVA1", first)
    assert fake.session_for("AIVA1").result != first
    fake.agent("AIVA2").login_error = RuntimeError("denied")
    failed = fake.session_for("AIVA2")
    assert isinstance(failed.result.value, RuntimeError)
    failed.addErrback(lambda f: None)
    assert fake.events_of("session_expired") == [("AIVA1", first)]
    fake.agent("AIVA2").logged_in = False
    assert fake.admit("8990000002").refusal is Refusal.LOGGED_OUT
    assert fake.move_to_not_ready_after_call("AIVA2") is True


def test_fake_pool_holds_a_dismissed_calls_agent_like_the_real_pool() -> None:
    """After a dismissed call both pools refuse the agent's calls the same way, and neither has it on the call."""
    real = rig(1)
    fake = FakeAgentPool([("AIVA1", "+18990000001")])
    real.lv.dispatch("AIVA1")
    for p in (real.pool, fake):
        p.call_started("AIVA1", "c1")
        p.call_ended("AIVA1", "c1")
    real.lv.term_code("AIVA1", move_not_ready=True)
    for p in (real.pool, fake):
        p.dismissed("AIVA1", "c1")
    refusals = [probe(p, "8990000001") for p in (real.pool, fake)]
    assert refusals[0].refusal is refusals[1].refusal is Refusal.PAUSED
    assert refusals[0].detail == refusals[1].detail
