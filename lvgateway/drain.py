"""The ordered drain: how the gateway stops without losing a call.

A ``MultiService`` stops all its children at once, but the gateway must stop
in order: refuse new calls, pause the agents, let calls finish, flush the
wrap-ups while sessions are valid, log the agents out, then stop SIP, media
and the store. Each part registers its own named steps in a phase; the root
service runs them in phase order, each cut at its own bound and the whole cut
at the drain timeout, before its children (the listeners) stop. A step that
fails or overruns is logged and the next one still runs.
"""

from __future__ import annotations

import enum
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from lvgateway.collector import settle_heap
from lvgateway.health import Readiness


class DrainPhase(enum.IntEnum):
    """When a step runs in the drain; steps of one phase run in registration order."""

    REFUSE_CALLS = 10
    PAUSE_AGENTS = 20
    FINISH_CALLS = 30
    FLUSH_WRAPUPS = 40
    LOG_OUT_AGENTS = 50
    STOP_SIP = 60
    STOP_MEDIA = 70
    CLOSE_STORE = 80


#: A step returns ``None``, a Deferred, or a coroutine; it is done when that fires.
StepAction = Callable[[], "Deferred[Any] | Awaitable[Any] | None"]


@attrs.frozen
class DrainStep:
    """One named, bounded step of the drain.

    :param name: what the step does, for logs (``pause agents``).
    :param phase: when it runs.
    :param action: the work; cancelled when it overruns ``timeout``.
    :param timeout: the longest the step may take.
    """

    name: str
    phase: DrainPhase
    action: StepAction
    timeout: float


@attrs.frozen
class StepOutcome:
    """What became of one step: ``done``, ``timed out`` or ``failed``, and how long it took."""

    name: str
    result: str
    seconds: float


@attrs.define
class OrderedDrain:
    """The registered drain steps of one gateway, and whether the drain has begun.

    :param clock: times the steps and their bounds.
    :param timeout: the bound on the whole drain; a step gets at most what is left.
    """

    clock: IReactorTime
    timeout: float
    _steps: list[DrainStep] = attrs.field(factory=list)
    draining: bool = False
    #: Says what is left (``2 calls left, 1 wrap-up left``), for the progress lines.
    progress: Callable[[], str] | None = None
    #: How often a progress line is logged while the drain runs.
    progress_interval: float = 5.0
    #: Hooks run as the drain begins (systemd's STOPPING=1).
    on_begin: list[Callable[[], object]] = attrs.field(factory=list)
    started_at: float | None = None
    current_step: str | None = None
    log = Logger()

    def register(self, name: str, phase: DrainPhase, action: StepAction, timeout: float) -> None:
        """Add a step; parts call this while the service tree is built."""
        if self.draining:
            raise RuntimeError(f"drain step {name!r} registered after the drain began")
        self._steps.append(DrainStep(name, phase, action, timeout))

    def steps(self) -> list[DrainStep]:
        """Return the steps in the order they will run."""
        return sorted(self._steps, key=lambda s: s.phase)  # sorted() is stable

    def add_readiness_check(self, readiness: Readiness) -> None:
        """Make ``/readyz`` report not ready once the drain has begun."""
        readiness.add_check(
            "draining", lambda: "the gateway is draining" if self.draining else None
        )

    async def run(self) -> list[StepOutcome]:
        """Run every step in order, each bounded; never raises.

        :return: each step's outcome, in the order run.
        """
        self.draining = True
        started = self.started_at = self.clock.seconds()
        deadline = started + self.timeout
        outcomes: list[StepOutcome] = []
        self.log.info(
            "drain begins: {count} steps, bound {timeout}s",
            count=len(self._steps),
            timeout=self.timeout,
        )
        for hook in self.on_begin:
            try:
                hook()
            except Exception:
                self.log.failure("drain hook {hook} raised", hook=hook)
        reporter = LoopingCall(self.report_progress)
        reporter.clock = self.clock
        reporter.start(self.progress_interval, now=False).addErrback(
            lambda failure: self.log.failure("drain progress timer stopped", failure)
        )
        try:
            for step in self.steps():
                self.current_step = step.name
                outcomes.append(await self._run_step(step, deadline))
        finally:
            self.current_step = None
            if reporter.running:
                reporter.stop()
        self.log.info("drain ended after {seconds:.3f}s", seconds=self.clock.seconds() - started)
        return outcomes

    def time_left(self) -> float:
        """Seconds left of the drain's bound (the whole bound before it began)."""
        if self.started_at is None:
            return self.timeout
        return max(0.0, self.started_at + self.timeout - self.clock.seconds())

    def describe_left(self) -> str:
        """Say what is left of the drain: the step, the work, the time."""
        left = self.progress() if self.progress is not None else ""
        step = f"step {self.current_step}, " if self.current_step else ""
        work = f"{left}, " if left else ""
        return f"{step}{work}{self.time_left():.0f}s left of {self.timeout:g}s"

    def report_progress(self) -> None:
        """Log one progress line: calls left, wrap-ups left, time left."""
        self.log.info("drain in progress: {left}", left=self.describe_left())

    async def _run_step(self, step: DrainStep, deadline: float) -> StepOutcome:
        begun = self.clock.seconds()
        bound = max(0.0, min(step.timeout, deadline - begun))
        self.log.info("drain step {step} begins (bound {bound:.1f}s)", step=step.name, bound=bound)
        d: Deferred[Any] = maybeDeferred(step.action).addCallback(_awaited)
        try:
            await _bounded(d, bound, self.clock)
        except DeferredTimeout:
            result = "timed out"
            self.log.warn(
                "drain step {step} did not finish within {bound:.1f}s: cut, going on",
                step=step.name,
                bound=bound,
            )
        except Exception:
            result = "failed"
            self.log.failure("drain step {step} failed: going on", step=step.name)
        else:
            result = "done"
            self.log.info("drain step {step} done", step=step.name)
        return StepOutcome(step.name, result, self.clock.seconds() - begun)


def _bounded(d: Deferred[Any], bound: float, clock: IReactorTime) -> Deferred[Any]:
    """Fire with ``d``'s result, or fail with ``DeferredTimeout`` after ``bound`` seconds, whatever ``d`` does.

    ``d`` is cancelled at the bound, but the drain does not wait for that to
    take: a step whose work swallows its cancellation (a coroutine catching
    ``CancelledError`` and waiting on) must not hold the drain past its bound,
    nor systemd past its stop timeout.
    """
    out: Deferred[Any] = Deferred()

    def settle(result: Any) -> None:
        if timer.active():
            timer.cancel()
        if out.called:
            return
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)

    def expire() -> None:
        if not out.called:
            out.errback(DeferredTimeout(f"not done within {bound:.1f}s"))
        d.cancel()

    timer = clock.callLater(bound, expire)
    d.addBoth(settle)  # consumes d's result: it is passed on through ``out``
    return out


def _awaited(result: Any) -> Any:
    """Turn a coroutine returned by a step into a Deferred to wait on."""
    if isinstance(result, Coroutine):
        return ensureDeferred(result)
    return result


class GatewayService(MultiService):
    """The root service: its stop runs the ordered drain, then stops its children.

    twistd waits for the Deferred :meth:`stopService` returns, so the process
    exits only once the drain and the children are done.
    """

    def __init__(self, drain: OrderedDrain) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.drain = drain
        self.drain_outcomes: list[StepOutcome] = []
        #: The gateway's named parts, for the manhole and the control API.
        self.namespace: dict[str, object] = {}
        #: twistd's log observer, when the gateway chooses it (filtered at the config's level).
        self.log_observer: ILogObserver | None = None
        #: Answer a second SIGTERM with what is left, and exit at a third (under twistd only).
        self.handle_signals = False
        #: Run once every child has started (the listeners are bound by then).
        self.on_started: list[Callable[[], object]] = []
        self._terms = 0
        self._previous_term: Any = None

    def setServiceParent(self, parent: Any) -> None:
        """Join twistd's application, handing it the gateway's log observer first.

        twistd asks the application for an ``ILogObserver`` component before it
        builds its own, so the gateway's level and filters govern twistd's log too.
        """
        if self.log_observer is not None and isinstance(parent, Componentized):
            if parent.getComponent(ILogObserver, None) is None:  # type: ignore[no-untyped-call]
                parent.setComponent(ILogObserver, self.log_observer)  # type: ignore[no-untyped-call]
        super().setServiceParent(parent)  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        """Start the children, then freeze the start-up heap out of garbage collection.

        Modules, config and long-lived parts never die; frozen, they are not
        walked by every full collection, whose pauses stall the reactor.
        """
        MultiService.startService(self)
        settle_heap()
        for hook in self.on_started:
            try:
                hook()
            except Exception:
                self.drain.log.failure("start-up hook {hook} raised", hook=hook)
        if self.handle_signals:
            from twisted.internet import reactor

            # After the reactor has installed its own handlers, which it does as it starts.
            reactor.callWhenRunning(self._install_sigterm)  # type: ignore[attr-defined]

    def _install_sigterm(self) -> None:
        self._previous_term = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._sigterm)

    def _sigterm(self, signum: int, frame: Any) -> None:
        """The first SIGTERM starts the drain; the second says what is left; the third exits now."""
        self._terms += 1
        if self._terms == 1:
            if callable(self._previous_term):
                self._previous_term(signum, frame)
            return
        from twisted.internet import reactor

        if self._terms == 2:
            reactor.callFromThread(self._second_sigterm)  # type: ignore[attr-defined]
            return
        # Written straight to the file descriptor: the reactor may be the thing that is stuck.
        text = (
            "lvgateway: third SIGTERM: forcing exit now, drain cut short "
            f"({self.drain.describe_left()}); unfinished calls are recovered at the next start\n"
        )
        try:
            os.write(2, text.encode())
        finally:
            os._exit(1)

    def _second_sigterm(self) -> None:
        self.drain.log.warn(
            "second SIGTERM: still draining ({left}); a third SIGTERM forces exit now",
            left=self.drain.describe_left(),
        )

    def stopService(self) -> Deferred[None]:
        """Drain in order, then stop the children (the listeners last of all)."""
        d = Deferred.fromCoroutine(self.drain.run())

        def drained(outcomes: list[StepOutcome]) -> Deferred[None]:
            self.drain_outcomes = outcomes
            stopped: Deferred[None] = maybeDeferred(MultiService.stopService, self)
            return stopped

        return d.addCallback(drained)
