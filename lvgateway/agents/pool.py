"""The agent pool: every virtual agent of the gateway, by 899 number, as one service.

:class:`AgentPool` provides :class:`~lvgateway.agents.interfaces.IAgentPool`
to the call and SIP parts, and to the control part its admin actions and a
readable snapshot. It decides what it wants of each agent (in, paused or
out) from the open hours, the pause causes, the drain and operators' holds;
each :class:`~lvgateway.agents.agent.VirtualAgent` then drives itself there
one LiveVox call at a time.

Readable in the manhole as ``agents``::

    >>> agents
    <AgentPool 50 agents (ready 48, on_call 2); open; not paused>
    >>> print(agents.table())
    >>> agents.force_not_ready("AIVA7")
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    fail,
    gatherResults,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from lvgateway.agents.agent import AgentContext, VirtualAgent
from lvgateway.agents.interfaces import (
    Admission,
    CallClose,
    IAgentPool,
    Refusal,
    Reservation,
)
from lvgateway.agents.metrics import AgentMetrics
from lvgateway.agents.outage import OutageWatch
from lvgateway.agents.schedule import OpenSchedule
from lvgateway.agents.state import (
    DENIED_RETRY_DELAYS,
    AgentState,
    AgentView,
    Desired,
    Hold,
    moves_not_ready,
)
from lvgateway.agents.stranded import StrandedRepairer, StrandedSettings
from lvgateway.config.model import AgentConfig, AgentTimings, OpenHours, phone_key
from lvgateway.drain import DrainPhase, OrderedDrain
from lvgateway.livevox.interfaces import ILiveVoxAgentAPI, ILiveVoxCallAPI
from lvgateway.livevox.parsing import Session
from lvgateway.livevox.reachability import Reachability

__all__ = ["AgentPool", "UnknownAgentError"]

log = Logger("lvgateway.agents")

Listener = Callable[[str, str, str], None]


class UnknownAgentError(KeyError):
    """No agent of the pool has this user name."""


@implementer(IAgentPool)
class AgentPool(Service):
    """The virtual agents of one gateway.

    :param agents: the configured agents, in config order (their cycle and
        poll slots follow it).
    :param api: LiveVox's agent API (the client, or a fake).
    :param clock: the clock every timer runs on.
    :param timings: the pacing settings.
    :param hours: the call centre's open hours.
    :param registry: where the pool's metrics go, if anywhere.
    :param password_warning_days: warn at login when a password expires this soon
        (``LiveVoxConfig.password_expiry_warning_days``).
    :param jitter: returns a number in ``[0, 1)``, for the backoff.
    :param denied_retry_delays: waits before a refused login is tried again.
    :param pause_timeout: the bound on the drain's pause step.
    :param logout_timeout: the bound on the drain's log-out step.
    :param recheck_delay: how soon an unexplained call at LiveVox is looked at again.
    :param call_api: LiveVox's call API, to close calls of stranded agents.
    :param stranded: how stranded agents are repaired
        (:meth:`StrandedSettings.from_config`); with ``call_api``, they are.
        Without either, a call LiveVox holds that the gateway does not know
        is only reported, for a person to close.
    :param reachability: LiveVox's reachability (``LiveVoxMetrics.reachability``);
        with it, an outage is watched for the whole pool
        (:class:`~lvgateway.agents.outage.OutageWatch`): logged once, probed
        with one request, the agents held until LiveVox answers. Without it,
        each agent backs off on its own.
    :param outage_heartbeat: with ``reachability``, seconds without any
        request to LiveVox after which a probe is sent.
    """

    name = "agents"

    def __init__(
        self,
        agents: Sequence[AgentConfig],
        api: ILiveVoxAgentAPI,
        clock: IReactorTime,
        timings: AgentTimings,
        hours: OpenHours,
        *,
        registry: CollectorRegistry | None = None,
        password_warning_days: int = 14,
        jitter: Callable[[], float] = random.random,
        denied_retry_delays: tuple[float, ...] = DENIED_RETRY_DELAYS,
        pause_timeout: float = 30.0,
        logout_timeout: float = 30.0,
        recheck_delay: float = 30.0,
        call_api: ILiveVoxCallAPI | None = None,
        stranded: StrandedSettings | None = None,
        reachability: Reachability | None = None,
        outage_heartbeat: float = 5.0,
    ) -> None:
        self._clock = clock
        self._api = api
        self.timings = timings
        self.schedule = OpenSchedule(hours)
        self.metrics = AgentMetrics(registry) if registry is not None else None
        self.pause_timeout = pause_timeout
        self.logout_timeout = logout_timeout
        self._context = AgentContext(
            clock=clock,
            api=api,
            timings=timings,
            login_slots=DeferredSemaphore(timings.login_concurrency),
            desired=self._desired_for,
            transitioned=self._transitioned,
            metrics=self.metrics,
            jitter=jitter,
            password_warning_days=password_warning_days,
            denied_retry_delays=denied_retry_delays,
            count=len(agents),
            recheck_delay=recheck_delay,
            explain=self._explain,
            log_in_while_paused=self._log_in_while_paused,
            repairer=(
                StrandedRepairer(api, call_api, stranded)
                if call_api is not None and stranded is not None
                else None
            ),
        )
        #: Watches LiveVox's outages for the whole pool, if it was given its reachability.
        self.outage: OutageWatch | None = None
        if reachability is not None:
            self.outage = OutageWatch(
                clock, api, reachability, self._any_session, heartbeat=outage_heartbeat
            )
            self._context.outage = self.outage
        self._agents: list[VirtualAgent] = []
        self._by_number: dict[str, VirtualAgent] = {}
        self._by_user: dict[str, VirtualAgent] = {}
        for index, config in enumerate(agents):
            agent = VirtualAgent(config, index, self._context)
            key = phone_key(config.phone_number)
            user = config.user_name.casefold()
            if key in self._by_number or user in self._by_user:
                raise ValueError(f"agent {config.user_name} ({config.origin}) is listed twice")
            self._agents.append(agent)
            self._by_number[key] = agent
            self._by_user[user] = agent
        if self.metrics is not None:
            for agent in self._agents:
                self.metrics.moved(None, agent.state)
        self._pauses: dict[str, Refusal] = {}
        self._open = False
        self._stopping = False
        self._hours_timer: IDelayedCall | None = None
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        counts = Counter(a.state.value for a in self._agents)
        states = ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
        hours = "open" if self._open else "closed"
        paused = f"paused by {', '.join(self._pauses)}" if self._pauses else "not paused"
        return f"<AgentPool {len(self._agents)} agents ({states}); {hours}; {paused}>"

    # -- the service -----------------------------------------------------------------

    def startService(self) -> None:
        """Work out the open hours, arm their timer, and bring every agent to what is wanted."""
        Service.startService(self)
        now = self._clock.seconds()
        self._context.epoch = now
        self._stopping = False
        self._open = self.schedule.agents_wanted(now)
        self._set_gauges()
        log.info(
            "agent pool starts: {count} agents; open hours {hours}",
            count=len(self._agents),
            hours="want agents in" if self._open else "want agents out",
        )
        self._arm_hours(now)
        if self.outage is not None:
            self.outage.start()
        for agent in self._agents:
            agent.start()

    def stopService(self) -> Deferred[None]:
        """Stop every timer and driver; fires once each driver has ended.

        Agents are left as they are at LiveVox: the drain's steps
        (:meth:`register_drain`) pause them and log them out first.
        """
        Service.stopService(self)
        if self._hours_timer is not None and self._hours_timer.active():
            self._hours_timer.cancel()
        self._hours_timer = None
        if self.outage is not None:
            self.outage.stop()
        stopped = [agent.stop() for agent in self._agents]
        return gatherResults(stopped, consumeErrors=True).addCallback(lambda _: None)

    def register_drain(self, drain: OrderedDrain) -> None:
        """Register the pool's drain steps: pause (every agent NOT READY), then log every agent out."""
        drain.register(
            "pause agents",
            DrainPhase.PAUSE_AGENTS,
            lambda: self.pause("drain", Refusal.DRAINING),
            self.pause_timeout,
        )
        drain.register(
            "log agents out", DrainPhase.LOG_OUT_AGENTS, self.log_out_all, self.logout_timeout
        )

    # -- what is wanted of each agent ------------------------------------------------

    def _desired_for(self, agent: VirtualAgent) -> Desired:
        if self._stopping or not self._open or agent.hold is Hold.OUT:
            return Desired.OUT
        if self._pauses or agent.hold is Hold.NOT_READY:
            return Desired.PAUSED
        return Desired.IN

    def _log_in_while_paused(self, agent: VirtualAgent) -> bool:
        """Paused agents are logged in and joined, NOT READY, so a resume is one READY each.

        Not while the gateway drains: nobody is logged in only to be logged out.
        """
        return Refusal.DRAINING not in self._pauses.values()

    def _explain(self, agent: VirtualAgent) -> str:
        if self._stopping:
            return "the gateway is draining"
        if agent.hold is Hold.OUT:
            return "held out by an operator"
        if not self._open:
            return "outside open hours"
        if self._pauses:
            return "paused by " + ", ".join(self._pauses)
        if agent.hold is Hold.NOT_READY:
            return "held NOT READY by an operator"
        return "wanted READY"

    def _any_session(self) -> Session | None:
        """A session to probe LiveVox with: the first agent's that has one."""
        for agent in self._agents:
            if agent.session is not None:
                return agent.session
        return None

    def _kick_all(self, why: str) -> None:
        for agent in self._agents:
            agent.kick(why, fresh=True)

    def _settle_all(self) -> Deferred[None]:
        return gatherResults(
            [agent.when_settled() for agent in self._agents], consumeErrors=True
        ).addCallback(lambda _: None)

    # -- open hours ------------------------------------------------------------------

    def _arm_hours(self, now: float) -> None:
        change = self.schedule.next_change(now)
        if change is None:
            return
        self._hours_timer = self._clock.callLater(max(0.0, change - now), self._hours_changed)

    def _hours_changed(self) -> None:
        """Open hours' timer: agents come in or go out, and the timer is set for the next change."""
        self._hours_timer = None
        now = self._clock.seconds()
        wanted = self.schedule.agents_wanted(now)
        if wanted != self._open:
            self._open = wanted
            self._set_gauges()
            log.info(
                "open hours: agents {what} now",
                what="wanted in" if wanted else "wanted out",
                open=wanted,
            )
            self._kick_all("open hours changed")
        self._arm_hours(now)

    @property
    def open(self) -> bool:
        """Whether open hours (lead time included) want agents in now."""
        return self._open

    def _set_gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.open.set(1 if self._open else 0)
            self.metrics.paused.set(1 if self._pauses else 0)

    # -- IAgentPool --------------------------------------------------------------------

    def admit(self, phone_number: str) -> Admission:
        """Decide whether the agent of ``phone_number`` may take a call now (see :class:`IAgentPool`)."""
        agent = self._by_number.get(phone_key(phone_number))
        if agent is None:
            return Admission(None, None, Refusal.UNKNOWN_NUMBER, f"no agent has {phone_number}")
        refusal, detail = self._refusal(agent)
        if refusal is not None:
            return Admission(agent.user_name, agent.config.service_id, refusal, detail)
        reservation = Reservation(agent.user_name, self._release)
        agent.reservation = reservation
        return Admission(agent.user_name, agent.config.service_id, None, detail, reservation)

    def _release(self, reservation: Reservation) -> None:
        """Free an agent held for an INVITE that got no call record."""
        agent = self._by_user.get(reservation.user_name.casefold())
        if agent is not None and agent.reservation is reservation:
            agent.reservation = None

    def _refusal(self, agent: VirtualAgent) -> tuple[Refusal | None, str]:
        if not self.running or self._stopping:
            return Refusal.DRAINING, "the agent pool is stopping"
        if self._pauses:
            cause, refusal = next(iter(self._pauses.items()))
            return refusal, f"paused by {cause}"
        if agent.busy:
            return Refusal.ON_CALL, f"on call {agent.call_id or '(being set up)'}"
        if agent.unknown_call is not None:
            return Refusal.ON_CALL, f"LiveVox holds call {agent.unknown_call} on it"
        if not self._open:
            return Refusal.CLOSED, "outside open hours"
        if agent.hold is Hold.OUT:
            return Refusal.LOGGED_OUT, "held out by an operator"
        if agent.hold is Hold.NOT_READY:
            return Refusal.PAUSED, "held NOT READY by an operator"
        if not agent.logged_in_and_joined():
            return Refusal.LOGGED_OUT, f"not logged in and joined ({agent.state.value})"
        return None, agent.state.value

    def call_started(self, user_name: str, call_id: str) -> None:
        """The gateway accepted ``call_id`` for this agent: it is on a call."""
        agent = self._find_logged(user_name, "call_started")
        if agent is not None:
            agent.call_started(call_id)

    def call_ended(self, user_name: str, call_id: str) -> None:
        """The call's legs are down: the agent is in wrap-up."""
        agent = self._find_logged(user_name, "call_ended")
        if agent is not None:
            agent.call_ended(call_id)

    def wrapup_done(self, user_name: str, call_id: str, moved_not_ready: bool) -> None:
        """LiveVox has the call's term code: the agent is free (READY or NOT READY as it said)."""
        agent = self._find_logged(user_name, "wrapup_done")
        if agent is not None:
            agent.wrapup_done(call_id, moved_not_ready)

    def dismissed(self, user_name: str, call_id: str) -> None:
        """An operator gave up the call's wrap-up: hold the agent NOT READY, then free it of the call."""
        agent = self._find_logged(user_name, "dismissed")
        if agent is not None:
            agent.hold = Hold.NOT_READY
            agent.wrapup_done(call_id, True)

    def move_to_not_ready_after_call(self, user_name: str, close: CallClose | None = None) -> bool:
        """Return ``moveAgentToNotReady`` for this agent's next term code.

        True while the pool is paused, draining or outside open hours, or the
        agent is held by an operator; false when it is wanted READY. True for
        an unknown agent, the safe answer.
        """
        agent = self._find_logged(user_name, "move_to_not_ready_after_call")
        if agent is None:
            return True
        return moves_not_ready(agent.desired is Desired.IN, close)

    def invite_seen(self, user_name: str, call_session_id: str | None) -> None:
        """An INVITE for the agent's number arrived: a call with its Session-ID is never repaired as stranded."""
        agent = self._find_logged(user_name, "invite_seen")
        if agent is not None:
            agent.invite_seen(call_session_id)

    def session_for(self, user_name: str) -> Deferred[Session]:
        """Return the agent's session, logging it in again if it has none."""
        agent = self._by_user.get(user_name.casefold())
        if agent is None:
            return fail(UnknownAgentError(user_name))
        return agent.session_for()

    def session_expired(self, user_name: str, session: Session) -> None:
        """LiveVox answered 401 on ``session``: the agent logs in, joins and becomes READY again."""
        agent = self._find_logged(user_name, "session_expired")
        if agent is not None:
            agent.session_expired(session)

    def pause(self, cause: str, refusal: Refusal = Refusal.PAUSED) -> Deferred[None]:
        """Add a pause cause: every agent NOT READY, no call admitted; fires once all have settled."""
        if cause not in self._pauses:
            self._pauses[cause] = refusal
            self._set_gauges()
            log.info(
                "agent pool paused by {cause} (causes now: {causes})",
                cause=cause,
                causes=list(self._pauses),
            )
            self._kick_all(f"paused by {cause}")
        return self._settle_all()

    def resume(self, cause: str) -> Deferred[None]:
        """Withdraw a pause cause; with none left, agents become READY again (within open hours)."""
        if self._pauses.pop(cause, None) is not None:
            self._set_gauges()
            log.info(
                "agent pool: pause by {cause} withdrawn (causes left: {causes})",
                cause=cause,
                causes=list(self._pauses),
            )
            self._kick_all(f"pause by {cause} withdrawn")
        return self._settle_all()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(user_name, old_state, new_state)`` on every agent transition."""
        self._listeners.append(listener)

    def ready_since(self, user_name: str) -> float | None:
        """Return when the agent last became READY at LiveVox, or ``None`` (for ``stateChangedAfter``)."""
        agent = self._by_user.get(user_name.casefold())
        return agent.ready_since if agent is not None else None

    @property
    def pause_causes(self) -> list[tuple[str, Refusal]]:
        """The pause causes in force, earliest first."""
        return list(self._pauses.items())

    def _find_logged(self, user_name: str, what: str) -> VirtualAgent | None:
        agent = self._by_user.get(user_name.casefold())
        if agent is None:
            log.error("{what} for unknown agent {agent}", what=what, agent=user_name)
        return agent

    def _transitioned(
        self, agent: VirtualAgent, old: AgentState, new: AgentState, reason: str
    ) -> None:
        if self.metrics is not None:
            self.metrics.moved(old, new)
        for listener in list(self._listeners):
            try:
                listener(agent.user_name, old.value, new.value)
            except Exception:
                log.failure("agent pool listener {listener} raised", listener=listener)

    # -- drain -----------------------------------------------------------------------

    def log_out_all(self) -> Deferred[None]:
        """Log every agent out (the drain's last agent step); agents on a call go after their wrap-up.

        Fires once no agent has a session. The drain bounds it.
        """
        if not self._stopping:
            self._stopping = True
            log.info("agent pool: logging every agent out")
            self._kick_all("logging every agent out")
        return Deferred.fromCoroutine(self._all_logged_out())

    async def _all_logged_out(self) -> None:
        while True:
            await self._settle_all()
            remaining = [a for a in self._agents if a.session is not None]
            if not remaining:
                return
            await DeferredList(
                [a.when_changed() for a in remaining], fireOnOneCallback=True, consumeErrors=True
            )

    # -- operators ---------------------------------------------------------------------

    def agent(self, user_name: str) -> VirtualAgent:
        """Return an agent by user name, in any case.

        :raises UnknownAgentError: when the pool has no such agent.
        """
        agent = self._by_user.get(user_name.casefold())
        if agent is None:
            raise UnknownAgentError(user_name)
        return agent

    def force_ready(self, user_name: str) -> Deferred[AgentView]:
        """Clear an operator's hold on the agent and retry at once; fires with its view once settled.

        The agent becomes READY only where the pool wants agents in (open
        hours, not paused or draining).

        :raises UnknownAgentError: when the pool has no such agent.
        """
        return self._act(user_name, "ready", lambda a: a.set_hold(None))

    def force_not_ready(self, user_name: str) -> Deferred[AgentView]:
        """Hold the agent NOT READY until an operator readies it or logs it in.

        :raises UnknownAgentError: when the pool has no such agent.
        """
        return self._act(user_name, "not ready", lambda a: a.set_hold(Hold.NOT_READY))

    def force_log_out(self, user_name: str) -> Deferred[AgentView]:
        """Log the agent out (after its wrap-up if on a call) and keep it out until logged in.

        :raises UnknownAgentError: when the pool has no such agent.
        """
        return self._act(user_name, "log out", lambda a: a.set_hold(Hold.OUT))

    def force_log_in(self, user_name: str) -> Deferred[AgentView]:
        """Clear any hold and a refused login's wait, and bring the agent in at once.

        :raises UnknownAgentError: when the pool has no such agent.
        """

        def log_in(agent: VirtualAgent) -> None:
            agent.hold = None
            agent.allow_login()

        return self._act(user_name, "log in", log_in)

    def _act(
        self, user_name: str, action: str, act: Callable[[VirtualAgent], None]
    ) -> Deferred[AgentView]:
        agent = self.agent(user_name)
        log.info("operator action on agent {agent}: {action}", agent=agent.user_name, action=action)
        act(agent)
        return agent.when_settled().addCallback(lambda _: agent.view())

    # -- reading -----------------------------------------------------------------------

    def views(self) -> list[AgentView]:
        """Return a snapshot of every agent, in config order."""
        return [agent.view() for agent in self._agents]

    def counts(self) -> dict[str, int]:
        """Return how many agents are in each state (every state named)."""
        counts = Counter(a.state.value for a in self._agents)
        return {state.value: counts.get(state.value, 0) for state in AgentState}

    def describe(self) -> dict[str, object]:
        """Return the pool as a JSON-ready mapping, for ``GET /agents``."""
        now = self._clock.seconds()
        return {
            "agents": [view.to_json() for view in self.views()],
            "counts": self.counts(),
            "pause_causes": [
                {"cause": cause, "refusal": refusal.name.lower()}
                for cause, refusal in self._pauses.items()
            ],
            "open": self._open,
            "next_hours_change": self.schedule.next_change(now),
            "stopping": self._stopping,
            "now": now,
        }

    def table(self) -> str:
        """Return a plain-text table of the agents, for the manhole."""
        rows = [("agent", "number", "state", "since", "reason")]
        now = self._clock.seconds()
        for view in self.views():
            rows.append(
                (
                    view.user_name,
                    view.phone_number,
                    view.state.value,
                    f"{now - view.since:.0f}s ago",
                    view.reason,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
            for row in rows
        )
