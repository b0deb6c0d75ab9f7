"""The hourly NOT READY → READY cycle: staggered slots, never during a call, and calls accepted mid-cycle."""

from __future__ import annotations

from lvgateway.agents.state import cycle_needed, next_slot
from lvgateway.agents.testing import probe

from .test_agents_support import advance, rig

START = 1_000_000.0


def cycle_times(r, user: str) -> list[float]:  # type: ignore[no-untyped-def]
    """The clock times of the agent's NOT READY requests."""
    return [q.time for q in r.lv.ops("not_ready", user)]


def test_slots_are_spread_evenly_over_the_interval() -> None:
    """Agent i of n cycles at epoch + interval*(i+1)/n, then every interval."""
    assert next_slot(0.0, 0.0, 3600.0, 0, 4) == 900.0
    assert next_slot(900.0, 0.0, 3600.0, 0, 4) == 4500.0
    assert next_slot(899.0, 0.0, 3600.0, 3, 4) == 3600.0
    assert next_slot(10_000.0, 0.0, 3600.0, 1, 4) == 12_600.0
    assert next_slot(0.0, 0.0, 3600.0, 0, 1) == 3600.0


def test_each_idle_agent_is_cycled_once_an_hour_in_its_own_slot() -> None:
    """Four agents have slots 15 minutes apart; each idle agent is cycled NOT READY then READY at its slot, every hour."""
    r = rig(4)
    advance(r.clock, 3 * 3600 + 1, step=10)
    # Slots at 15, 30, 45, 60 minutes; a slot that comes less than 50 minutes after the
    # agent came in is skipped (its next slot is still well inside LiveVox's 2 hours).
    expected = {
        "AIVA1": [4500, 8100],
        "AIVA2": [5400, 9000],
        "AIVA3": [6300, 9900],
        "AIVA4": [3600, 7200, 10800],
    }
    for user, slots in expected.items():
        assert cycle_times(r, user) == [START + s for s in slots]
        readies = [q.time for q in r.lv.ops("ready", user)]
        assert readies == [START] + [START + s for s in slots]
    assert r.states() == {"ready"}
    assert r.metric("lvgateway_agent_cycles_total", outcome="done") == 9
    assert r.metric("lvgateway_agent_cycles_total", outcome="skipped") == 3


def test_no_session_goes_unchanged_near_livevox_limit() -> None:
    """Over a day, no idle agent's state goes unchanged at LiveVox for more than 110 minutes."""
    r = rig(7)
    advance(r.clock, 86400, step=30)
    for n in range(1, 8):
        changes = sorted(q.time for q in r.lv.ops(user=f"AIVA{n}") if q.op != "status")
        gaps = [b - a for a, b in zip(changes, changes[1:], strict=False)]
        assert max(gaps) <= 6600


def test_cycle_needed_rule() -> None:
    """A slot may be skipped only if the next slot still leaves ten minutes of LiveVox's two hours."""
    assert cycle_needed(1000.0, None, 3600.0) is True
    assert cycle_needed(3000.0, 0.0, 3600.0) is False
    assert cycle_needed(3001.0, 0.0, 3600.0) is True
    assert cycle_needed(10.0, 0.0, 6600.0) is True


def test_the_pool_never_blinks_out_at_once() -> None:
    """With slow answers, at most one agent of ten is out of READY at any moment of the hour."""
    r = rig(10, latency=0.3)
    advance(r.clock, 5, step=0.1)
    out_of_ready: set[str] = set()
    worst = 0

    def watch(user: str, old: str, new: str) -> None:
        nonlocal worst
        if new == "ready":
            out_of_ready.discard(user)
        else:
            out_of_ready.add(user)
        worst = max(worst, len(out_of_ready))

    r.pool.add_listener(watch)
    advance(r.clock, 2 * 3600, step=0.1)
    assert r.lv.count("not_ready") >= 10
    assert worst == 1


def test_an_agent_on_a_call_is_cycled_after_its_wrapup_not_during_it() -> None:
    """At its slot an agent on a call is left alone; once its wrap-up is done it is cycled."""
    r = rig(2)  # AIVA1's slot is 30 minutes in
    advance(r.clock, 1700)
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    advance(r.clock, 400)  # the slot passes during the call
    assert cycle_times(r, "AIVA1") == []
    assert r.metric("lvgateway_agent_cycles_total", outcome="deferred") == 1
    r.pool.call_ended("AIVA1", "c1")
    advance(r.clock, 30)
    assert cycle_times(r, "AIVA1") == []
    r.lv.term_code("AIVA1", move_not_ready=False)
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=False)
    done_at = r.clock.seconds()
    assert cycle_times(r, "AIVA1") == [done_at]
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"
    advance(r.clock, 3600)
    assert cycle_times(r, "AIVA1") == [done_at, START + 1800 + 3600]


def test_a_call_is_accepted_during_the_cycle() -> None:
    """Mid-cycle the agent admits a call; a NOT READY refused because the call came first is no failure."""
    r = rig(1, latency=0.5)
    advance(r.clock, 3599 - r.clock.seconds() + START, step=1)
    r.lv.holding = True
    advance(r.clock, 1)
    assert r.state("AIVA1") == "cycling"
    assert probe(r.pool, "+18990000001").allowed
    # LiveVox dispatched the call a moment before the NOT READY reached it
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    r.lv.holding = False
    r.lv.release()
    assert r.state("AIVA1") == "on_call"
    r.pool.call_ended("AIVA1", "c1")
    r.lv.term_code("AIVA1", move_not_ready=False)
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=False)
    advance(r.clock, 5, step=0.1)
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"
    assert r.pool.agent("AIVA1").view().last_error is not None
    assert r.lv.count("not_ready") == 2, "the cycle is done after the wrap-up"


def test_a_call_is_accepted_while_becoming_ready() -> None:
    """While its READY request is in flight the agent admits a call (LiveVox may have dispatched it)."""
    r = rig(1, start=False)
    r.lv.holding = True
    r.pool.startService()
    r.lv.release()  # login
    r.lv.release()  # join
    assert r.state("AIVA1") == "becoming_ready"
    assert probe(r.pool, "8990000001").allowed
    r.lv.release()
    assert r.state("AIVA1") == "ready"


def test_a_paused_agent_is_kept_alive_at_its_slot() -> None:
    """A paused agent is sent NOT READY again at its slot, so its session stays in use."""
    r = rig(1)
    r.pool.pause("operator")
    assert r.lv.count("not_ready") == 1
    advance(r.clock, 3601, step=10)
    assert r.lv.count("not_ready") == 2 and r.lv.count("ready") == 1
    assert r.state("AIVA1") == "paused"
