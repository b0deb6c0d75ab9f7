"""A verified in-memory fake of :class:`~lvgateway.agents.interfaces.IAgentPool`, for the call and SIP parts' tests.

:class:`FakeAgentPool` answers admission from a few plain facts per agent
(logged in, on a call, an operator's refusal), keeps pause causes as the real
pool does (refusing with the earliest), hands out sessions, and records every
call made to it in :attr:`FakeAgentPool.events` so a test can assert what its
subject told the pool. ``tests/test_agents_testing.py`` checks it against the
interface and against the real pool's answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from lvgateway.agents.interfaces import Admission, CallClose, IAgentPool, Refusal, Reservation
from lvgateway.agents.state import moves_not_ready
from lvgateway.agents.stranded import RecentInvites
from lvgateway.config.model import phone_key
from lvgateway.livevox.parsing import Session

__all__ = ["FakeAgent", "FakeAgentPool"]


@attrs.define
class FakeAgent:
    """One agent of :class:`FakeAgentPool`.

    :param user_name: its login.
    :param phone_number: its 899 number.
    :param service_id: its service.
    :param logged_in: whether it may take calls (else refused ``LOGGED_OUT``).
    :param refusal: a refusal to give whatever else holds (a test's override).
    :param call_id: the call it is on, if any.
    :param in_wrapup: whether that call's legs are down.
    :param reservation: the INVITE it is held for, before its call starts.
    :param session: its current session; made on demand by ``session_for``.
    :param login_error: what ``session_for`` errbacks with when it must log in.
    :param ready_since: what :meth:`FakeAgentPool.ready_since` answers.
    :param invites: the Session-IDs of the latest INVITEs told to
        :meth:`FakeAgentPool.invite_seen`, kept as the real pool keeps them.
    """

    user_name: str
    phone_number: str
    service_id: str = "1234567"
    logged_in: bool = True
    refusal: Refusal | None = None
    call_id: str | None = None
    in_wrapup: bool = False
    reservation: Reservation | None = None
    session: Session | None = None
    login_error: Exception | None = None
    ready_since: float | None = None
    #: Held NOT READY (a dismissed call's wrap-up), refused ``PAUSED`` as the real pool does.
    held_not_ready: bool = False
    invites: RecentInvites = attrs.field(factory=RecentInvites, eq=False, repr=False)

    @property
    def state(self) -> str:
        """The state the real pool would show (one of its ``AgentState`` values)."""
        if self.call_id is not None:
            return "wrap_up" if self.in_wrapup else "on_call"
        return "ready" if self.logged_in else "logged_out"


@implementer(IAgentPool)
class FakeAgentPool:
    """An in-memory agent pool.

    :param agents: ``(user_name, phone_number)`` pairs, or :class:`FakeAgent` values.
    """

    def __init__(self, agents: Iterable[tuple[str, str] | FakeAgent] = ()) -> None:
        self.agents: dict[str, FakeAgent] = {}
        for agent in agents:
            self.add(agent if isinstance(agent, FakeAgent) else FakeAgent(*agent))
        #: Every call made to the pool, as ``(method, args...)``.
        self.events: list[tuple[Any, ...]] = []
        self.pauses: dict[str, Refusal] = {}
        #: Forces ``move_to_not_ready_after_call`` to answer true for everyone.
        self.taking_out = False
        self._listeners: list[Callable[[str, str, str], None]] = []
        self._ids = itertools.count(1)

    def add(self, agent: FakeAgent) -> FakeAgent:
        """Add an agent; return it."""
        self.agents[agent.user_name.casefold()] = agent
        return agent

    def agent(self, user_name: str) -> FakeAgent:
        """Return an agent by login, in any case.

        :raises KeyError: if there is none.
        """
        return self.agents[user_name.casefold()]

    def events_of(self, method: str) -> list[tuple[Any, ...]]:
        """Return the recorded calls of ``method``, without its name."""
        return [e[1:] for e in self.events if e[0] == method]

    def _move(self, agent: FakeAgent, change: Callable[[], None]) -> None:
        old = agent.state
        change()
        new = agent.state
        if new != old:
            for listener in list(self._listeners):
                listener(agent.user_name, old, new)

    # -- IAgentPool -------------------------------------------------------------------

    def admit(self, phone_number: str) -> Admission:
        """Answer as the real pool would from the agent's facts and the pause causes."""
        self.events.append(("admit", phone_number))
        key = phone_key(phone_number)
        agent = next((a for a in self.agents.values() if phone_key(a.phone_number) == key), None)
        if agent is None:
            return Admission(None, None, Refusal.UNKNOWN_NUMBER, f"no agent has {phone_number}")
        refusal: Refusal | None
        if self.pauses:
            cause, refusal = next(iter(self.pauses.items()))
            detail = f"paused by {cause}"
        elif agent.call_id is not None or agent.reservation is not None:
            refusal, detail = Refusal.ON_CALL, f"on call {agent.call_id or '(being set up)'}"
        elif agent.held_not_ready:
            refusal, detail = Refusal.PAUSED, "held NOT READY by an operator"
        elif agent.refusal is not None:
            refusal, detail = agent.refusal, "refused by the test"
        elif not agent.logged_in:
            refusal, detail = Refusal.LOGGED_OUT, "not logged in"
        else:
            reservation = Reservation(agent.user_name, self._release)
            agent.reservation = reservation
            return Admission(agent.user_name, agent.service_id, None, "ready", reservation)
        return Admission(agent.user_name, agent.service_id, refusal, detail)

    def _release(self, reservation: Reservation) -> None:
        self.events.append(("released", reservation.user_name))
        agent = self.agents.get(reservation.user_name.casefold())
        if agent is not None and agent.reservation is reservation:
            agent.reservation = None

    def call_started(self, user_name: str, call_id: str) -> None:
        """Record it; the agent is on a call."""
        self.events.append(("call_started", user_name, call_id))
        agent = self.agent(user_name)

        def change() -> None:
            agent.call_id, agent.in_wrapup, agent.reservation = call_id, False, None

        self._move(agent, change)

    def call_ended(self, user_name: str, call_id: str) -> None:
        """Record it; the agent is in wrap-up."""
        self.events.append(("call_ended", user_name, call_id))
        agent = self.agent(user_name)

        def change() -> None:
            agent.call_id, agent.in_wrapup = call_id, True

        self._move(agent, change)

    def wrapup_done(self, user_name: str, call_id: str, moved_not_ready: bool) -> None:
        """Record it; the agent is free."""
        self.events.append(("wrapup_done", user_name, call_id, moved_not_ready))
        agent = self.agent(user_name)

        def change() -> None:
            if agent.call_id in (None, call_id):
                agent.call_id, agent.in_wrapup = None, False

        self._move(agent, change)

    def dismissed(self, user_name: str, call_id: str) -> None:
        """Record it; the agent is free of the call and held NOT READY (refused ``NOT_READY``)."""
        self.events.append(("dismissed", user_name, call_id))
        agent = self.agent(user_name)

        def change() -> None:
            agent.held_not_ready = True
            if agent.call_id in (None, call_id):
                agent.call_id, agent.in_wrapup = None, False

        self._move(agent, change)

    def move_to_not_ready_after_call(self, user_name: str, close: CallClose | None = None) -> bool:
        """True while paused or :attr:`taking_out`, for an unknown or logged-out agent, or a failed step."""
        self.events.append(("move_to_not_ready_after_call", user_name))
        agent = self.agents.get(user_name.casefold())
        wanted_in = not (self.pauses or self.taking_out or agent is None or not agent.logged_in)
        return moves_not_ready(wanted_in, close)

    def invite_seen(self, user_name: str, call_session_id: str | None) -> None:
        """Record it, and keep the Session-ID in the agent's recent INVITEs."""
        self.events.append(("invite_seen", user_name, call_session_id))
        agent = self.agents.get(user_name.casefold())
        if agent is not None:
            agent.invites.add(call_session_id)

    def session_for(self, user_name: str) -> Deferred[Session]:
        """Return the agent's session, making one (a "login") when it has none."""
        self.events.append(("session_for", user_name))
        agent = self.agents.get(user_name.casefold())
        if agent is None:
            return fail(KeyError(user_name))
        if agent.session is None:
            if agent.login_error is not None:
                return fail(agent.login_error)
            agent.session = Session(
                session_id=f"fake-{agent.user_name.casefold()}-{next(self._ids):04d}",
                user_name=agent.user_name,
                agent=True,
            )
        return succeed(agent.session)

    def session_expired(self, user_name: str, session: Session) -> None:
        """Record it; the next ``session_for`` makes a new session."""
        self.events.append(("session_expired", user_name, session))
        agent = self.agents.get(user_name.casefold())
        if agent is not None and agent.session == session:
            agent.session = None

    def pause(self, cause: str, refusal: Refusal = Refusal.PAUSED) -> Deferred[None]:
        """Add a pause cause."""
        self.events.append(("pause", cause, refusal))
        self.pauses.setdefault(cause, refusal)
        return succeed(None)

    def resume(self, cause: str) -> Deferred[None]:
        """Withdraw a pause cause."""
        self.events.append(("resume", cause))
        self.pauses.pop(cause, None)
        return succeed(None)

    def add_listener(self, listener: Callable[[str, str, str], None]) -> None:
        """Call ``listener(user_name, old_state, new_state)`` when a call moves an agent."""
        self._listeners.append(listener)

    def ready_since(self, user_name: str) -> float | None:
        """Return the agent's ``ready_since``."""
        agent = self.agents.get(user_name.casefold())
        return agent.ready_since if agent is not None else None


def probe(pool: IAgentPool, phone_number: str) -> Admission:
    """Ask ``pool`` whether the number's agent may take a call, holding nothing: the reservation is released at once."""
    admission = pool.admit(phone_number)
    if admission.reservation is not None:
        admission.reservation.release()
    return admission
