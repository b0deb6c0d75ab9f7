"""The pool-wide LiveVox outage watch, on a Clock: one error line, one probe at a time, one line back."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from lvgateway.agents.outage import OutageWatch
from lvgateway.livevox.errors import LiveVoxConnectionError
from lvgateway.livevox.reachability import Reachability


class ProbedLiveVox:
    """Answers ``validate`` as a transport would: noting each attempt in the reachability."""

    def __init__(self, clock: Clock, reachability: Reachability) -> None:
        self.clock = clock
        self.reachability = reachability
        self.up = True
        self.validations = 0

    def validate(self, session: Any) -> Deferred[bool]:
        self.validations += 1
        now = self.clock.seconds()
        if self.up:
            self.reachability.note("session_validate", "success", None, now)
            return succeed(True)
        error = LiveVoxConnectionError("session_validate", message="refused")
        self.reachability.note("session_validate", "connection_failed", error, now)
        return fail(error)


class Waiter:
    """An agent as the watch sees it: a name, and kicks counted."""

    user_name = "AIVA1"

    def __init__(self) -> None:
        self.kicks: list[str] = []

    def kick(self, why: str, *, fresh: bool = False) -> None:
        self.kicks.append(why)


def levels(events: list[dict[str, Any]], level: str) -> list[dict[str, Any]]:
    """The captured events of one log level."""
    return [e for e in events if e["log_level"].name == level]


def test_an_outage_is_logged_once_probed_one_request_at_a_time_and_agents_released() -> None:
    """Down: one error, probes spaced 1, 2, 4... s, agents held; back: one info line with counts, agents kicked."""
    clock = Clock()
    reach = Reachability()
    api = ProbedLiveVox(clock, reach)
    watch = OutageWatch(clock, api, reach, lambda: None, heartbeat=5.0, remind=1000.0)
    watch.start()
    agent = Waiter()
    with capturedLogs() as events:
        clock.advance(5)  # heartbeat: LiveVox answers
        assert api.validations == 1 and not watch.down
        api.up = False
        for _ in range(2):  # two requests in a row fail: down
            reach.note("login", "connection_failed", None, clock.seconds())
        assert watch.down and reach.reason() is not None
        assert watch.holds(agent)  # type: ignore[arg-type]
        before = api.validations
        for _ in range(30):
            clock.advance(1)
        # 30 s down: one probe at a time, 1, 1, 2, 4, 8, 10 s apart: at 1, 2, 4, 8, 16, 26 s.
        assert api.validations - before == 6
        api.up = True
        for _ in range(10):
            clock.advance(1)
    assert not watch.down and reach.reason() is None
    clock.advance(0)
    assert agent.kicks == ["LiveVox answers again"]
    assert len(levels(events, "error")) == 1
    assert levels(events, "warn") == []
    back = [e for e in events if "answers again" in e["log_format"]]
    assert len(back) == 1 and back[0]["failed"] == 2 + 6 and back[0]["waiting"] == 1
    watch.stop()
    assert not reach.watched


def test_a_long_outage_is_reminded_with_counts_not_per_request() -> None:
    """Five minutes down with remind=60: about five warn lines, whatever the number of requests."""
    clock = Clock()
    reach = Reachability()
    api = ProbedLiveVox(clock, reach)
    api.up = False
    watch = OutageWatch(clock, api, reach, lambda: None, heartbeat=5.0, remind=60.0)
    watch.start()
    with capturedLogs() as events:
        for _ in range(300):
            reach.note("ready", "timeout", None, clock.seconds())
            clock.advance(1)
    assert len(levels(events, "error")) == 1
    assert 4 <= len(levels(events, "warn")) <= 5


def test_a_refusal_is_an_answer_and_a_cancel_says_nothing() -> None:
    """A 4xx brings LiveVox back; a cancelled request neither counts nor clears."""
    reach = Reachability(threshold=2)
    reach.note("ready", "server_error", None, 1.0)
    reach.note("ready", "cancelled", None, 2.0)
    reach.note("ready", "timeout", None, 3.0)
    assert reach.down and sum(reach.failed.values()) == 2
    reach.note("logout", "not_found", None, 4.0)
    assert not reach.down and not reach.quiet
