"""The ordered drain: steps run in phase order, each bounded, and a stuck step does not stop the rest."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from lvgateway.drain import DrainPhase, GatewayService, OrderedDrain
from lvgateway.health import Readiness


class RecordingService(Service):
    """A child that records when it is stopped."""

    def __init__(self, record: list[str]) -> None:
        self.record = record

    def stopService(self) -> None:
        """Note the stop."""
        self.record.append("child stopped")
        Service.stopService(self)


class OrderedDrainTests(SynchronousTestCase):
    """Tests of OrderedDrain and GatewayService on a fake clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.ran: list[str] = []
        self.drain = OrderedDrain(self.clock, timeout=100.0)

    def step(self, name: str, result: Any = None) -> Any:
        """Return an action that records its name and returns ``result``."""

        def action() -> Any:
            self.ran.append(name)
            return result

        return action

    def test_steps_run_in_phase_order_then_registration_order(self) -> None:
        """Steps registered out of order run by phase; within a phase, as registered."""
        self.drain.register("log out", DrainPhase.LOG_OUT_AGENTS, self.step("log out"), 5)
        self.drain.register("refuse", DrainPhase.REFUSE_CALLS, self.step("refuse"), 5)
        self.drain.register("pause a", DrainPhase.PAUSE_AGENTS, self.step("pause a"), 5)
        self.drain.register("pause b", DrainPhase.PAUSE_AGENTS, self.step("pause b"), 5)
        outcomes = self.successResultOf(Deferred.fromCoroutine(self.drain.run()))
        self.assertEqual(self.ran, ["refuse", "pause a", "pause b", "log out"])
        self.assertEqual([o.result for o in outcomes], ["done"] * 4)

    def test_stuck_step_is_cut_at_its_bound_and_logged_and_next_still_runs(self) -> None:
        """A step that never finishes is cancelled at its bound, logged, and the next step runs."""
        never: Deferred[None] = Deferred()
        self.drain.register(
            "finish calls", DrainPhase.FINISH_CALLS, self.step("finish calls", never), 30
        )
        self.drain.register("close store", DrainPhase.CLOSE_STORE, self.step("close store"), 5)
        with capturedLogs() as events:
            d = Deferred.fromCoroutine(self.drain.run())
            self.clock.advance(29.9)
            self.assertNoResult(d)
            self.assertEqual(self.ran, ["finish calls"])
            self.clock.advance(0.2)
            outcomes = self.successResultOf(d)
        self.assertEqual(self.ran, ["finish calls", "close store"])
        self.assertEqual(
            [(o.name, o.result) for o in outcomes],
            [("finish calls", "timed out"), ("close store", "done")],
        )
        self.assertAlmostEqual(outcomes[0].seconds, 30.1, places=3)
        warnings = [
            e
            for e in events
            if e.get("step") == "finish calls" and "did not finish" in e["log_format"]
        ]
        self.assertEqual(len(warnings), 1)

    def test_step_that_swallows_its_cancellation_is_still_cut_at_its_bound(self) -> None:
        """Work that catches CancelledError and waits on cannot hold the drain past the step's bound."""
        forever: Deferred[None] = Deferred(lambda d: None)  # its canceller does nothing
        cancelled: list[bool] = []

        async def stubborn() -> None:
            try:
                await Deferred()
            except CancelledError:
                cancelled.append(True)
                await forever  # goes on waiting, as a log-out waiting for a session might

        self.drain.register("log out", DrainPhase.LOG_OUT_AGENTS, stubborn, 10)
        self.drain.register("close store", DrainPhase.CLOSE_STORE, self.step("close store"), 5)
        d = Deferred.fromCoroutine(self.drain.run())
        self.clock.advance(10.1)
        outcomes = self.successResultOf(d)
        self.assertEqual(cancelled, [True])
        self.assertEqual(
            [(o.name, o.result) for o in outcomes],
            [("log out", "timed out"), ("close store", "done")],
        )

    def test_failing_step_is_logged_and_next_still_runs(self) -> None:
        """A step that raises is reported as failed and the drain goes on."""

        def boom() -> None:
            raise RuntimeError("store jammed")

        self.drain.register("flush", DrainPhase.FLUSH_WRAPUPS, boom, 5)
        self.drain.register("stop sip", DrainPhase.STOP_SIP, self.step("stop sip"), 5)
        with capturedLogs() as events:
            outcomes = self.successResultOf(Deferred.fromCoroutine(self.drain.run()))
        self.assertEqual([o.result for o in outcomes], ["failed", "done"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(
            any(e.get("log_failure") is not None and e.get("step") == "flush" for e in events)
        )

    def test_coroutine_steps_are_awaited(self) -> None:
        """A step written as async def is waited on, not dropped."""
        gate: Deferred[None] = Deferred()

        async def pause() -> None:
            await gate
            self.ran.append("paused")

        self.drain.register("pause", DrainPhase.PAUSE_AGENTS, pause, 5)
        d = Deferred.fromCoroutine(self.drain.run())
        self.assertNoResult(d)
        gate.callback(None)
        self.assertEqual([o.result for o in self.successResultOf(d)], ["done"])
        self.assertEqual(self.ran, ["paused"])

    def test_whole_drain_is_bounded_by_its_timeout(self) -> None:
        """Steps together never outlast the drain timeout: a later step gets only what is left."""
        drain = OrderedDrain(self.clock, timeout=10.0)
        drain.register("a", DrainPhase.PAUSE_AGENTS, lambda: Deferred(), 8)
        drain.register("b", DrainPhase.FINISH_CALLS, lambda: Deferred(), 8)
        d = Deferred.fromCoroutine(drain.run())
        self.clock.advance(8)
        self.assertNoResult(d)
        self.clock.advance(2)
        outcomes = self.successResultOf(d)
        self.assertEqual([o.result for o in outcomes], ["timed out", "timed out"])
        self.assertAlmostEqual(sum(o.seconds for o in outcomes), 10.0)

    def test_root_service_drains_before_its_children_stop(self) -> None:
        """GatewayService.stopService runs the drain first, then stops the children."""
        root = GatewayService(self.drain)
        RecordingService(self.ran).setServiceParent(root)
        hold: Deferred[None] = Deferred()
        self.drain.register("finish calls", DrainPhase.FINISH_CALLS, lambda: hold, 30)
        root.startService()
        d = root.stopService()
        self.assertNoResult(d)
        self.assertEqual(self.ran, [])
        hold.callback(None)
        self.successResultOf(d)
        self.assertEqual(self.ran, ["child stopped"])
        self.assertEqual([o.result for o in root.drain_outcomes], ["done"])

    def test_readiness_reports_draining(self) -> None:
        """Once the drain begins, /readyz's checks say the gateway is draining."""
        readiness = Readiness()
        self.drain.add_readiness_check(readiness)
        self.assertEqual(readiness.failures(), {})
        self.successResultOf(Deferred.fromCoroutine(self.drain.run()))
        self.assertEqual(readiness.failures(), {"draining": "the gateway is draining"})

    def test_registering_after_the_drain_began_is_refused(self) -> None:
        """A step added once the drain has begun would never run: refuse it loudly."""
        self.drain.register("x", DrainPhase.STOP_SIP, lambda: succeed(None), 1)
        self.successResultOf(Deferred.fromCoroutine(self.drain.run()))
        with self.assertRaises(RuntimeError):
            self.drain.register("late", DrainPhase.STOP_SIP, lambda: None, 1)
