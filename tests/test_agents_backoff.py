"""Failures: session expiry and re-login, backoff within its bounds, and a refused login that waits."""

from __future__ import annotations

from lvgateway.agents.interfaces import Refusal
from lvgateway.agents.state import DENIED_RETRY_DELAYS
from lvgateway.backoff import Backoff
from lvgateway.livevox.errors import LiveVoxServerError, SessionExpiredError

from .test_agents_support import advance, rig


def test_backoff_delay_is_exponential_jittered_and_capped() -> None:
    """Delays double from the base, stay within [d/2, d], and never pass the ceiling."""
    low = [Backoff(1.0, 60.0, lambda: 0.0).delay(n) for n in range(9)]
    high = [Backoff(1.0, 60.0, lambda: 0.999999).delay(n) for n in range(9)]
    assert low == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert [round(h, 3) for h in high] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert Backoff(1.0, 60.0, lambda: 0.5).delay(10_000) == 45.0


def test_an_expired_session_is_found_and_the_agent_logs_in_again() -> None:
    """A session LiveVox dropped is found by the next poll (401): log in, join and READY again."""
    r = rig(1)
    r.lv.expire("AIVA1")
    assert r.lv.state_of("AIVA1") == "LOGOFF"
    advance(r.clock, 301, step=10)
    assert [q.op for q in r.lv.ops(user="AIVA1")][-4:] == ["status", "login", "join", "ready"]
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"
    assert r.metric("lvgateway_agent_relogins_total", cause="expired") == 1
    assert r.metric("lvgateway_agent_drifts_total", kind="logged_out") == 1


def test_a_401_on_the_hourly_cycle_leads_to_re_login() -> None:
    """A cycle's NOT READY answered 401 drops the session; the agent comes back READY at once."""
    r = rig(1, reconcile_interval=7000.0)
    r.lv.expire("AIVA1")
    advance(r.clock, 3601, step=10)
    assert [q.op for q in r.lv.ops(user="AIVA1")][-4:] == ["not_ready", "login", "join", "ready"]
    assert r.state("AIVA1") == "ready"


def test_expiry_during_a_call_lets_the_wrapup_go_on_with_a_new_session() -> None:
    """The wrap-up's 401 gets a new session from session_for; after the wrap-up the agent joins and readies again."""
    r = rig(1)
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    r.pool.call_ended("AIVA1", "c1")
    old = r.pool.agent("AIVA1").session
    assert old is not None
    r.lv.expire("AIVA1")  # the session died during the call
    r.pool.session_expired("AIVA1", old)
    assert r.lv.count("login", "AIVA1") == 1, "nothing happens at LiveVox during the wrap-up"
    new = r.pool.session_for("AIVA1").result
    assert new.session_id != old.session_id
    assert r.pool.session_for("AIVA1").result is new
    assert r.state("AIVA1") == "wrap_up"
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=False)
    ops = [q.op for q in r.lv.ops(user="AIVA1")]
    assert ops[-3:] == ["login", "join", "ready"]
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"


def test_a_stale_401_report_does_not_drop_a_new_session() -> None:
    """session_expired for a session already replaced changes nothing."""
    r = rig(1)
    old = r.pool.agent("AIVA1").session
    assert old is not None
    r.lv.expire("AIVA1")
    advance(r.clock, 301, step=10)
    logins = r.lv.count("login")
    r.pool.session_expired("AIVA1", old)
    assert r.lv.count("login") == logins and r.state("AIVA1") == "ready"


def test_livevox_down_at_start_backs_off_within_bounds_and_recovers() -> None:
    """With LiveVox down, logins are retried at growing, capped intervals, never spinning; all READY when it returns."""
    r = rig(3, start=False, jitter=0.0, backoff_base=1.0, backoff_max=60.0)
    r.lv.down = True
    r.pool.startService()
    assert r.states() == {"backing_off"}
    advance(r.clock, 1800, step=0.25)
    times = [q.time for q in r.lv.ops("login", "AIVA1")]
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert set(gaps[7:]) == {30.0}
    # the bound: with every delay at its least (half the nominal one)
    assert len(times) <= 8 + (1800 - sum(gaps[:7])) / 30 + 1
    assert r.pool.admit("8990000001").refusal is Refusal.LOGGED_OUT
    r.lv.down = False
    advance(r.clock, 31, step=0.25)
    assert r.states() == {"ready"}
    assert r.metric("lvgateway_agent_logins_total", outcome="failed") == 3 * (len(times))


def test_repeated_401s_back_off_instead_of_spinning() -> None:
    """A join answered 401 right after every login does not loop: the second 401 backs off."""
    r = rig(1, start=False, jitter=0.0)
    r.lv.fail_next("join", SessionExpiredError("join", 401), count=50)
    r.pool.startService()
    assert r.lv.count("login") == 2 and r.state("AIVA1") == "backing_off"
    advance(r.clock, 120, step=0.5)
    assert r.lv.count("login") < 12


def test_failures_on_ready_retry_only_what_failed() -> None:
    """A READY refused with 503 is retried after a backoff, without logging in again."""
    r = rig(1, start=False)
    r.lv.fail_next("ready", LiveVoxServerError("ready", 503), count=2)
    r.pool.startService()
    assert r.state("AIVA1") == "backing_off"
    advance(r.clock, 10, step=0.25)
    assert [q.op for q in r.lv.ops()] == ["login", "join", "ready", "ready", "ready"]
    assert r.state("AIVA1") == "ready"
    assert r.metric("lvgateway_agent_failures_total", operation="ready") == 2


def test_a_bad_password_does_not_hold_up_the_rest_and_is_retried_slowly() -> None:
    """One agent refused at login shows login_denied with LiveVox's message; it is retried only at the slow delays, then left to an operator."""
    r = rig(3, start=False, reconcile_interval=100_000.0, cycle_interval=7000.0)
    r.lv.denied["aiva2"] = "Invalid client name, user name or password"
    r.pool.startService()
    assert r.state("AIVA1") == "ready" and r.state("AIVA3") == "ready"
    view = r.pool.agent("AIVA2").view()
    assert view.state.value == "login_denied"
    assert "Invalid client name, user name or password" in view.reason
    assert "Invalid client name" in (view.last_error or "")
    assert r.pool.admit("8990000002").refusal is Refusal.LOGGED_OUT
    advance(r.clock, sum(DENIED_RETRY_DELAYS) + 7 * 86400, step=60)
    times = [q.time - 1_000_000.0 for q in r.lv.ops("login", "AIVA2")]
    assert times == [0.0, 900.0, 4500.0, 18900.0]
    assert r.metric("lvgateway_agent_logins_total", outcome="denied") == 4
    assert "operator" in r.pool.agent("AIVA2").reason
    del r.lv.denied["aiva2"]
    view = r.pool.force_log_in("AIVA2").result
    assert view.state.value == "ready"


def test_a_denied_login_from_a_wrapup_is_remembered() -> None:
    """session_for on an agent LiveVox refuses errbacks, and does not try again at once."""
    r = rig(1)
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    session = r.pool.agent("AIVA1").session
    assert session is not None
    r.lv.expire("AIVA1")
    r.lv.denied["aiva1"] = "Password expired"
    r.pool.session_expired("AIVA1", session)
    first = r.pool.session_for("AIVA1")
    second = r.pool.session_for("AIVA1")
    for d in (first, second):
        assert d.result.value.message == "Password expired"
        d.addErrback(lambda f: None)
    assert r.lv.count("login") == 2
    assert r.state("AIVA1") == "on_call"
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=False)
    assert r.state("AIVA1") == "login_denied"
