"""The call centre's open hours, as moments in time: when agents should be in, and when that next changes.

The weekly schedule is in the call centre's own time zone. It is turned into
intervals of real time (epoch seconds, as ``IReactorTime.seconds()`` gives),
one per open range per day, so a daylight-saving change cannot open a day
twice or skip it: a range is one interval whatever the clocks do. A local
time that does not exist (the hour skipped in spring) opens at the instant
it would have been; one that happens twice (the hour repeated in autumn)
means its first occurrence.
"""

from __future__ import annotations

import datetime
import zoneinfo

import attrs

from lvgateway.config.model import OpenHours

_DAY = datetime.timedelta(days=1)
#: How far ahead to look for the next change; past it the centre is "never open".
_HORIZON_DAYS = 400


@attrs.frozen
class Interval:
    """A stretch of real time, ``start`` inclusive to ``end`` exclusive, in epoch seconds."""

    start: float
    end: float


@attrs.define
class OpenSchedule:
    """Answers "should the agents be in now?" and "when does that next change?".

    :param hours: the configured open hours.
    """

    hours: OpenHours
    _zone: zoneinfo.ZoneInfo = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._zone = zoneinfo.ZoneInfo(self.hours.time_zone)

    def is_open(self, now: float) -> bool:
        """Whether the call centre is open at ``now``."""
        if self.hours.always_open:
            return True
        return any(i.start <= now < i.end for i in self._open_intervals(now, lead=0.0, days=1))

    def agents_wanted(self, now: float) -> bool:
        """Whether agents should be in at ``now``: open, or opening within the lead time."""
        if self.hours.always_open:
            return True
        return any(
            i.start <= now < i.end for i in self._open_intervals(now, self.hours.lead_time, 1)
        )

    def next_change(self, now: float) -> float | None:
        """Return when :meth:`agents_wanted` next changes after ``now``, or ``None`` if never."""
        if self.hours.always_open:
            return None
        for days in (8, _HORIZON_DAYS):
            edges = sorted(
                edge
                for i in self._open_intervals(now, self.hours.lead_time, days)
                for edge in (i.start, i.end)
                if edge > now
            )
            if edges:
                return edges[0]
        return None

    def _open_intervals(self, now: float, lead: float, days: int) -> list[Interval]:
        """Return the merged intervals, less ``lead`` at each start, of the days around ``now``."""
        today = datetime.datetime.fromtimestamp(now, self._zone).date()
        raw: list[Interval] = []
        for offset in range(-1, days + 1):
            day = today + offset * _DAY
            if day in self.hours.holidays:
                continue
            for r in self.hours.weekly[day.weekday()]:
                start = self._instant(day, r.start)
                end = (
                    self._instant(day + _DAY, datetime.time(0))
                    if r.end is None
                    else self._instant(day, r.end)
                )
                if end > start:
                    raw.append(Interval(start - lead, end))
        return _merged(raw)

    def _instant(self, day: datetime.date, at: datetime.time) -> float:
        local = datetime.datetime.combine(day, at, tzinfo=self._zone)  # fold=0: first occurrence
        return local.timestamp()


def _merged(intervals: list[Interval]) -> list[Interval]:
    """Join overlapping or touching intervals, so ``23:00-24:00`` then ``00:00-06:00`` is one."""
    out: list[Interval] = []
    for i in sorted(intervals, key=lambda i: i.start):
        if out and i.start <= out[-1].end:
            out[-1] = Interval(out[-1].start, max(out[-1].end, i.end))
        else:
            out.append(i)
    return out
