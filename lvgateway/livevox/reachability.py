"""Whether LiveVox answers: one pool-wide state, from the outcome of every request.

Each attempt the transport makes is noted here (:meth:`Reachability.note`,
through :meth:`~lvgateway.livevox.metrics.LiveVoxMetrics.observe`). After
``threshold`` attempts in a row failed to be served (a 5xx, a timeout, a
refused or dropped connection) LiveVox is *down*; the first answer of any
kind (a 2xx, or a 4xx: LiveVox is there and judging) brings it *up* again.
While down, the failures are counted by outcome, for the line that says it
is back.

The state is plain: it neither logs nor schedules. The agent pool's outage
watch (:mod:`lvgateway.agents.outage`) listens to it, logs the outage once,
probes with one request at a time and holds the agents back; while it
*watches*, the transport leaves its retries and per-request warnings to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

__all__ = ["UNAVAILABLE_OUTCOMES", "Reachability"]

#: The request outcomes that say LiveVox cannot be reached or cannot serve now.
UNAVAILABLE_OUTCOMES = frozenset({"server_error", "timeout", "connection_failed"})

#: Told ``True`` when LiveVox goes down, ``False`` when it answers again.
Listener = Callable[[bool], None]


class Reachability:
    """LiveVox's reachability, as the requests to it found it.

    :param threshold: unserved attempts in a row that make LiveVox down.
    """

    def __init__(self, threshold: int = 2) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        #: When LiveVox went down (the clock of the transport), or ``None`` while up.
        self.down_since: float | None = None
        #: When the last attempt ended, whatever its outcome.
        self.last_seen: float | None = None
        #: The outcomes of the attempts that failed since LiveVox went down.
        self.failed: Counter[str] = Counter()
        #: The call and error of the last unserved attempt, for the log.
        self.last_failure = ""
        #: Set by the outage watch: while true, the transport does not retry
        #: or warn on its own during an outage (the watch probes and logs).
        self.watched = False
        self._streak = 0
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        if self.down_since is None:
            return "<Reachability: up>"
        return f"<Reachability: down since {self.down_since:.1f}, {sum(self.failed.values())} failed>"

    @property
    def down(self) -> bool:
        """Whether LiveVox is down now."""
        return self.down_since is not None

    @property
    def quiet(self) -> bool:
        """Whether the transport should neither retry nor warn: down, and a watch probes."""
        return self.watched and self.down_since is not None

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(True)`` when LiveVox goes down and ``listener(False)`` when it is back."""
        self._listeners.append(listener)

    def note(self, call: str, outcome: str, error: BaseException | None, now: float) -> None:
        """Note one finished attempt.

        :param call: its call name.
        :param outcome: its ``outcome`` label (:data:`~lvgateway.livevox.metrics.OUTCOMES`).
        :param error: what it failed with, or ``None``.
        :param now: when it ended.
        """
        self.last_seen = now
        if outcome == "cancelled":
            return  # the gateway gave up on it: it says nothing of LiveVox
        if outcome not in UNAVAILABLE_OUTCOMES:
            self._streak = 0
            if self.down_since is not None:
                self._tell(False)
                self.down_since = None
                self.failed.clear()
            return
        self._streak += 1
        self.last_failure = f"{call}: {outcome}" + (f" ({error})" if error is not None else "")
        if self.down_since is not None:
            self.failed[outcome] += 1
            return
        if self._streak >= self.threshold:
            self.down_since = now
            self.failed.clear()
            self.failed[outcome] += self._streak
            self._tell(True)

    def reason(self) -> str | None:
        """For readiness: ``None`` while up, else why not."""
        if self.down_since is None:
            return None
        return f"LiveVox unreachable ({self.last_failure})"

    def _tell(self, down: bool) -> None:
        for listener in list(self._listeners):
            listener(down)
