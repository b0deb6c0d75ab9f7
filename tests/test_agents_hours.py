"""Open hours through the pool: opening with the lead time, closing (also with a call up), DST weekends, holidays."""

from __future__ import annotations

import datetime
import zoneinfo

from lvgateway.agents.interfaces import Refusal
from lvgateway.agents.testing import probe

from .test_agents_support import Rig, advance, new_york_hours, rig, span

NY = zoneinfo.ZoneInfo("America/New_York")


def ts(*args: int, fold: int = 0) -> float:
    """Epoch seconds of a New York wall-clock time."""
    return datetime.datetime(*args, tzinfo=NY, fold=fold).timestamp()


def logins(r: Rig, user: str = "AIVA1") -> list[float]:
    """Clock times of the agent's logins."""
    return [q.time for q in r.lv.ops("login", user)]


def logouts(r: Rig, user: str = "AIVA1") -> list[float]:
    """Clock times of the agent's logouts."""
    return [q.time for q in r.lv.ops("logout", user)]


def test_agents_come_in_with_the_lead_time_and_go_out_at_closing() -> None:
    """Closed at start: nothing at LiveVox; in five minutes before 08:00; NOT READY and logged out at 20:00."""
    r = rig(2, hours=new_york_hours(lead_time=300), start_at=ts(2026, 3, 6, 6, 0))
    assert r.lv.count() == 0 and r.states() == {"logged_out"}
    assert probe(r.pool, "8990000001").refusal is Refusal.CLOSED
    assert r.pool.move_to_not_ready_after_call("AIVA1") is True
    assert r.metric("lvgateway_agent_pool_open") == 0
    advance(r.clock, ts(2026, 3, 6, 7, 55) - r.clock.seconds(), step=60)
    assert logins(r) == [ts(2026, 3, 6, 7, 55)]
    assert r.states() == {"ready"} and probe(r.pool, "8990000001").allowed
    assert r.metric("lvgateway_agent_pool_open") == 1
    advance(r.clock, ts(2026, 3, 6, 20, 0) - r.clock.seconds(), step=60)
    assert [q.op for q in r.lv.ops(user="AIVA1")][-2:] == ["not_ready", "logout"]
    assert logouts(r) == [ts(2026, 3, 6, 20, 0)]
    assert r.states() == {"logged_out"} and r.lv.state_of("AIVA1") == "LOGOFF"
    assert probe(r.pool, "8990000001").refusal is Refusal.CLOSED


def test_closing_while_a_call_is_up_waits_for_the_wrapup() -> None:
    """At closing the agent on a call keeps its session; its term code leaves it NOT READY, then it logs out."""
    r = rig(2, hours=new_york_hours(), start_at=ts(2026, 3, 6, 19, 50))
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    advance(r.clock, ts(2026, 3, 6, 20, 0) - r.clock.seconds(), step=60)
    assert r.state("AIVA2") == "logged_out"
    assert r.state("AIVA1") == "on_call" and r.lv.count("logout", "AIVA1") == 0
    assert r.pool.move_to_not_ready_after_call("AIVA1") is True
    assert probe(r.pool, "8990000001").refusal is Refusal.ON_CALL
    advance(r.clock, 120, step=10)
    r.pool.call_ended("AIVA1", "c1")
    r.lv.term_code("AIVA1", move_not_ready=True)
    session = r.pool.session_for("AIVA1").result
    assert session is r.pool.agent("AIVA1").session
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=True)
    assert [q.op for q in r.lv.ops(user="AIVA1")][-1] == "logout"
    assert r.lv.count("not_ready", "AIVA1") == 0, "its term code already left it NOT READY"
    assert r.state("AIVA1") == "logged_out"


def walk(r: Rig, until: float) -> None:
    """Advance minute by minute (staying on whole minutes) until ``until``."""
    advance(r.clock, until - r.clock.seconds(), step=60)


def test_spring_forward_weekend_opens_each_day_once() -> None:
    """Across 8 March 2026 (02:00 skipped) each open range opens and closes once, at its local times."""
    sunday_night = (span("01:00", "05:00"),)
    weekly = ((span("08:00", "20:00"),),) * 5 + ((span("09:00", "13:00"),), sunday_night)
    r = rig(1, hours=new_york_hours(weekly), start_at=ts(2026, 3, 6, 12, 0))
    walk(r, ts(2026, 3, 9, 21, 0))
    assert logins(r) == [
        ts(2026, 3, 6, 12, 0),
        ts(2026, 3, 7, 9, 0),
        ts(2026, 3, 8, 1, 0),
        ts(2026, 3, 9, 8, 0),
    ]
    assert logouts(r) == [
        ts(2026, 3, 6, 20, 0),
        ts(2026, 3, 7, 13, 0),
        ts(2026, 3, 8, 5, 0),
        ts(2026, 3, 9, 20, 0),
    ]
    assert ts(2026, 3, 8, 5, 0) - ts(2026, 3, 8, 1, 0) == 3 * 3600, "the skipped hour is not open"


def test_fall_back_weekend_opens_the_repeated_hour_once() -> None:
    """Across 1 November 2026 (01:00-02:00 twice) the Sunday range opens once and lasts five real hours."""
    sunday_night = (span("01:00", "05:00"),)
    weekly = ((span("08:00", "20:00"),),) * 5 + ((), sunday_night)
    r = rig(1, hours=new_york_hours(weekly), start_at=ts(2026, 10, 31, 12, 0))
    walk(r, ts(2026, 11, 2, 9, 0))
    assert logins(r) == [ts(2026, 11, 1, 1, 0), ts(2026, 11, 2, 8, 0)]
    assert logouts(r) == [ts(2026, 11, 1, 5, 0)]
    assert ts(2026, 11, 1, 5, 0) - ts(2026, 11, 1, 1, 0) == 5 * 3600


def test_a_holiday_stays_closed() -> None:
    """On a holiday no agent logs in; the next working day opens as usual."""
    hours = new_york_hours(holidays=frozenset({datetime.date(2026, 5, 25)}))
    r = rig(1, hours=hours, start_at=ts(2026, 5, 22, 21, 0))  # Friday evening before Memorial Day
    walk(r, ts(2026, 5, 26, 9, 0))
    assert logins(r) == [ts(2026, 5, 23, 9, 0), ts(2026, 5, 26, 8, 0)]
    assert r.state("AIVA1") == "ready"


def test_pause_while_closed_does_not_log_anyone_in() -> None:
    """Pausing and resuming outside open hours leaves the agents logged out and LiveVox untouched."""
    r = rig(2, hours=new_york_hours(), start_at=ts(2026, 3, 7, 20, 0))
    assert r.pool.pause("operator").called
    assert r.pool.resume("operator").called
    assert r.lv.count() == 0 and r.states() == {"logged_out"}
