# ruff: noqa: N805  (zope Interface methods are declared without self)
"""What the agent pool offers the parts that use it (calls, SIP, control).

The pool never imports SIP or call code: they call these methods, and learn
of the pool's changes through the listeners they register.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

from lvgateway.livevox.parsing import Session


class Refusal(enum.Enum):
    """Why an agent may not take a call now; SIP maps each to its response code."""

    UNKNOWN_NUMBER = "unknown number"  # 404
    ON_CALL = "agent on a call"  # 486
    LOGGED_OUT = "agent logged out"  # 480
    CLOSED = "call centre closed"  # 480
    PAUSED = "agents paused"  # 480
    VENDOR_UNAVAILABLE = "vendor unavailable"  # 503
    DRAINING = "gateway draining"  # 503


class Reservation:
    """An agent held for one INVITE, from its admission until the call is known to the pool.

    The pool's :meth:`IAgentPool.admit` makes one for each call it allows;
    while it is held the agent takes no other call. Once the call store
    accepts the call (``call_started``) the call itself keeps the agent busy
    until its wrap-up ends, and :meth:`release` changes nothing. The SIP
    part calls :meth:`release` on every path that ends the INVITE, so a call
    that never got a record (refused, cancelled, the store down) frees its
    agent at once.

    :param user_name: the agent's LiveVox login.
    :param release_agent: frees the agent if this reservation still holds it.
    """

    def __init__(self, user_name: str, release_agent: Callable[[Reservation], None]) -> None:
        self.user_name = user_name
        self._release_agent: Callable[[Reservation], None] | None = release_agent

    @property
    def held(self) -> bool:
        """Whether :meth:`release` has not been called yet."""
        return self._release_agent is not None

    def release(self) -> None:
        """Let the agent go, unless a call of its own now keeps it; idempotent."""
        release, self._release_agent = self._release_agent, None
        if release is not None:
            release(self)

    def __repr__(self) -> str:
        return f"<Reservation of {self.user_name}{'' if self.held else ' (released)'}>"


@attrs.frozen
class Admission:
    """The pool's answer to "may this 899 number's agent take a call now?".

    :param user_name: the agent's LiveVox login, when the number is known.
    :param service_id: the agent's service, when the number is known.
    :param refusal: ``None`` when the call may be taken, else why not.
    :param detail: a human-readable reason for the log line.
    :param reservation: the agent held for this call, when it may be taken.
    """

    user_name: str | None
    service_id: str | None
    refusal: Refusal | None
    detail: str = ""
    reservation: Reservation | None = attrs.field(default=None, eq=False)

    @property
    def allowed(self) -> bool:
        """Whether the call may be taken."""
        return self.refusal is None


@attrs.frozen
class CallClose:
    """The facts of an ended call the pool weighs when it chooses ``moveAgentToNotReady``.

    :param end_reason: how the call ended (one of ``END_REASONS``).
    :param transfer: the call was handed to a person with its LiveVox leg up.
    :param steps_failed: a wrap-up step (AIA, contact) failed for good: the
        call becomes a dead letter an operator must look at.
    """

    end_reason: str
    transfer: bool = False
    steps_failed: bool = False


class IAgentPool(Interface):
    """The virtual agents of one gateway, keyed by 899 number."""

    def admit(phone_number: str) -> Admission:
        """Decide whether the agent of ``phone_number`` may take a call now, and hold it if so.

        Yes for an agent logged in, joined and not on a call or held by a
        :class:`Reservation`, including while it becomes READY or is in its
        hourly NOT READY cycle (LiveVox may have dispatched the call a moment
        before). A yes carries a new reservation, which the caller must
        release on every path. ``phone_number`` may be in any of the forms
        ``+1899…``, ``1899…``, ``899…``.
        """

    def call_started(user_name: str, call_id: str) -> None:
        """Tell the pool that ``call_id`` was accepted for this agent: it is on a call."""

    def call_ended(user_name: str, call_id: str) -> None:
        """Tell the pool the call's legs are down: the agent is in wrap-up."""

    def wrapup_done(user_name: str, call_id: str, moved_not_ready: bool) -> None:
        """Tell the pool LiveVox has the call's term code.

        :param moved_not_ready: whether the term code was saved with
            ``moveAgentToNotReady`` true (LiveVox left the agent NOT READY).
        """

    def dismissed(user_name: str, call_id: str) -> None:
        """Tell the pool an operator gave up the call's wrap-up (a dismissed dead letter).

        LiveVox may still hold the call without its term code, and would
        refuse READY: the agent is held NOT READY, as an operator's
        ``not-ready`` holds it, until an operator readies it.
        """

    def move_to_not_ready_after_call(user_name: str, close: CallClose | None = None) -> bool:
        """Return the ``moveAgentToNotReady`` flag for the term code of the call ``close`` describes.

        The one place this flag is decided. False normally; true while the
        pool is paused, draining or closing, or the agent is being taken
        out, so a wrap-up never re-readies an agent the gateway is taking
        out; and true when a wrap-up step failed for good, so the agent
        waits for the operator who looks at the dead letter. ``close`` is
        ``None`` for a call that ended cleanly.
        """

    def invite_seen(user_name: str, call_session_id: str | None) -> None:
        """Tell the pool an INVITE for this agent's number arrived, accepted or refused.

        The SIP part calls it for every such INVITE, before it is answered,
        with the INVITE's ``Session-ID`` (LiveVox's callSessionId), or
        ``None`` when it carries none. The pool keeps the latest few per
        agent: a call LiveVox holds on the agent whose INVITE was seen is
        never closed by the pool as stranded (the call part knows it, or a
        person must look at it); one whose INVITE never came is, once held
        past ``AgentTimings.stranded_grace``.
        """

    def session_for(user_name: str) -> Deferred[Session]:
        """Return the agent's current LiveVox session, logging it in again if it has none.

        For the wrap-up, which saves term codes with the agent's session.
        Errbacks with the login's error when the agent cannot log in.
        """

    def session_expired(user_name: str, session: Session) -> None:
        """Tell the pool LiveVox answered 401 on ``session``: log the agent in again."""

    def pause(cause: str, refusal: Refusal = Refusal.PAUSED) -> Deferred[None]:
        """Set every agent NOT READY (with the configured reason code) and admit no calls.

        Pauses are kept by cause (``"vendor health"``, ``"drain"``, an
        operator's), and the pool stays paused while any cause remains; calls
        are refused with the refusal of the earliest cause still in force.
        Fires once every agent not on a call is NOT READY at LiveVox (or has
        failed to be, which is logged).
        """

    def resume(cause: str) -> Deferred[None]:
        """Withdraw one cause of :meth:`pause`; with none left, agents become READY again (within open hours)."""

    def add_listener(listener: Callable[[str, str, str], None]) -> None:
        """Call ``listener(user_name, old_state, new_state)`` on every agent transition."""

    def ready_since(user_name: str) -> float | None:
        """Return the clock time (epoch seconds) the agent last became READY at LiveVox, or ``None``.

        For ``stateChangedAfter`` ("just before the agent's last READY") when
        the call part asks LiveVox for the agent's current call.
        """
