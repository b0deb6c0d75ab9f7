"""Fault injection for the LiveVox simulator: latency, error rates, failing the next N, outages.

Every decision is made on the injected clock and a seeded random generator,
so a test on ``task.Clock`` gets the same faults on every run.

Faults apply to the LiveVox routes and the AIA endpoint, never to the
``/_sandbox/`` admin routes. A rule names a route by its name (such as
``agent.saveTermCode``, see ``ROUTE_NAMES`` in :mod:`.livevox_api`) or ``*``
for every route.

An error can be injected at two moments:

``before``
    the request is refused without being applied, as if LiveVox never
    processed it;
``after``
    the request is applied and then answered with the error, as if the answer
    was lost on the way back: the case at-least-once delivery has to survive.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import attrs
from twisted.internet.interfaces import IReactorTime

#: When an injected error strikes: before the request is applied, or after.
When = Literal["before", "after"]

#: How an outage shows: every request answered with a status, or its connection dropped.
OutageMode = Literal["status", "drop"]

ANY_ROUTE = "*"


def _check_when(when: str) -> When:
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', not {when!r}")
    return when  # type: ignore[return-value]


def _check_status(status: int) -> int:
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"an injected status must be 400-599, not {status!r}")
    return status


@attrs.define
class ErrorRate:
    """Answer a share of a route's requests with an error.

    :param route: the route name or ``*``.
    :param status: the HTTP status to answer with.
    :param probability: from 0 to 1.
    :param when: ``before`` or ``after`` the request is applied.
    """

    route: str
    status: int
    probability: float
    when: When = "before"


@attrs.define
class FailNext:
    """Answer the next ``remaining`` requests to a route with an error.

    :param route: the route name or ``*``.
    :param remaining: how many requests are still to fail.
    :param status: the HTTP status to answer with.
    :param when: ``before`` or ``after`` the request is applied.
    """

    route: str
    remaining: int
    status: int
    when: When = "before"


@attrs.define
class Outage:
    """Every LiveVox request fails until ``until`` (clock seconds) or until cleared.

    :param until: the clock time it ends by itself, or ``None``.
    :param mode: ``status`` answers ``status``; ``drop`` aborts the connection
        without any answer.
    :param status: the status answered in ``status`` mode.
    """

    until: float | None
    mode: OutageMode = "status"
    status: int = 503


@attrs.frozen
class InjectedFailure:
    """The fault chosen for one request.

    :param status: the HTTP status to answer (0 when the connection is dropped).
    :param kind: ``outage``, ``error_rate`` or ``fail_next``.
    :param drop: abort the connection instead of answering.
    """

    status: int
    kind: str
    drop: bool = False


@attrs.define
class Faults:
    """The faults in force, decided on ``clock`` with a random generator seeded by ``seed``.

    :param clock: the simulator's clock.
    :param seed: the random generator's seed.
    """

    clock: IReactorTime
    seed: int = 1
    latency: float = 0.0
    route_latency: dict[str, float] = attrs.field(factory=dict)
    error_rates: dict[str, ErrorRate] = attrs.field(factory=dict)
    fail_next_rules: list[FailNext] = attrs.field(factory=list)
    outage: Outage | None = None
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def set_latency(self, seconds: float, route: str | None = None) -> None:
        """Delay every answer (or only ``route``'s) by ``seconds`` on the clock.

        :param seconds: the delay; 0 removes it.
        :param route: a route name; ``None`` for the default of every route.
        """
        if seconds < 0:
            raise ValueError(f"latency cannot be negative: {seconds}")
        if route is None or route == ANY_ROUTE:
            self.latency = float(seconds)
        elif seconds == 0:
            self.route_latency.pop(route, None)
        else:
            self.route_latency[route] = float(seconds)

    def latency_for(self, route: str) -> float:
        """Return the delay to add to an answer on ``route``."""
        return self.route_latency.get(route, self.latency)

    def set_error_rate(
        self, route: str, status: int, probability: float, when: str = "before"
    ) -> None:
        """Answer ``probability`` of ``route``'s requests with ``status``.

        :param route: a route name or ``*``.
        :param status: the HTTP status, 400-599.
        :param probability: 0 removes the rule; 1 fails every request.
        :param when: ``before`` or ``after`` the request is applied.
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within 0..1, not {probability}")
        if probability == 0:
            self.error_rates.pop(route, None)
            return
        self.error_rates[route] = ErrorRate(
            route, _check_status(status), probability, _check_when(when)
        )

    def fail_next(self, route: str, count: int, status: int, when: str = "before") -> None:
        """Answer the next ``count`` requests to ``route`` with ``status``.

        :param route: a route name or ``*``.
        :param count: how many requests, at least 1.
        :param status: the HTTP status, 400-599.
        :param when: ``before`` or ``after`` the request is applied.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        self.fail_next_rules.append(
            FailNext(route, count, _check_status(status), _check_when(when))
        )

    def start_outage(
        self, until: float | None = None, mode: str = "status", status: int = 503
    ) -> None:
        """Fail every LiveVox request until the clock reaches ``until``, or until cleared.

        :param until: a clock time, or ``None`` for "until :meth:`clear_outage`".
        :param mode: ``status`` to answer ``status``, ``drop`` to abort connections.
        :param status: the status of ``status`` mode.
        """
        if mode not in ("status", "drop"):
            raise ValueError(f"mode must be 'status' or 'drop', not {mode!r}")
        self.outage = Outage(until, mode, _check_status(status))  # type: ignore[arg-type]

    def clear_outage(self) -> None:
        """End the outage now."""
        self.outage = None

    def current_outage(self) -> Outage | None:
        """Return the outage in force now, forgetting one whose time has passed."""
        if self.outage is not None and self.outage.until is not None:
            if self.clock.seconds() >= self.outage.until:
                self.outage = None
        return self.outage

    def clear(self) -> None:
        """Remove every fault: latency, error rates, fail-next rules and the outage."""
        self.latency = 0.0
        self.route_latency.clear()
        self.error_rates.clear()
        self.fail_next_rules.clear()
        self.outage = None

    def pick(self, route: str, when: When) -> InjectedFailure | None:
        """Decide whether this request to ``route`` fails at moment ``when``.

        A fail-next rule goes first and is used up; otherwise the route's own
        error rate, or the ``*`` rate, draws from the seeded generator. The
        outage is checked separately, before anything else, by the caller.

        :param route: the request's route name.
        :param when: ``before`` or ``after`` applying it.
        """
        for rule in self.fail_next_rules:
            if rule.when == when and rule.route in (route, ANY_ROUTE):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self.fail_next_rules.remove(rule)
                return InjectedFailure(rule.status, "fail_next")
        rate = self.error_rates.get(route) or self.error_rates.get(ANY_ROUTE)
        if rate is not None and rate.when == when:
            if self._rng.random() < rate.probability:
                return InjectedFailure(rate.status, "error_rate")
        return None

    def describe(self) -> dict[str, Any]:
        """Return the faults in force as a JSON-ready mapping."""
        outage = self.current_outage()
        return {
            "now": self.clock.seconds(),
            "latency": self.latency,
            "routeLatency": dict(self.route_latency),
            "errorRates": [attrs.asdict(r) for r in self.error_rates.values()],
            "failNext": [attrs.asdict(r) for r in self.fail_next_rules],
            "outage": attrs.asdict(outage) if outage is not None else None,
        }
