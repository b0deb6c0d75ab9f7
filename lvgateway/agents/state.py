"""The words of the agent state machine: its states, what the gateway wants of an agent, and the pacing rules.

Every virtual agent has a *desired* state, worked out by the pool from open
hours, pause causes, the drain and operators' holds (:class:`Desired`), and a
*current* state (:class:`AgentState`), which its driver moves towards the
desired one a LiveVox call at a time. The transitions are::

    logged_out ──login──> logging_in ──> joining ──> becoming_ready ──> ready
    ready ──hourly slot──> cycling (NOT READY, READY) ──> ready
    ready / becoming_ready / cycling ──call_started──> on_call ──call_ended──> wrap_up
    wrap_up ──wrapup_done──> ready (or becoming_ready, cycling, paused, closing…)
    ready ──pause──> paused ──resume──> becoming_ready ──> ready
    logged_out ──paused, not draining──> logging_in ──> joining ──> paused (NOT READY)
    ready ──a call LiveVox holds and no INVITE explains (seen twice)──> on_call
    on_call (unknown call) ──held past the grace──> wrap_up (its term code) ──> ready
    on_call (unknown call) ──LiveVox lets go──> becoming_ready ──> ready
    any logged in ──closing / drain / admin log-out──> closing ──> logged_out
    any step ──LiveVox unavailable──> backing_off ──timer──> the step again
    logging_in ──login refused──> login_denied ──slow timer or operator──> logging_in
    any logged in ──401──> logging_in (re-login: join and READY again)

The module holds no behaviour beyond small pure functions (the refused-login delays,
the cycle slots), so the rules can be tested without a clock.
"""

from __future__ import annotations

import enum
import math

import attrs

from lvgateway.agents.interfaces import CallClose

__all__ = [
    "moves_not_ready",
    "DENIED_RETRY_DELAYS",
    "KEEPALIVE_MARGIN",
    "SESSION_IDLE_LIMIT",
    "AgentState",
    "AgentView",
    "Desired",
    "Hold",
    "cycle_needed",
    "next_slot",
]


class AgentState(enum.Enum):
    """Where one virtual agent is, as the gateway knows it; the value is the metric label."""

    LOGGED_OUT = "logged_out"
    LOGGING_IN = "logging_in"
    JOINING = "joining"
    BECOMING_READY = "becoming_ready"
    READY = "ready"
    CYCLING = "cycling"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    CLOSING = "closing"
    BACKING_OFF = "backing_off"
    LOGIN_DENIED = "login_denied"

    @property
    def label(self) -> str:
        """The state as a log word: ``becoming ready``."""
        return self.value.replace("_", " ")


class Desired(enum.Enum):
    """What the gateway wants of an agent at LiveVox."""

    #: Logged in, joined, READY.
    IN = "in"
    #: NOT READY (with the reason code) where logged in; not logged in for it.
    PAUSED = "paused"
    #: NOT READY, then logged out.
    OUT = "out"


class Hold(enum.Enum):
    """An operator's hold on one agent (the admin actions)."""

    NOT_READY = "not_ready"
    OUT = "out"


@attrs.frozen
class AgentView:
    """A snapshot of one agent, for the manhole, ``GET /agents`` and tests.

    :param user_name: its LiveVox login.
    :param phone_number: its 899 number as configured.
    :param service_id: its service.
    :param state: its current state.
    :param since: the clock time it entered that state.
    :param reason: why it entered it.
    :param desired: what the gateway wants of it.
    :param last_error: the last failure, if any, kept after recovery.
    :param call_id: the gateway's call id while on a call or in wrap-up.
    :param hold: an operator's hold, if any.
    :param session: the short prefix of its session id, or ``None``.
    :param ready_since: when it last became READY at LiveVox.
    :param password_expires_in_days: as LiveVox said at the last login.
    :param unknown_call: a call LiveVox holds on it that the gateway does not know.
    """

    user_name: str
    phone_number: str
    service_id: str
    state: AgentState
    since: float
    reason: str
    desired: Desired
    last_error: str | None
    call_id: str | None
    hold: Hold | None
    session: str | None
    ready_since: float | None
    password_expires_in_days: int | None
    unknown_call: str | None

    def to_json(self) -> dict[str, object]:
        """Return the view as a JSON-ready mapping."""
        return {
            "user_name": self.user_name,
            "phone_number": self.phone_number,
            "service_id": self.service_id,
            "state": self.state.value,
            "since": self.since,
            "reason": self.reason,
            "desired": self.desired.value,
            "last_error": self.last_error,
            "call_id": self.call_id,
            "hold": self.hold.value if self.hold is not None else None,
            "session": self.session,
            "ready_since": self.ready_since,
            "password_expires_in_days": self.password_expires_in_days,
            "unknown_call": self.unknown_call,
        }


#: How long a login LiveVox refused waits before it is tried again, one entry
#: per retry; after the last, the agent stays ``login_denied`` until an
#: operator logs it in (``POST /agents/{user}/log-in``) or the gateway restarts.
#: Repeated bad logins can lock a LiveVox account, and a refused password
#: rarely mends itself: three slow retries (15 minutes, 1 hour, 4 hours) ride
#: out a LiveVox-side glitch without looking like a password-guessing attack.
DENIED_RETRY_DELAYS: tuple[float, ...] = (900.0, 3600.0, 14400.0)


#: LiveVox ends a session after this long without use (two hours).
SESSION_IDLE_LIMIT = 7200.0
#: How far inside :data:`SESSION_IDLE_LIMIT` the pool keeps every session.
KEEPALIVE_MARGIN = 600.0


def cycle_needed(now: float, last_change: float | None, interval: float) -> bool:
    """Whether an idle agent must be cycled at its slot ``now``, or may wait for the next one.

    An agent whose state changed recently (it just came in, or a wrap-up
    just readied it) may skip this slot if, at its next slot one
    ``interval`` later, its session will still be more than
    :data:`KEEPALIVE_MARGIN` inside LiveVox's two idle hours. So a pool that
    just came in does not blink its first agents out again at once, and no
    idle agent's state goes unchanged for more than 110 minutes. With a
    ``cycle_interval`` of 6,600 s or more nothing is skipped.

    :param now: the slot's time.
    :param last_change: when the gateway last changed the agent's state at
        LiveVox (or a wrap-up did), ``None`` if never.
    :param interval: ``AgentTimings.cycle_interval``.
    """
    if last_change is None:
        return True
    return (now - last_change) + interval > SESSION_IDLE_LIMIT - KEEPALIVE_MARGIN


def next_slot(now: float, epoch: float, interval: float, index: int, count: int) -> float:
    """Return the next time after ``now`` of agent ``index``'s hourly cycle slot.

    Slots are spread evenly over the interval: agent ``i`` of ``n`` has its
    slots at ``epoch + interval * (i + 1) / n + k * interval``, so at any
    moment at most one agent in ``n`` (per ``interval / n`` seconds) is
    cycling, whenever each came in.

    :param now: the clock time now.
    :param epoch: when the pool started.
    :param interval: ``AgentTimings.cycle_interval``.
    :param index: the agent's position in the config, from 0.
    :param count: how many agents the pool has.
    """
    offset = interval * (index + 1) / max(count, 1)
    first = epoch + offset
    if now < first:
        return first
    periods = math.floor((now - first) / interval) + 1
    return first + periods * interval


def moves_not_ready(wanted_in: bool, close: CallClose | None) -> bool:
    """Return ``moveAgentToNotReady`` for a call's term code: the pool's one rule for it.

    The agent goes back READY only when the gateway wants it in and the
    call's wrap-up went cleanly; a step failed for good leaves it NOT READY
    for the operator who looks at the dead letter.

    :param wanted_in: whether the gateway wants the agent READY now.
    :param close: the ended call's facts (``None``: it ended cleanly).
    """
    return not wanted_in or (close is not None and close.steps_failed)
