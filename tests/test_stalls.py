"""The reactor's stall watchdog: lag measured, stalls counted and explained, sustained lag told apart."""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.logger import LogLevel, globalLogPublisher

from lvgateway.metrics import new_registry
from lvgateway.stalls import GcPause, StallWatchdog, stall_cause, sustained


def sample(registry: Any, name: str, **labels: str) -> float:
    """One sample's value from the registry (0 when absent)."""
    value = registry.get_sample_value(name, labels or None)
    return float(value or 0.0)


def test_a_lag_mostly_spent_collecting_is_blamed_on_the_collector() -> None:
    """Collections covering half the lag or more make the cause gc, naming the longest."""
    cause, detail = stall_cause(0.2, [GcPause(0, 0.001), GcPause(2, 0.15)], "f (x.py:1)")
    assert cause == "gc"
    assert "generation 2" in detail and "150 ms" in detail


def test_a_lag_with_a_sampled_callback_names_it() -> None:
    """A short collection does not explain a long lag: the sampled callback does."""
    cause, detail = stall_cause(0.2, [GcPause(0, 0.001)], "Router.invite (routing.py:9)")
    assert (cause, detail) == ("callback", "slow callback: Router.invite (routing.py:9)")


def test_a_lag_with_nothing_seen_has_no_known_cause() -> None:
    """No collection and no sample: unknown."""
    assert stall_cause(0.2, [], None)[0] == "unknown"


def test_sustained_needs_every_recent_lag_past_the_threshold() -> None:
    """One spike is not overload; lag on every recent tick is; no ticks is not."""
    assert not sustained([0.001, 0.3, 0.002], 0.05)
    assert sustained([0.06, 0.3, 0.07], 0.05)
    assert not sustained([], 0.05)


def test_a_lag_the_thread_did_not_run_through_is_a_busy_machine() -> None:
    """The reactor thread ran 10 ms of a 200 ms lag: it waited for a CPU, whatever the sampler saw."""
    cause, detail = stall_cause(0.2, [], "f (x.py:1)", ran=0.01)
    assert cause == "no_cpu" and "10 ms" in detail


def make_watchdog(
    clock: task.Clock, gc_clock: list[float], cpu_clock: Any = None
) -> tuple[StallWatchdog, Any]:
    registry = new_registry(process_metrics=False)
    watchdog = StallWatchdog(
        clock,
        registry,
        interval=0.01,
        threshold=0.05,
        sample_callbacks=False,
        gc_timer=lambda: gc_clock[0],
        cpu_clock=cpu_clock,
    )
    return watchdog, registry


def test_a_late_tick_after_a_collection_is_counted_and_logged_as_gc() -> None:
    """The timer runs 200 ms late around a 180 ms collection: one gc stall, warn line, histogram."""
    clock, gc_clock = task.Clock(), [0.0]
    watchdog, registry = make_watchdog(clock, gc_clock)
    watchdog.startService()
    try:
        clock.advance(0.01)
        clock.advance(0.01)  # two ticks on time
        watchdog.on_gc("start", {"generation": 2})
        gc_clock[0] += 0.18
        watchdog.on_gc("stop", {"generation": 2})
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        try:
            clock.advance(0.21)
        finally:
            globalLogPublisher.removeObserver(events.append)
    finally:
        watchdog.stopService()
    stalls = [e for e in events if e.get("cause") is not None]
    assert len(stalls) == 1 and stalls[0]["log_level"] == LogLevel.warn
    assert stalls[0]["cause"] == "gc" and "generation 2" in stalls[0]["detail"]
    assert round(stalls[0]["lag_ms"]) == 200
    assert sample(registry, "lvgateway_reactor_stalls_total", cause="gc") == 1
    assert sample(registry, "lvgateway_reactor_stalls_total", cause="unknown") == 0
    assert sample(registry, "lvgateway_reactor_lag_seconds_count") == 3
    assert sample(registry, "lvgateway_reactor_lag_seconds_bucket", le="0.1") == 2
    assert watchdog.stalls == 1 and watchdog.max_lag == pytest.approx(0.2)


def test_a_late_tick_the_reactor_thread_barely_ran_through_is_counted_as_no_cpu() -> None:
    """The timer runs 200 ms late while the thread's CPU clock moved 5 ms: a no_cpu stall."""
    clock, cpu = task.Clock(), [0.0]
    watchdog, registry = make_watchdog(clock, [0.0], cpu_clock=lambda: cpu[0])
    watchdog.startService()
    try:
        clock.advance(0.01)
        cpu[0] += 0.005
        clock.advance(0.21)
    finally:
        watchdog.stopService()
    assert sample(registry, "lvgateway_reactor_stalls_total", cause="no_cpu") == 1


def test_lagging_only_while_each_recent_tick_is_late() -> None:
    """Five late ticks in a row make the watchdog say lagging; one on-time tick ends it."""
    clock, gc_clock = task.Clock(), [0.0]
    watchdog, _ = make_watchdog(clock, gc_clock)
    watchdog.startService()
    try:
        clock.advance(0.01)
        assert not watchdog.lagging()
        for _ in range(4):
            clock.advance(0.1)
        assert not watchdog.lagging()
        clock.advance(0.1)
        assert watchdog.lagging()
        clock.advance(0.01)
        assert not watchdog.lagging()
    finally:
        watchdog.stopService()


def slow_callback_for_the_watchdog_test() -> None:
    """Hold the reactor thread for 300 ms, in Python, so the sampler can see it."""
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        sum(range(100))


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_a_slow_callback_on_the_real_reactor_is_logged_by_name() -> None:
    """A callback busy for 300 ms on the real reactor: one warn line naming it, within 10 s."""
    registry = new_registry(process_metrics=False)
    watchdog = StallWatchdog(reactor, registry, interval=0.01, threshold=0.05)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    watchdog.startService()
    try:
        await task.deferLater(reactor, 0.1, lambda: None)
        reactor.callLater(0, slow_callback_for_the_watchdog_test)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10.0
        while not [e for e in events if e.get("cause") == "callback"]:
            assert time.monotonic() < deadline, (
                f"no stall naming the callback within 10 s: {events}"
            )
            await task.deferLater(reactor, 0.05, lambda: None)
    finally:
        watchdog.stopService()
        globalLogPublisher.removeObserver(events.append)
    stall = next(e for e in events if e.get("cause") == "callback")
    assert "slow_callback_for_the_watchdog_test" in stall["detail"]
    assert stall["lag_ms"] >= 250
    assert sample(registry, "lvgateway_reactor_stalls_total", cause="callback") >= 1
