"""Shedding new calls under overload: 503 with Retry-After before any call state exists.

Past ``[sip] max_invites_per_second`` new INVITEs, or while the reactor lags
on every recent tick (``[sip] shed_on_reactor_lag``), a new INVITE is
answered 503 with ``Retry-After`` at once, before the agent lookup, the
call record or the media session: a refusal costs one response, so the calls
already accepted keep the reactor, and LiveVox hears "busy, try later" well
within Timer B instead of retransmitting into a full socket.

The rate is a token bucket (:class:`TokenBucket`, a pure policy over the
time given to it) holding one second's worth of INVITEs. Each shed INVITE is
counted by reason; the log gets one line when shedding begins and one with
the count when it ends (an INVITE admitted a second or more after the last
shed one), never one per INVITE.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
from twisted.logger import Logger

__all__ = ["SHED_REASONS", "InviteShedder", "Shed", "TokenBucket"]

log = Logger()

#: Why a new INVITE was shed: the label values of the shed counter.
SHED_REASONS = ("rate", "reactor_lag")

#: How long after the last shed INVITE the overload counts as over, in seconds.
QUIET_TIME = 1.0


@attrs.define
class TokenBucket:
    """At most ``rate`` events a second on average, with bursts up to ``capacity``.

    :param rate: tokens added a second.
    :param capacity: the most tokens held (the largest burst).
    """

    rate: float
    capacity: float
    _tokens: float = attrs.field(init=False)
    _at: float | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.rate <= 0 or self.capacity < 1:
            raise ValueError(f"a token bucket needs rate > 0 and capacity >= 1: {self!r}")
        self._tokens = self.capacity

    def take(self, now: float) -> float:
        """Take a token at ``now``: 0 if there was one, else the seconds until there will be."""
        if self._at is not None and now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


@attrs.frozen
class Shed:
    """A new INVITE refused for overload: why, and when to try again (whole seconds, at least 1)."""

    reason: str
    retry_after: int


@attrs.define
class InviteShedder:
    """Decide, per new INVITE, whether to shed it; count and log the shedding.

    :param max_per_second: the INVITE rate past which new ones are shed; 0 for no limit.
    :param lagging: whether the reactor is lagging now (the stall watchdog's), or ``None``.
    :param on_shed: called with each shed INVITE's reason, e.g. to count it.
    """

    max_per_second: float = 0.0
    lagging: Callable[[], bool] | None = None
    on_shed: Callable[[str], None] = lambda reason: None
    _bucket: TokenBucket | None = attrs.field(init=False, default=None)
    _shed_in_episode: int = attrs.field(init=False, default=0)
    _last_shed: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        if self.max_per_second > 0:
            self._bucket = TokenBucket(self.max_per_second, max(1.0, self.max_per_second))

    def check(self, now: float) -> Shed | None:
        """A new INVITE arrives at ``now``: the :class:`Shed` refusal, or ``None`` to go on."""
        shed: Shed | None = None
        if self.lagging is not None and self.lagging():
            shed = Shed("reactor_lag", 1)
        elif self._bucket is not None:
            wait = self._bucket.take(now)
            if wait > 0:
                shed = Shed("rate", max(1, math.ceil(wait)))
        if shed is None:
            if self._shed_in_episode and now - self._last_shed >= QUIET_TIME:
                log.warn(
                    "overload over: {count} new INVITEs were shed with 503",
                    count=self._shed_in_episode,
                )
                self._shed_in_episode = 0
            return None
        if not self._shed_in_episode:
            log.warn(
                "overload: new INVITEs get 503 with Retry-After ({reason}; limit"
                " {limit:g} a second, 0 for none)",
                reason=shed.reason,
                limit=self.max_per_second,
            )
        self._shed_in_episode += 1
        self._last_shed = now
        self.on_shed(shed.reason)
        return shed
