"""Open hours as real time: lead time, holidays, and daylight-saving weekends in America/New_York."""

from __future__ import annotations

import datetime
import zoneinfo

from lvgateway.agents.schedule import OpenSchedule
from lvgateway.config.model import OpenHours, TimeRange

NY = zoneinfo.ZoneInfo("America/New_York")
UTC = datetime.UTC


def span(start: str, end: str) -> TimeRange:
    """A TimeRange from 'HH:MM' strings; '24:00' is the end of the day."""
    s = datetime.time.fromisoformat(start)
    return TimeRange(s, None if end == "24:00" else datetime.time.fromisoformat(end))


WEEKDAY = (span("08:00", "20:00"),)


def hours(**kw: object) -> OpenHours:
    """OpenHours in New York: weekdays 08-20, Saturday 09-13, Sunday as given, no lead by default."""
    base: dict[str, object] = dict(
        time_zone="America/New_York",
        always_open=False,
        weekly=(WEEKDAY,) * 5 + ((span("09:00", "13:00"),), ()),
        holidays=frozenset(),
        lead_time=0.0,
    )
    base.update(kw)
    return OpenHours(**base)  # type: ignore[arg-type]


def ts(*args: int, tz: datetime.tzinfo = NY) -> float:
    """Epoch seconds of a wall-clock time in ``tz``."""
    return datetime.datetime(*args, tzinfo=tz).timestamp()


def changes(schedule: OpenSchedule, start: float, end: float) -> list[tuple[float, bool]]:
    """Walk next_change from ``start`` to ``end``: each change and whether agents are then wanted."""
    out = []
    now = start
    for _ in range(1000):  # bounded walk
        nxt = schedule.next_change(now)
        if nxt is None or nxt >= end:
            return out
        out.append((nxt, schedule.agents_wanted(nxt)))
        now = nxt
    raise AssertionError("next_change did not advance")


def test_weekday_hours_open_and_close_at_local_times() -> None:
    """A weekday opens at 08:00 and closes at 20:00 local time, in standard and daylight time."""
    s = OpenSchedule(hours())
    assert not s.is_open(ts(2026, 3, 6, 7, 59))
    assert s.is_open(ts(2026, 3, 6, 8, 0))
    assert not s.is_open(ts(2026, 3, 6, 20, 0))
    # The Monday after the spring change opens at 08:00 EDT = 12:00 UTC, not 13:00.
    assert s.is_open(ts(2026, 3, 9, 12, 0, tz=UTC))
    assert not s.is_open(ts(2026, 3, 9, 11, 59, tz=UTC))


def test_lead_time_brings_agents_in_before_opening() -> None:
    """With a 5-minute lead, agents are wanted from 07:55 though the centre opens at 08:00."""
    s = OpenSchedule(hours(lead_time=300.0))
    assert s.agents_wanted(ts(2026, 3, 6, 7, 55)) and not s.is_open(ts(2026, 3, 6, 7, 55))
    assert not s.agents_wanted(ts(2026, 3, 6, 7, 54, 59))
    assert s.next_change(ts(2026, 3, 6, 6, 0)) == ts(2026, 3, 6, 7, 55)


def test_holiday_stays_closed_all_day() -> None:
    """Christmas, a Friday, never opens; the next opening is Saturday 09:00."""
    s = OpenSchedule(hours(holidays=frozenset({datetime.date(2026, 12, 25)})))
    assert not s.is_open(ts(2026, 12, 25, 12, 0))
    assert s.next_change(ts(2026, 12, 24, 21, 0)) == ts(2026, 12, 26, 9, 0)


def test_spring_forward_weekend_opens_each_day_once() -> None:
    """Across 2026-03-08 (02:00 EST -> 03:00 EDT) each day with hours opens and closes exactly once."""
    sunday = (span("01:30", "04:00"),)  # straddles the skipped hour
    s = OpenSchedule(hours(weekly=(WEEKDAY,) * 5 + ((span("09:00", "13:00"),), sunday)))
    walk = changes(s, ts(2026, 3, 6, 0, 0), ts(2026, 3, 10, 0, 0))
    opens = [datetime.datetime.fromtimestamp(t, NY) for t, wanted in walk if wanted]
    closes = [datetime.datetime.fromtimestamp(t, NY) for t, wanted in walk if not wanted]
    assert [o.date().day for o in opens] == [6, 7, 8, 9]
    assert [c.date().day for c in closes] == [6, 7, 8, 9]
    assert walk[4][0] == ts(2026, 3, 8, 1, 30) and walk[5][0] == ts(2026, 3, 8, 4, 0)
    assert walk[5][0] - walk[4][0] == 1.5 * 3600  # 01:30 EST to 04:00 EDT is 90 real minutes


def test_skipped_local_time_opens_at_the_instant_it_would_have_been() -> None:
    """A range starting at 02:30 on the spring-forward day opens at 03:30 EDT, not never."""
    sunday = (span("02:30", "04:00"),)
    s = OpenSchedule(hours(weekly=((),) * 6 + (sunday,)))
    walk = changes(s, ts(2026, 3, 7, 0, 0), ts(2026, 3, 9, 0, 0))
    assert walk == [(ts(2026, 3, 8, 7, 30, tz=UTC), True), (ts(2026, 3, 8, 8, 0, tz=UTC), False)]


def test_fall_back_weekend_does_not_open_twice() -> None:
    """On 2026-11-01 01:00 happens twice; a 00:30-03:00 range opens once and lasts 3.5 real hours."""
    sunday = (span("00:30", "03:00"),)
    s = OpenSchedule(hours(weekly=((),) * 6 + (sunday,)))
    walk = changes(s, ts(2026, 10, 31, 0, 0), ts(2026, 11, 2, 0, 0))
    assert [wanted for _, wanted in walk] == [True, False]
    assert walk[1][0] - walk[0][0] == 3.5 * 3600


def test_overnight_ranges_join_into_one_interval() -> None:
    """Friday 20:00-24:00 and Saturday 00:00-06:00 do not close at midnight."""
    weekly = ((), (), (), (), (span("20:00", "24:00"),), (span("00:00", "06:00"),), ())
    s = OpenSchedule(hours(weekly=weekly))
    walk = changes(s, ts(2026, 3, 6, 0, 0), ts(2026, 3, 8, 0, 0))
    assert walk == [(ts(2026, 3, 6, 20, 0), True), (ts(2026, 3, 7, 6, 0), False)]


def test_always_open_and_never_open_have_no_next_change() -> None:
    """always_open never changes; a week with no hours is never wanted and never changes."""
    assert OpenSchedule(hours(always_open=True)).next_change(ts(2026, 3, 6, 0, 0)) is None
    assert OpenSchedule(hours(always_open=True)).agents_wanted(ts(2026, 3, 6, 0, 0))
    never = OpenSchedule(hours(weekly=((),) * 7))
    assert never.next_change(ts(2026, 3, 6, 0, 0)) is None
    assert not never.agents_wanted(ts(2026, 3, 6, 12, 0))
