"""The calls part's Prometheus metrics, every series registered at start (:mod:`lvgateway.metrics`).

=========================================  =========  ===================  ==========================================
name                                       type       labels               meaning
=========================================  =========  ===================  ==========================================
``lvgateway_calls_accepted_total``         counter                         call records written at acceptance
``lvgateway_calls_ended_total``            counter    ``reason``           calls ended, by end reason
``lvgateway_wrapup_queue_depth``           gauge                           calls ended whose wrap-up is not finished
``lvgateway_wrapup_oldest_age_seconds``    gauge                           age of the oldest of those, since its end
``lvgateway_wrapup_steps_total``           counter    ``step``,            wrap-up steps by step and outcome
                                                      ``outcome``
``lvgateway_wrapup_duration_seconds``      histogram                       from a call's end to LiveVox having its term code
``lvgateway_wrapup_dead_letters``          gauge                           dead letters waiting for an operator
``lvgateway_wrapup_dead_lettered_total``   counter                         wrap-ups that became dead letters
=========================================  =========  ===================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from lvgateway.calls.outcome import NOT_ROUTED_REASON
from lvgateway.config.model import END_REASONS
from lvgateway.metrics import counter, gauge, histogram

__all__ = ["STEP_LABELS", "STEP_OUTCOMES", "CallMetrics"]

#: The ``step`` label: the wrap-up steps, and ``ids`` (finding LiveVox's call ids).
STEP_LABELS = ("ids", "aia", "contact", "term_code", "hangup")
#: The ``outcome`` label: ``done``; ``checked`` (LiveVox's state showed it done,
#: nothing re-sent); ``skipped``; ``retried`` (failed, will be tried again);
#: ``failed`` (for good).
STEP_OUTCOMES = ("done", "checked", "skipped", "retried", "failed")

_WRAPUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class CallMetrics:
    """The metrics of the call store and its wrap-up pipeline, on one registry.

    :param registry: the gateway's registry.
    :param queue_depth: returns how many calls await the end of their wrap-up.
    :param oldest_age: returns the age in seconds of the oldest of those (0 when none).
    :param dead_letters: returns how many dead letters there are.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        queue_depth: Callable[[], float],
        oldest_age: Callable[[], float],
        dead_letters: Callable[[], float],
    ) -> None:
        self.accepted = counter(
            registry,
            "lvgateway_calls_accepted_total",
            "Call records written when an INVITE was accepted.",
        )
        self.ended = counter(
            registry,
            "lvgateway_calls_ended_total",
            "Calls ended, by end reason.",
            labels={"reason": [*END_REASONS, NOT_ROUTED_REASON]},
        )
        self.steps = counter(
            registry,
            "lvgateway_wrapup_steps_total",
            "Wrap-up steps, by step and outcome.",
            labels={"step": list(STEP_LABELS), "outcome": list(STEP_OUTCOMES)},
        )
        self.duration = histogram(
            registry,
            "lvgateway_wrapup_duration_seconds",
            "Time from a call's end until LiveVox has its term code.",
            buckets=_WRAPUP_BUCKETS,
        )
        self.dead_lettered = counter(
            registry,
            "lvgateway_wrapup_dead_lettered_total",
            "Wrap-ups that failed for good or outlived max_age and became dead letters.",
        )
        depth = gauge(
            registry,
            "lvgateway_wrapup_queue_depth",
            "Calls ended whose wrap-up has not finished.",
        )
        depth.set_function(queue_depth)
        age = gauge(
            registry,
            "lvgateway_wrapup_oldest_age_seconds",
            "Seconds since the end of the oldest call whose wrap-up has not finished (0 when none).",
        )
        age.set_function(oldest_age)
        dead = gauge(
            registry,
            "lvgateway_wrapup_dead_letters",
            "Dead letters waiting for an operator to re-drive or dismiss them.",
        )
        dead.set_function(dead_letters)

    def step(self, step: str, outcome: str) -> None:
        """Count one step outcome.

        :param step: one of :data:`STEP_LABELS`.
        :param outcome: one of :data:`STEP_OUTCOMES`.
        """
        self.steps.labels(step=step, outcome=outcome).inc()
