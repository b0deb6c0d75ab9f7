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
import gc
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

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
        started = self.clock.seconds()
        deadline = started + self.timeout
        outcomes: list[StepOutcome] = []
        self.log.info(
            "drain begins: {count} steps, bound {timeout}s",
            count=len(self._steps),
            timeout=self.timeout,
        )
        for step in self.steps():
            outcomes.append(await self._run_step(step, deadline))
        self.log.info("drain ended after {seconds:.3f}s", seconds=self.clock.seconds() - started)
        return outcomes

    async def _run_step(self, step: DrainStep, deadline: float) -> StepOutcome:
        begun = self.clock.seconds()
        bound = max(0.0, min(step.timeout, deadline - begun))
        self.log.info("drain step {step} begins (bound {bound:.1f}s)", step=step.name, bound=bound)
        d: Deferred[Any] = maybeDeferred(step.action).addCallback(_awaited)
        d.addTimeout(bound, self.clock)
        try:
            await d
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

    def startService(self) -> None:
        """Start the children, then freeze the start-up heap out of garbage collection.

        Modules, config and long-lived parts never die; frozen, they are not
        walked by every full collection, whose pauses stall the reactor.
        """
        MultiService.startService(self)
        gc.freeze()

    def stopService(self) -> Deferred[None]:
        """Drain in order, then stop the children (the listeners last of all)."""
        d = Deferred.fromCoroutine(self.drain.run())

        def drained(outcomes: list[StepOutcome]) -> Deferred[None]:
            self.drain_outcomes = outcomes
            stopped: Deferred[None] = maybeDeferred(MultiService.stopService, self)
            return stopped

        return d.addCallback(drained)
