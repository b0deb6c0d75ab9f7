"""Vendor health after failed calls: one probe round at once, the pool paused if it goes unanswered too."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs, formatEvent

from lvgateway.agents.interfaces import Refusal
from lvgateway.agents.testing import FakeAgentPool
from lvgateway.config.model import VendorEndpoint
from lvgateway.sip.health import PAUSE_CAUSE, VendorHealth
from lvgateway.sip.vendor import VendorEndpoints

INTERVAL = 60.0
PROBE_TIMEOUT = 5.0  # max(0.5, min(INTERVAL, 5.0))


class FakeResponse:
    """A SIP response as Sippy hands it to a transaction's callback."""

    def __init__(self, code: int) -> None:
        self._code = code

    def getSCode(self) -> tuple[int, str]:  # noqa: N802 (Sippy's name)
        """The status code and phrase."""
        return (self._code, "OK" if self._code == 200 else "Whatever")

    def getHFBodys(self, name: str) -> list[Any]:  # noqa: N802 (Sippy's name)
        """The bodies of the headers named ``name``: this response has none."""
        return []


class FakeTransactions:
    """Stands in for Sippy's transaction manager: records each OPTIONS and its answer callback."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any]] = []

    def newTransaction(self, req: Any, callback: Any) -> None:  # noqa: N802 (Sippy's name)
        """Keep the request and the callback its answer goes to."""
        self.sent.append((req, callback))

    def answer_all(self, code: int = 200) -> None:
        """Answer every OPTIONS sent so far."""
        for _, callback in self.sent:
            callback(FakeResponse(code))


def endpoints(count: int, clock: Clock) -> VendorEndpoints:
    """``count`` vendor endpoints on 127.0.0.3, by address (no name lookups)."""
    return VendorEndpoints(
        [
            VendorEndpoint(
                f"sip:bot@127.0.0.3:{5060 + n}", "bot", "127.0.0.3", 5060 + n, None, None
            )
            for n in range(count)
        ],
        clock,
    )


def started(count: int = 1) -> tuple[VendorHealth, Clock, FakeTransactions, FakeAgentPool]:
    """A health check on a Clock, its first round answered, with ``count`` endpoints."""
    clock = Clock()
    pool = FakeAgentPool()
    tm = FakeTransactions()
    health = VendorHealth(clock, endpoints(count, clock), pool, interval=INTERVAL, failures=3)
    health.global_config = {"_sip_tm": tm}
    health.start()
    assert len(tm.sent) == count  # the first round goes out at once
    tm.answer_all()
    tm.sent.clear()
    return health, clock, tm, pool


def texts(events: list[LogEvent]) -> list[str]:
    """The formatted log lines."""
    return [formatEvent(e) for e in events]


def test_a_failed_call_and_an_unanswered_probe_pause_within_the_probe_timeout() -> None:
    """A failed call sends one round at once; unanswered, it pauses the pool when the probe times out."""
    health, clock, tm, pool = started()
    with capturedLogs() as events:
        health.call_failed("the vendor answered 503 Service Unavailable")
        assert len(tm.sent) == 1  # probed now, not at the next interval
        assert not health.paused
        clock.advance(PROBE_TIMEOUT)
    assert health.paused
    assert pool.events_of("pause") == [(PAUSE_CAUSE, Refusal.VENDOR_UNAVAILABLE)]
    lines = texts(events)
    assert any(
        "the vendor endpoint did not answer OPTIONS" in line and "pausing the agents" in line
        for line in lines
    ), lines
    assert health.unavailable() == "the vendor endpoint did not answer OPTIONS"
    health.stop()


def test_an_answered_probe_after_a_failed_call_does_not_pause_and_resets() -> None:
    """An answered round after a failed call leaves the pool running and forgets the failure."""
    health, clock, tm, pool = started()
    health.call_failed("no progress from sip:bot@127.0.0.3:5060")
    assert len(tm.sent) == 1
    tm.answer_all()
    clock.advance(PROBE_TIMEOUT)
    assert not health.paused and health.failed_rounds == 0
    assert pool.events_of("pause") == []
    # The failure was forgotten: the next unanswered regular round alone does not pause.
    tm.sent.clear()
    clock.advance(INTERVAL - PROBE_TIMEOUT)
    assert len(tm.sent) == 1
    clock.advance(PROBE_TIMEOUT)
    assert not health.paused and health.failed_rounds == 1
    health.stop()


def test_no_quick_rounds_follow_an_answered_probe() -> None:
    """After the one round a failed call starts, nothing more is sent until the regular interval."""
    health, clock, tm, _ = started()
    health.call_failed("the vendor answered 500 Server Internal Error")
    tm.answer_all()
    sent = len(tm.sent)
    clock.pump([0.5] * int((INTERVAL - 1) / 0.5))
    assert len(tm.sent) == sent
    health.stop()


def test_a_failure_during_a_round_waits_for_that_round() -> None:
    """A failed call while a round is out sends nothing more; that round's silence pauses."""
    health, clock, tm, _ = started()
    clock.advance(INTERVAL)  # the regular round goes out
    assert len(tm.sent) == 1
    health.call_failed("the vendor answered 408 Request Timeout")
    assert len(tm.sent) == 1
    clock.advance(PROBE_TIMEOUT)
    assert health.paused
    health.stop()


@pytest.mark.parametrize("count", [2, 3])
def test_the_pause_line_names_the_count_of_endpoints(count: int) -> None:
    """With N endpoints silent, the pause line says none of the N answered."""
    health, clock, tm, _ = started(count)
    with capturedLogs() as events:
        health.call_failed("the vendor answered 503 Service Unavailable")
        assert len(tm.sent) == count
        clock.advance(PROBE_TIMEOUT)
    assert health.paused
    lines = texts(events)
    want = f"none of the {count} vendor endpoints answered OPTIONS"
    assert any(want in line and "pausing the agents" in line for line in lines), lines
    health.stop()


def test_without_failed_calls_the_pool_waits_for_health_failures_rounds() -> None:
    """Unanswered regular rounds pause only after ``failures`` rounds, naming the rounds."""
    health, clock, tm, _ = started()
    with capturedLogs() as events:
        for n in range(3):
            clock.advance(INTERVAL - (PROBE_TIMEOUT if n else 0))
            clock.advance(PROBE_TIMEOUT)
            assert health.paused == (n == 2)
    lines = texts(events)
    assert any(
        "the vendor endpoint did not answer OPTIONS in 3 rounds" in line for line in lines
    ), lines
    health.stop()


def test_a_probe_out_at_stop_does_not_pause() -> None:
    """Stopping with a probe out cancels its timer and judges nothing."""
    health, clock, tm, _ = started()
    health.call_failed("the vendor answered 503 Service Unavailable")
    health.stop()
    assert clock.getDelayedCalls() == []
    clock.advance(PROBE_TIMEOUT)
    assert not health.paused


def test_a_regular_round_is_skipped_while_a_failed_calls_round_is_out() -> None:
    """The regular round due while a failed call's round is out sends no second OPTIONS."""
    health, clock, tm, _ = started()
    clock.advance(INTERVAL - 1)
    health.call_failed("the vendor answered 503 Service Unavailable")
    assert len(tm.sent) == 1
    clock.advance(1)  # the regular round is due now
    assert len(tm.sent) == 1
    tm.answer_all()
    assert not health.paused and health.failed_rounds == 0
    health.stop()
