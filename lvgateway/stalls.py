"""The reactor's stall watchdog: how late a short timer runs, and why when it is very late.

Everything runs on one reactor: while it is stalled (a long garbage
collection, a slow callback) no SIP datagram is read, no RTP of the Twisted
relay is relayed and no health probe is answered. :class:`StallWatchdog`
runs a timer every ``interval`` seconds; the time it runs late is the
reactor's lag, observed into a histogram. A lag past ``threshold`` is a
stall: counted by cause and logged at warn, naming the cause when it is
known:

- ``gc``: the garbage collector paused for at least half the lag (timed
  through :data:`gc.callbacks`); the generation and pause are named.
- ``no_cpu``: the reactor thread ran for less than half the lag: the
  process waited for a CPU (a machine busy with other work).
- ``callback``: a sampler thread saw the reactor thread in the same function
  while the timer was overdue; that function is named. The thread only reads
  the reactor thread's current frame (no lock, no shared state but one
  attribute); it cannot see the collector, which holds the GIL.
- ``unknown``: neither (the process was not scheduled, say).

:meth:`StallWatchdog.lagging` says whether the reactor has been lagging over
its last few ticks: the SIP part sheds new calls while it is (a single spike
from one collection is not overload; lag on every tick is).

The policy is in pure functions (:func:`stall_cause`, :func:`sustained`);
the classes are thin drivers over a clock.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lvgateway.metrics import counter, histogram

__all__ = ["CAUSES", "GcPause", "StallWatchdog", "stall_cause", "sustained"]

log = Logger()

#: Why the reactor stalled: the label values of the stall counter.
CAUSES = ("gc", "no_cpu", "callback", "unknown")

#: Buckets of the lag histogram, in seconds: the tick's jitter up to long stalls.
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@attrs.frozen
class GcPause:
    """One garbage collection: its generation and how long it held the process."""

    generation: int
    seconds: float


def stall_cause(
    lag: float, pauses: Iterable[GcPause], callback: str | None, ran: float | None = None
) -> tuple[str, str]:
    """Why the reactor lagged ``lag`` seconds: ``(cause, detail)``, cause one of :data:`CAUSES`.

    :param lag: how late the timer ran.
    :param pauses: the collections since the previous tick.
    :param callback: the function the sampler saw the reactor stuck in, if any.
    :param ran: CPU seconds the reactor thread used since the previous tick, if known.
    """
    pauses = list(pauses)
    paused = sum(p.seconds for p in pauses)
    if pauses and paused >= lag / 2:
        longest = max(pauses, key=lambda p: p.seconds)
        return (
            "gc",
            f"garbage collection: {len(pauses)} pauses, {1000 * paused:.0f} ms in all,"
            f" the longest {1000 * longest.seconds:.0f} ms (generation {longest.generation})",
        )
    if ran is not None and ran < lag / 2:
        return (
            "no_cpu",
            f"waited for a CPU: the reactor thread ran {1000 * ran:.0f} ms of it"
            " (the machine is busy)",
        )
    if callback is not None:
        return ("callback", f"slow callback: {callback}")
    return ("unknown", "cause unknown (not a garbage collection; no callback sampled)")


def sustained(lags: Iterable[float], threshold: float) -> bool:
    """Whether every one of the recent ``lags`` passed ``threshold`` (and there are some)."""
    lags = list(lags)
    return bool(lags) and min(lags) > threshold


class _CallbackSampler:
    """A daemon thread noting where the reactor thread is while the watchdog's timer is overdue."""

    def __init__(self, watchdog: StallWatchdog, reactor_thread: int) -> None:
        self._watchdog = watchdog
        self._thread_id = reactor_thread
        self._stop = threading.Event()
        #: The function seen while overdue since the last tick (written here, read on the reactor).
        self.seen: str | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="stall-sampler").start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        period = self._watchdog.threshold / 2
        while not self._stop.wait(period):
            if not self._watchdog.overdue():
                continue
            frame = sys._current_frames().get(self._thread_id)  # noqa: SLF001 - read-only sample
            if frame is not None:
                code = frame.f_code
                self.seen = f"{code.co_qualname} ({code.co_filename}:{frame.f_lineno})"


class StallWatchdog(Service):
    """Time the reactor with a short timer; count, log and explain its stalls.

    :param reactor: the reactor to watch (``callLater`` and ``seconds``).
    :param registry: where the lag histogram and stall counter go, or ``None``.
    :param interval: how often the timer runs, in seconds.
    :param threshold: the lag that counts as a stall, in seconds.
    :param sustain: how many recent ticks :meth:`lagging` looks at: at 10 ms
        a tick, 5 late ticks in a row are at least 300 ms of lag.
    :param sample_callbacks: run the sampler thread that names slow callbacks.
    :param now: the clock the lag is measured on (the reactor's, by default).
    :param gc_timer: the clock collections are timed on.
    :param cpu_clock: the reactor thread's CPU time, or ``None`` not to tell a
        busy machine apart.
    """

    name = "stall-watchdog"

    def __init__(
        self,
        reactor: Any,
        registry: CollectorRegistry | None = None,
        interval: float = 0.01,
        threshold: float = 0.05,
        sustain: int = 5,
        sample_callbacks: bool = True,
        now: Callable[[], float] | None = None,
        gc_timer: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] | None = time.thread_time,
    ) -> None:
        self.interval = interval
        self.threshold = threshold
        self._now = now or reactor.seconds
        self._gc_timer = gc_timer
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor
        self._last = 0.0
        self._last_monotonic = time.monotonic()
        self._cpu_clock = cpu_clock
        self._last_cpu = 0.0
        self._recent: deque[float] = deque(maxlen=sustain)
        self._pauses: list[GcPause] = []
        self._gc_began = 0.0
        self._sample_callbacks = sample_callbacks
        self._sampler: _CallbackSampler | None = None
        #: Stalls seen so far.
        self.stalls = 0
        #: The largest lag seen so far, in seconds.
        self.max_lag = 0.0
        self._lag: Histogram | None = None
        self._stalls: Counter | None = None
        if registry is not None:
            self._lag = histogram(
                registry,
                "lvgateway_reactor_lag_seconds",
                "How late the reactor ran a short periodic timer.",
                buckets=LAG_BUCKETS,
            )
            self._stalls = counter(
                registry,
                "lvgateway_reactor_stalls_total",
                "Times the reactor lagged past the stall threshold, by cause.",
                {"cause": CAUSES},
            )

    def startService(self) -> None:
        """Start the timer, the collector's timing and (optionally) the sampler thread."""
        super().startService()  # type: ignore[no-untyped-call]
        self._last = self._now()
        self._last_monotonic = time.monotonic()
        self._last_cpu = self._cpu_clock() if self._cpu_clock else 0.0
        gc.callbacks.append(self.on_gc)
        if self._sample_callbacks:
            self._sampler = _CallbackSampler(self, threading.get_ident())
            self._sampler.start()
        self._loop.start(self.interval, now=False).addErrback(
            lambda f: log.failure("the stall watchdog stopped", f)
        )

    def stopService(self) -> None:
        """Stop timing."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop.running:
            self._loop.stop()
        if self.on_gc in gc.callbacks:
            gc.callbacks.remove(self.on_gc)
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """:data:`gc.callbacks` hook: time each collection."""
        if phase == "start":
            self._gc_began = self._gc_timer()
        else:
            self._pauses.append(GcPause(info["generation"], self._gc_timer() - self._gc_began))

    def overdue(self) -> bool:
        """Whether the timer is late past the threshold right now (the sampler thread asks)."""
        return time.monotonic() - self._last_monotonic > self.interval + self.threshold

    def _tick(self) -> None:
        now = self._now()
        lag = max(0.0, now - self._last - self.interval)
        self._last = now
        self._last_monotonic = time.monotonic()
        ran = None
        if self._cpu_clock is not None:
            cpu = self._cpu_clock()
            ran, self._last_cpu = cpu - self._last_cpu, cpu
        pauses, self._pauses = self._pauses, []
        sampler = self._sampler
        callback = None
        if sampler is not None:
            callback, sampler.seen = sampler.seen, None
        self.observe(lag, pauses, callback, ran)

    def observe(
        self,
        lag: float,
        pauses: Iterable[GcPause],
        callback: str | None,
        ran: float | None = None,
    ) -> None:
        """Record one tick's lag; count and log it if it is a stall."""
        self._recent.append(lag)
        self.max_lag = max(self.max_lag, lag)
        if self._lag is not None:
            self._lag.observe(lag)
        if lag <= self.threshold:
            return
        cause, detail = stall_cause(lag, pauses, callback, ran)
        self.stalls += 1
        if self._stalls is not None:
            self._stalls.labels(cause).inc()
        log.warn(
            "reactor stalled {lag_ms:.0f} ms (threshold {threshold_ms:.0f} ms): {detail}",
            lag_ms=1000 * lag,
            threshold_ms=1000 * self.threshold,
            cause=cause,
            detail=detail,
        )

    def lagging(self) -> bool:
        """Whether each of the last few ticks ran late past the threshold: sustained overload."""
        return sustained(self._recent, self.threshold)
