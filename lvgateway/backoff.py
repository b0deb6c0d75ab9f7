"""The one retry backoff of the gateway: exponential, capped, with "equal jitter".

The agents' retries (``[agent_timings] backoff_base``/``backoff_max``), the
LiveVox client's retries (``[livevox] retry_base_delay``/``retry_max_delay``)
and the wrap-up's retries all wait by this rule, each with its own numbers.

The capped exponential is Twisted's own :func:`~twisted.application.internet.backoffPolicy`
(the policy of ``ClientService``), with a factor of 2 and no jitter of its own;
its jitter is added to the delay, so here a delay ``d`` becomes a uniform draw
from ``[d/2, d]`` instead: many clients that failed at once do not retry at once,
and none retries sooner than half the nominal delay nor later than the ceiling.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
from twisted.application.internet import backoffPolicy

__all__ = ["Backoff"]


def _no_jitter() -> float:
    return 0.0


@attrs.frozen
class Backoff:
    """Delays before repeat number 0, 1, 2…: ``base * 2**n``, capped at ``ceiling``, jittered.

    :param base: the nominal delay before the first repeat.
    :param ceiling: the largest nominal delay.
    :param jitter: returns a number in ``[0, 1)``; :func:`random.random` by
        default, injected in tests.
    """

    base: float
    ceiling: float
    jitter: Callable[[], float] = random.random

    def nominal(self, retry: int) -> float:
        """Return the delay before repeat number ``retry`` (from 0), before jitter."""
        return backoffPolicy(self.base, self.ceiling, 2.0, _no_jitter)(max(retry, 0))

    def delay(self, retry: int) -> float:
        """Return the wait before repeat number ``retry`` (from 0): within ``[d/2, d]``.

        :param retry: which repeat this is, from 0.
        """
        nominal = self.nominal(retry)
        return nominal / 2 + nominal / 2 * self.jitter()
