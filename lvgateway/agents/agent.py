"""One virtual agent: its facts, its state machine, and the driver that reconciles it with LiveVox.

Each :class:`VirtualAgent` keeps what the gateway knows of the agent at
LiveVox (its session, whether it joined its service, whether it is READY,
the call it is on) and what the pool wants of it (:class:`~.state.Desired`,
asked of the pool each time). A single *driver* coroutine per agent plans
the next LiveVox call from those facts, makes it, records the outcome, and
plans again until nothing is left to do; events (a call starting or ending,
a pause, a timer) change the facts or the wish and *kick* the driver. So
two operations on one agent never overlap, and an agent on a call or in
wrap-up is never touched at LiveVox: the plan is empty until the wrap-up is
done.

The plan, in order (see :meth:`VirtualAgent._plan`):

- on a call or in wrap-up: nothing;
- wanted out: NOT READY if READY, then log out;
- login denied: nothing;
- LiveVox holding a call the gateway does not know: status polls, and once
  it has been held past the grace, its repair (see
  :mod:`~lvgateway.agents.stranded`); only polls when it cannot be repaired;
- wanted paused: logged in and joined but NOT READY (so a resume is one
  READY), except while the gateway drains, when nobody is logged in only to
  be logged out;
- wanted in: log in, join, READY; then the hourly cycle (NOT READY, READY)
  when its slot comes, and the reconciliation poll when it is due.

A failure backs off (exponential, jittered, capped); a 401 drops the session
and logs in again; a refused login waits long (see
:data:`~.state.DENIED_RETRY_DELAYS`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from lvgateway.agents.interfaces import Reservation
from lvgateway.agents.metrics import AgentMetrics
from lvgateway.agents.reconcile import assess
from lvgateway.agents.state import (
    AgentState,
    AgentView,
    Desired,
    Hold,
    cycle_needed,
    moves_not_ready,
    next_slot,
)
from lvgateway.agents.stranded import (
    REPAIRABLE_STATES,
    RecentInvites,
    RepairError,
    StrandedCall,
    StrandedRepairer,
    stranded_call,
)
from lvgateway.backoff import Backoff
from lvgateway.config.model import AgentConfig, AgentTimings
from lvgateway.livevox.errors import (
    LiveVoxClientError,
    LiveVoxError,
    LoginDeniedError,
    SessionExpiredError,
)
from lvgateway.livevox.interfaces import ILiveVoxAgentAPI
from lvgateway.livevox.parsing import AgentStatus, Session

if TYPE_CHECKING:
    from lvgateway.agents.outage import OutageWatch

__all__ = ["AgentContext", "Step", "VirtualAgent"]

log = Logger("lvgateway.agents")

#: How long a session handed out by ``session_for`` outside a known call (a
#: wrap-up re-driven after a restart) is kept from being logged out.
LEND_GRACE = 120.0


class Step(enum.Enum):
    """One LiveVox call the driver can make for an agent; the value is its operation label."""

    LOGIN = "login"
    JOIN = "join"
    READY = "ready"
    NOT_READY = "not_ready"
    CYCLE = "cycle"
    LOGOUT = "logout"
    STATUS = "status"
    REPAIR = "repair"

    @property
    def operation(self) -> str:
        """The ``operation`` label of ``lvgateway_agent_failures_total``."""
        return "not_ready" if self is Step.CYCLE else self.value


@attrs.define(eq=False)
class AgentContext:
    """What every agent of one pool shares: the clock, LiveVox, pacing, and the pool's wishes.

    :param clock: the clock every timer runs on.
    :param api: LiveVox's agent API.
    :param timings: the pacing settings.
    :param login_slots: bounds the agents logging in, joining and becoming READY at once.
    :param desired: asks the pool what it wants of an agent now.
    :param transitioned: told of every change of state, with the reason.
    :param metrics: the pool's metrics, if any.
    :param jitter: returns a number in ``[0, 1)`` for the backoff.
    :param password_warning_days: warn at login when the password expires this soon.
    :param denied_retry_delays: waits before retrying a refused login.
    :param count: how many agents the pool has (for the staggering).
    :param epoch: when the pool started (for the cycle slots).
    :param recheck_delay: how soon an unexplained call at LiveVox is looked at again.
    :param explain: says why the pool wants an agent paused or out (for the reasons).
    :param log_in_while_paused: whether a paused agent is logged in and joined
        (NOT READY) so that a resume needs only READY; not while draining.
    :param repairer: closes calls LiveVox holds that the gateway does not
        know; ``None``: such calls are only reported.
    :param outage: while LiveVox is down, holds every agent back (it probes
        for all of them); ``None``: each agent backs off on its own.
    """

    clock: IReactorTime
    api: ILiveVoxAgentAPI
    timings: AgentTimings
    login_slots: DeferredSemaphore
    desired: Callable[[VirtualAgent], Desired]
    transitioned: Callable[[VirtualAgent, AgentState, AgentState, str], None]
    metrics: AgentMetrics | None = None
    jitter: Callable[[], float] = lambda: 0.5
    password_warning_days: int = 14
    denied_retry_delays: tuple[float, ...] = ()
    count: int = 1
    epoch: float = 0.0
    recheck_delay: float = 30.0
    explain: Callable[[VirtualAgent], str] = lambda agent: agent.desired.value
    log_in_while_paused: Callable[[VirtualAgent], bool] = lambda agent: True
    repairer: StrandedRepairer | None = None
    outage: OutageWatch | None = None


Plan = tuple[Step, AgentState, str]


class VirtualAgent:
    """One virtual agent's state machine and driver.

    :param config: the agent as configured.
    :param index: its position in the config, from 0 (its cycle and poll slots).
    :param context: what the pool's agents share.
    """

    def __init__(self, config: AgentConfig, index: int, context: AgentContext) -> None:
        self.config = config
        self.index = index
        self._ctx = context
        self.state = AgentState.LOGGED_OUT
        self.since = context.clock.seconds()
        self.reason = "not started"
        self.last_error: str | None = None
        # What the gateway knows of the agent at LiveVox.
        self.session: Session | None = None
        self.joined = False
        #: Whether LiveVox has the agent READY; ``None`` after a request
        #: whose outcome is unknown.
        self.lv_ready: bool | None = False
        self.ready_since: float | None = None
        #: When the gateway (or a wrap-up) last changed the agent's state at LiveVox.
        self.last_change: float | None = None
        self.password_days: int | None = None
        # The call the gateway has on it, or the INVITE it is held for.
        self.call_id: str | None = None
        self.reservation: Reservation | None = None
        self.in_wrapup = False
        # Wishes and holds.
        self.hold: Hold | None = None
        self.denied: LoginDeniedError | None = None
        self._denied_retries = 0
        self._denied_reason = ""
        # Pacing.
        self._failures = 0
        self._expired_streak = 0
        self._retry: IDelayedCall | None = None
        self._cycle_timer: IDelayedCall | None = None
        self._reconcile_timer: IDelayedCall | None = None
        self._recheck_timer: IDelayedCall | None = None
        self._lend_timer: IDelayedCall | None = None
        self.cycle_due = False
        self._cycling = False
        self.reconcile_due = False
        self._look_first = False
        self._busy_key: str | None = None
        #: When the gateway first saw the call of ``_busy_key`` at LiveVox.
        self._busy_since: float | None = None
        self.unknown_call: str | None = None
        #: A stranded call to close now (from a status read past the grace).
        self._stranded: StrandedCall | None = None
        #: The busy key whose "cannot be repaired" was already counted.
        self._noted: str | None = None
        #: The stranded call last logged, with why a person must close it (if so).
        self._stranded_logged: tuple[str | None, str | None] | None = None
        #: The Session-IDs of the latest INVITEs for the agent's number.
        self.invites = RecentInvites()
        self._lent_until = 0.0
        self._relogin_cause: str | None = None
        # The driver.
        self._active = False
        self._driving = False
        self._driver: Deferred[None] | None = None
        self._dirty = False
        self._slot_wait: Deferred[DeferredSemaphore] | None = None
        self._slot_held = False
        self._settle_waiters: list[Deferred[None]] = []
        self._change_waiters: list[Deferred[None]] = []
        # The login shared between the driver and session_for.
        self._login_waiters: list[Deferred[Session]] = []
        self._login_running: Deferred[Session] | None = None

    def __repr__(self) -> str:
        return f"<VirtualAgent {self.config.user_name} {self.state.value}: {self.reason}>"

    # -- what others read ----------------------------------------------------------

    @property
    def user_name(self) -> str:
        """The agent's LiveVox login."""
        return self.config.user_name

    @property
    def desired(self) -> Desired:
        """What the pool wants of the agent now."""
        return self._ctx.desired(self)

    @property
    def busy(self) -> bool:
        """Whether the gateway has a call on the agent (being set up, on it, or in its wrap-up)."""
        return self.call_id is not None or self.reservation is not None

    @property
    def settled(self) -> bool:
        """Whether the driver has nothing under way."""
        return not self._driving

    def view(self) -> AgentView:
        """Return a snapshot of the agent."""
        return AgentView(
            user_name=self.config.user_name,
            phone_number=self.config.phone_number,
            service_id=self.config.service_id,
            state=self.state,
            since=self.since,
            reason=self.reason,
            desired=self.desired,
            last_error=self.last_error,
            call_id=self.call_id,
            hold=self.hold,
            session=self.session.short_id if self.session is not None else None,
            ready_since=self.ready_since,
            password_expires_in_days=self.password_days,
            unknown_call=self.unknown_call,
        )

    def logged_in_and_joined(self) -> bool:
        """Whether the agent has a session and is in its service, as far as the gateway knows."""
        return self.session is not None and self.joined

    def when_settled(self) -> Deferred[None]:
        """Return a Deferred that fires once the driver has nothing under way."""
        if not self._driving:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._settle_waiters.append(d)
        return d

    def when_changed(self) -> Deferred[None]:
        """Return a Deferred that fires at the agent's next transition."""
        d: Deferred[None] = Deferred()
        self._change_waiters.append(d)
        return d

    # -- life ----------------------------------------------------------------------

    def start(self) -> None:
        """Arm the cycle and poll timers and bring the agent to what the pool wants."""
        self._active = True
        self._arm_cycle()
        self._arm_reconcile()
        self.kick("start")

    def stop(self) -> Deferred[None]:
        """Cancel every timer and the driver's LiveVox call; fire once the driver has ended."""
        self._active = False
        for timer in (
            self._retry,
            self._cycle_timer,
            self._reconcile_timer,
            self._recheck_timer,
            self._lend_timer,
        ):
            if timer is not None and timer.active():
                timer.cancel()
        self._retry = self._cycle_timer = self._reconcile_timer = None
        self._recheck_timer = self._lend_timer = None
        settled = self.when_settled()
        if self._driver is not None:
            self._driver.cancel()
        if self._login_running is not None:
            self._login_running.cancel()
        return settled

    def kick(self, why: str, *, fresh: bool = False) -> None:
        """Make the driver plan again.

        :param why: for the debug log.
        :param fresh: what the pool wants changed: a pending backoff is
            dropped and the change is tried at once.
        """
        if not self._active:
            return
        if fresh:
            self._drop_backoff()
        if self._driving:
            self._dirty = True
            if fresh and self._slot_wait is not None:
                plan = self._plan()
                if plan is None or plan[0] not in (Step.LOGIN, Step.JOIN):
                    self._slot_wait.cancel()
            return
        log.debug("agent {agent}: driver runs ({why})", agent=self.user_name, why=why)
        self._driving = True
        d = Deferred.fromCoroutine(self._drive())
        if self._driving:
            self._driver = d
        d.addErrback(self._driver_failed)

    def _driver_failed(self, failure: Failure) -> None:
        if isinstance(failure.value, CancelledError) and not self._active:
            return
        log.failure("agent {agent}: driver failed", failure, agent=self.user_name)

    # -- events from calls, wrap-ups and operators ---------------------------------------

    def call_started(self, call_id: str) -> None:
        """The gateway accepted ``call_id`` for this agent."""
        if self.call_id is not None and self.call_id != call_id:
            log.warn(
                "agent {agent}: call {call_id} started while call {previous} was still known",
                agent=self.user_name,
                call_id=call_id,
                previous=self.call_id,
            )
        self.call_id = call_id
        self.reservation = None  # the call holds the agent from here on
        self.in_wrapup = False
        self.lv_ready = False
        self._cycling = False
        self._clear_busy()
        self._transition(AgentState.ON_CALL, f"call {call_id}")

    def call_ended(self, call_id: str) -> None:
        """The legs of ``call_id`` are down: the agent is in wrap-up."""
        if self.call_id != call_id:
            log.warn(
                "agent {agent}: call {call_id} ended, but the agent's call is {current}",
                agent=self.user_name,
                call_id=call_id,
                current=self.call_id,
            )
            if self.call_id is not None:
                return
            self.call_id = call_id
        self.in_wrapup = True
        self._transition(AgentState.WRAP_UP, f"call {call_id} ended; wrap-up")

    def wrapup_done(self, call_id: str, moved_not_ready: bool) -> None:
        """LiveVox has the call's term code; the agent is READY or NOT READY as it said."""
        if self.call_id is not None and self.call_id != call_id:
            log.warn(
                "agent {agent}: wrap-up of {call_id} done while on call {current}: ignored",
                agent=self.user_name,
                call_id=call_id,
                current=self.call_id,
            )
            return
        self.call_id = None
        self.in_wrapup = False
        self._lent_until = 0.0
        self.lv_ready = not moved_not_ready
        self.last_change = self._ctx.clock.seconds()
        if not moved_not_ready:
            self.ready_since = self.last_change
        self.kick(f"wrap-up of {call_id} done", fresh=True)

    def invite_seen(self, call_session_id: str | None) -> None:
        """An INVITE for the agent's number arrived (accepted or refused): its call is not stranded."""
        self.invites.add(call_session_id)

    def session_expired(self, session: Session) -> None:
        """LiveVox answered 401 on ``session``: log in again unless that already happened."""
        if self.session is not None and self.session.session_id == session.session_id:
            self._lose_session("expired", "LiveVox answered 401: session expired")
            self.kick("session expired")

    def session_for(self) -> Deferred[Session]:
        """Return the current session, logging in when there is none (for a wrap-up)."""
        if self.call_id is None:
            self._lend()
        if self.session is not None:
            return succeed(self.session)
        if self.denied is not None:
            return fail(self.denied)
        return self._login_shared()

    def set_hold(self, hold: Hold | None) -> None:
        """Set or clear an operator's hold, and act on it at once."""
        self.hold = hold
        self.kick(f"hold {hold.value if hold else 'cleared'}", fresh=True)

    def allow_login(self) -> None:
        """Forget a refused login and its retries: try again at once (an operator's log-in)."""
        self.denied = None
        self._denied_retries = 0
        self._failures = 0
        self.kick("operator log-in", fresh=True)

    # -- the driver ----------------------------------------------------------------

    def _plan(self) -> Plan | None:
        """Return the next LiveVox call to make, with the state to show, or ``None``."""
        if self.call_id is not None:
            return None
        desired = self.desired
        if desired is Desired.OUT:
            if self.session is None or self._ctx.clock.seconds() < self._lent_until:
                return None
            why = self._out_reason()
            if self.joined and self.lv_ready is not False:
                return Step.NOT_READY, AgentState.CLOSING, why
            return Step.LOGOUT, AgentState.CLOSING, why
        if self.denied is not None:
            return None
        if self._stranded is not None and self.session is not None:
            return (
                Step.REPAIR,
                AgentState.WRAP_UP,
                f"closing call {self._stranded.describe()}, held by LiveVox and unknown"
                " to the gateway",
            )
        if self.session is not None and (
            self._look_first
            or (self.reconcile_due and (self.unknown_call or self._busy_key is not None))
        ):
            return Step.STATUS, self.state, "looking at LiveVox"
        if self.unknown_call is not None or self._busy_key is not None:
            return None
        if desired is Desired.PAUSED:
            bring_in = self._ctx.log_in_while_paused(self)
            if self.session is None:
                if bring_in:
                    return Step.LOGIN, AgentState.LOGGING_IN, self._login_reason() + " (paused)"
                return None
            if not self.joined and bring_in:
                return (
                    Step.JOIN,
                    AgentState.JOINING,
                    f"joining service {self.config.service_id} (paused: stays NOT READY)",
                )
            if self.joined and (self.lv_ready is not False or self.cycle_due):
                return Step.NOT_READY, AgentState.PAUSED, self._pause_reason()
            if self.reconcile_due:
                return Step.STATUS, self.state, "reconciling"
            return None
        if self.session is None:
            return Step.LOGIN, AgentState.LOGGING_IN, self._login_reason()
        if not self.joined:
            return (
                Step.JOIN,
                AgentState.JOINING,
                f"joining service {self.config.service_id} on {self.config.phone_number}",
            )
        if self.lv_ready is not True:
            if self._cycling:
                return Step.READY, AgentState.CYCLING, "hourly cycle: READY again"
            return Step.READY, AgentState.BECOMING_READY, "setting READY"
        if self.cycle_due:
            return Step.CYCLE, AgentState.CYCLING, "hourly cycle: NOT READY"
        if self.reconcile_due:
            return Step.STATUS, self.state, "reconciling"
        return None

    def _out_reason(self) -> str:
        return "logging out: " + self._ctx.explain(self)

    def _pause_reason(self) -> str:
        return "NOT READY: " + self._ctx.explain(self)

    def _login_reason(self) -> str:
        if self._relogin_cause is not None:
            return f"logging in again ({self._relogin_cause})"
        return "logging in"

    async def _drive(self) -> None:
        """Plan and make LiveVox calls one at a time until there is nothing left to do."""
        try:
            while self._active:
                self._dirty = False
                plan = self._plan()
                if plan is not None and self._retry is not None:
                    plan = None  # backing off: the retry timer kicks again
                outage = self._ctx.outage
                if plan is not None and outage is not None and outage.holds(self):
                    # LiveVox is down: the watch probes and kicks this agent once it answers.
                    self._transition(
                        AgentState.BACKING_OFF,
                        f"waiting for LiveVox to answer ({plan[0].value} next)",
                    )
                    return
                if plan is None:
                    if self._dirty:
                        continue
                    self._rest()
                    if self._dirty:
                        continue  # a listener of that transition kicked the agent
                    return
                step, state, reason = plan
                if step in (Step.LOGIN, Step.JOIN) and not self._slot_held:
                    if self.state is not state:
                        self._transition(state, f"{reason}: waiting for a login slot")
                    await self._take_slot()
                    continue
                if step not in (Step.LOGIN, Step.JOIN, Step.READY):
                    self._give_slot()
                if step is not Step.STATUS:
                    self._transition(state, reason)
                await self._perform(step)
        finally:
            self._give_slot()
            self._driving = False
            self._driver = None
            waiters, self._settle_waiters = self._settle_waiters, []
            for d in waiters:
                if not d.called:
                    d.callback(None)

    async def _take_slot(self) -> None:
        """Wait for a login slot; a fresh kick may cancel the wait to plan again."""
        d = self._ctx.login_slots.acquire()
        self._slot_wait = d
        try:
            await d
        except CancelledError:
            if not self._active:
                raise
            return
        finally:
            self._slot_wait = None
        self._slot_held = True

    def _give_slot(self) -> None:
        if self._slot_held:
            self._slot_held = False
            self._ctx.login_slots.release()

    def _rest(self) -> None:
        """Nothing left to do: show where the agent rests, and forget past failures."""
        state, reason = self._resting()
        # A pending retry keeps its failures even where the agent shows
        # another state (on a call LiveVox holds), so the backoff still grows.
        if state not in (AgentState.BACKING_OFF, AgentState.LOGIN_DENIED) and self._retry is None:
            self._failures = 0
            self._expired_streak = 0
        self._transition(state, reason)

    def _resting(self) -> tuple[AgentState, str]:
        if self.call_id is not None:
            if self.in_wrapup:
                return AgentState.WRAP_UP, f"call {self.call_id} ended; wrap-up"
            return AgentState.ON_CALL, f"call {self.call_id}"
        if self.unknown_call is not None:
            return (
                AgentState.ON_CALL,
                f"LiveVox holds call {self.unknown_call}, unknown to the gateway",
            )
        if self._retry is not None and self.denied is None:
            return AgentState.BACKING_OFF, self.reason
        desired = self.desired
        if self.session is None:
            if self.denied is not None and desired is not Desired.OUT:
                return AgentState.LOGIN_DENIED, self._denied_reason
            if desired is Desired.OUT:
                return AgentState.LOGGED_OUT, self._out_reason().replace("logging out: ", "")
            if desired is Desired.PAUSED:
                return AgentState.LOGGED_OUT, "not logged in while paused"
            return AgentState.LOGGED_OUT, "not logged in"
        if desired is Desired.PAUSED:
            return AgentState.PAUSED, self._pause_reason()
        if desired is Desired.OUT:
            return AgentState.CLOSING, "logging out once its session is no longer lent"
        if self.lv_ready is True:
            return AgentState.READY, "READY"
        if self._busy_key is not None:
            return AgentState.READY, "LiveVox may have dispatched a call; looking again shortly"
        return self.state, self.reason

    async def _perform(self, step: Step) -> None:
        """Make one LiveVox call and record what it did, or what its failure means."""
        api = self._ctx.api
        session = self.session
        reason_code = self._ctx.timings.not_ready_reason
        try:
            if step is Step.LOGIN:
                await self._login_shared()
                return
            assert session is not None
            if step is Step.JOIN:
                await api.join_service(session, self.config.service_id, self.config.phone_number)
                if self.session is session:
                    self.joined = True
                    self.lv_ready = False
                    self.last_change = self._ctx.clock.seconds()
            elif step is Step.READY:
                await api.ready(session)
                self._expired_streak = 0
                if self.session is session and self.call_id is None:
                    self.lv_ready = True
                    self.cycle_due = False
                    self.ready_since = self.last_change = self._ctx.clock.seconds()
                    if self._cycling:
                        self._cycling = False
                        self._count_cycle("done")
                self._give_slot()
            elif step in (Step.NOT_READY, Step.CYCLE):
                await api.not_ready(session, reason_code)
                if self.session is session and self.call_id is None:
                    self.lv_ready = False
                    self.cycle_due = False
                    self._cycling = step is Step.CYCLE
                    self.last_change = self._ctx.clock.seconds()
            elif step is Step.LOGOUT:
                await api.logout(session)
                if self.session is session:
                    self._forget_session()
            elif step is Step.REPAIR:
                await self._repair(session)
            elif step is Step.STATUS:
                self._look_first = False
                self._stranded = None
                status = await api.agent_status(session)
                self.reconcile_due = False
                if self.session is session:
                    self._reconciled(status)
        except CancelledError as e:
            if not self._active:
                raise
            self._on_failure(step, e)
        except SessionExpiredError as e:
            self._on_expired(step, session, e)
        except LoginDeniedError:
            pass  # recorded by the login itself
        except LiveVoxClientError as e:
            self._on_refused(step, e)
        except LiveVoxError as e:
            self._on_failure(step, e)
        except Exception as e:
            log.failure("agent {agent}: {step} raised", agent=self.user_name, step=step.value)
            self._on_failure(step, e)

    # -- login ---------------------------------------------------------------------

    def _login_shared(self) -> Deferred[Session]:
        """Log in once for every caller waiting: the driver and ``session_for`` share it."""
        waiter: Deferred[Session] = Deferred()
        self._login_waiters.append(waiter)
        if self._login_running is None:
            running = Deferred.fromCoroutine(self._login())
            if not running.called:
                self._login_running = running
            running.addBoth(self._login_finished)
        return waiter

    def _login_finished(self, result: Session | Failure) -> None:
        self._login_running = None
        waiters, self._login_waiters = self._login_waiters, []
        for waiter in waiters:
            if waiter.called:
                continue
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _login(self) -> Session:
        """Log in at LiveVox, and record the session or the refusal."""
        metrics = self._ctx.metrics
        try:
            session = await self._ctx.api.login(self.config.user_name, self.config.password, True)
        except LoginDeniedError as e:
            if metrics is not None:
                metrics.logins.labels(outcome="denied").inc()
            self._on_denied(e)
            raise
        except CancelledError:
            raise
        except Exception:
            if metrics is not None:
                metrics.logins.labels(outcome="failed").inc()
            raise
        if metrics is not None:
            metrics.logins.labels(outcome="success").inc()
            if self._relogin_cause is not None:
                metrics.relogins.labels(cause=self._relogin_cause).inc()
        self._relogin_cause = None
        self.session = session
        self.joined = False
        self.lv_ready = False
        self.denied = None
        self._denied_retries = 0
        self.password_days = session.days_until_password_expires
        days = session.days_until_password_expires
        if days is not None and days <= self._ctx.password_warning_days:
            log.warn(
                "agent {agent}: its LiveVox password expires in {days} days",
                agent=self.user_name,
                days=days,
            )
        log.info(
            "agent {agent}: logged in, session {session}",
            agent=self.user_name,
            session=session.short_id,
        )
        return session

    def _lend(self) -> None:
        """Keep the session from being logged out for a while: a wrap-up is using it."""
        self._lent_until = self._ctx.clock.seconds() + LEND_GRACE
        if self._lend_timer is not None and self._lend_timer.active():
            self._lend_timer.cancel()
        self._lend_timer = self._ctx.clock.callLater(LEND_GRACE, self._lend_over)

    def _lend_over(self) -> None:
        self._lend_timer = None
        self.kick("session no longer lent")

    def _lose_session(self, cause: str, why: str) -> None:
        """Forget a session LiveVox no longer accepts; the next login counts as a re-login."""
        if self.session is None:
            return
        log.info(
            "agent {agent}: session {session} lost: {why}",
            agent=self.user_name,
            session=self.session.short_id,
            why=why,
        )
        self.last_error = why
        self._relogin_cause = cause
        self._forget_session()

    def _forget_session(self) -> None:
        self.session = None
        self.joined = False
        self.lv_ready = False
        self._cycling = False
        self.cycle_due = False
        self._clear_busy()
        self._look_first = False

    def _clear_busy(self) -> None:
        """Forget the call LiveVox was seen holding: the gateway has a call, or no session."""
        self._busy_key = None
        self._busy_since = None
        self._stranded = None
        self._noted = None
        self.unknown_call = None

    # -- failures ------------------------------------------------------------------

    def _on_expired(self, step: Step, session: Session | None, error: SessionExpiredError) -> None:
        if step is Step.STATUS:
            self.reconcile_due = False
            self._count_drift("logged_out", "LiveVox answered 401 to the status poll")
        if session is not None and self.session is session:
            self._lose_session("expired", f"LiveVox answered 401 to {step.value}")
        self._expired_streak += 1
        if self._expired_streak > 1:
            self._back_off(step, error)

    def _on_denied(self, error: LoginDeniedError) -> None:
        """Record a refused login and when (if ever) it is tried again by itself."""
        self.denied = error
        self.last_error = str(error)
        message = error.message or str(error)
        retries = self._ctx.denied_retry_delays
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._denied_retries < len(retries):
            delay = retries[self._denied_retries]
            self._denied_retries += 1
            self._retry = self._ctx.clock.callLater(delay, self._retry_denied)
            reason = (
                f"login refused by LiveVox: {message}; trying again in {delay:.0f}s "
                f"({self._denied_retries} of {len(retries)})"
            )
        else:
            reason = f"login refused by LiveVox: {message}; an operator must log it in"
        log.error(
            "agent {agent}: login refused by LiveVox: {message}",
            agent=self.user_name,
            message=message,
        )
        self._denied_reason = reason
        if self.call_id is None:
            self._transition(AgentState.LOGIN_DENIED, reason)

    def _retry_denied(self) -> None:
        self._retry = None
        self.denied = None
        self.kick("retrying a refused login")

    def _on_refused(self, step: Step, error: LiveVoxClientError) -> None:
        """A 4xx other than 401: the request will not work as it is."""
        self._count_failure(step)
        self.last_error = str(error)
        if self.call_id is not None:
            return  # a call came meanwhile: LiveVox refuses state changes on a call
        if step is Step.LOGOUT:
            self._forget_session()
            return
        if step in (Step.NOT_READY, Step.CYCLE) and self.desired is Desired.OUT:
            self.lv_ready = False  # closing: log out regardless
            return
        if step in (Step.READY, Step.NOT_READY, Step.CYCLE):
            # LiveVox refused a state change: look at its status before trying again.
            self.lv_ready = None
            self._look_first = True
            if self._cycling or step is Step.CYCLE:
                self._cycling = False
                self.cycle_due = False
                self._count_cycle("failed")
        self._back_off(step, error)

    def _on_failure(self, step: Step, error: Exception) -> None:
        """LiveVox was unavailable, or something unexpected happened: back off and retry."""
        self._count_failure(step)
        self.last_error = str(error)
        if step in (Step.READY, Step.NOT_READY, Step.CYCLE):
            self.lv_ready = None  # it may have been applied
        if self.call_id is not None:
            return
        if self._ctx.outage is not None and self._ctx.outage.active:
            return  # the driver plans again and waits on the outage watch
        self._back_off(step, error)

    def _back_off(self, step: Step, error: Exception) -> None:
        timings = self._ctx.timings
        self._failures += 1
        backoff = Backoff(timings.backoff_base, timings.backoff_max, self._ctx.jitter)
        delay = backoff.delay(self._failures - 1)
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = self._ctx.clock.callLater(delay, self._retry_fired)
        self._transition(
            AgentState.BACKING_OFF,
            f"{step.value} failed ({error}); attempt {self._failures + 1} in {delay:.1f}s",
        )

    def _retry_fired(self) -> None:
        self._retry = None
        self.kick("backoff over")

    def _drop_backoff(self) -> None:
        if self._retry is not None and self.denied is None:
            if self._retry.active():
                self._retry.cancel()
            self._retry = None

    def _count_failure(self, step: Step) -> None:
        # A repair's failures are counted in lvgateway_agent_repairs_total.
        if self._ctx.metrics is not None and step not in (Step.LOGIN, Step.REPAIR):
            self._ctx.metrics.failures.labels(operation=step.operation).inc()

    def _count_cycle(self, outcome: str) -> None:
        if self._ctx.metrics is not None:
            self._ctx.metrics.cycles.labels(outcome=outcome).inc()

    def _count_repair(self, outcome: str) -> None:
        if self._ctx.metrics is not None:
            self._ctx.metrics.repairs.labels(outcome=outcome).inc()

    def _count_drift(self, kind: str, detail: str, human: str | None = None) -> None:
        """Count a drift and log it; ``human`` says why a call LiveVox holds is left to a person."""
        if self._ctx.metrics is not None:
            self._ctx.metrics.drifts.labels(kind=kind).inc()
        if kind == "unknown_call" and human is not None:
            log.error(
                "agent {agent}: drift {kind}: {detail}; a human must close it at LiveVox: {why}",
                agent=self.user_name,
                kind=kind,
                detail=detail,
                why=human,
            )
        elif kind == "unknown_call":
            repairer = self._ctx.repairer
            log.warn(
                "agent {agent}: drift {kind}: {detail}; closed with term code {term_code}"
                " once held {grace:.0f}s",
                agent=self.user_name,
                kind=kind,
                detail=detail,
                term_code=repairer.settings.term_code if repairer is not None else None,
                grace=repairer.grace if repairer is not None else 0.0,
            )
        else:
            log.warn(
                "agent {agent}: drift {kind}: {detail}; repairing",
                agent=self.user_name,
                kind=kind,
                detail=detail,
            )

    # -- the hourly cycle and reconciliation ----------------------------------------------

    def _arm_cycle(self) -> None:
        now = self._ctx.clock.seconds()
        interval = self._ctx.timings.cycle_interval
        at = next_slot(now, self._ctx.epoch, interval, self.index, self._ctx.count)
        self._cycle_timer = self._ctx.clock.callLater(at - now, self._cycle_slot)

    def _cycle_slot(self) -> None:
        """The agent's slot in the hourly cycle: cycle it if idle, after its wrap-up if not."""
        self._cycle_timer = None
        self._arm_cycle()
        if self.session is None or self.unknown_call is not None:
            return
        now = self._ctx.clock.seconds()
        if self.call_id is None and not cycle_needed(
            now, self.last_change, self._ctx.timings.cycle_interval
        ):
            self._count_cycle("skipped")
            log.debug(
                "agent {agent}: hourly cycle skipped: its state changed {ago:.0f}s ago",
                agent=self.user_name,
                ago=now - (self.last_change or now),
            )
            return
        self.cycle_due = True
        if self.call_id is not None:
            self._count_cycle("deferred")
            log.info(
                "agent {agent}: hourly cycle deferred until call {call_id} is wrapped up",
                agent=self.user_name,
                call_id=self.call_id,
            )
            return
        self.kick("hourly cycle")

    def _arm_reconcile(self) -> None:
        now = self._ctx.clock.seconds()
        interval = self._ctx.timings.reconcile_interval
        at = next_slot(now, self._ctx.epoch, interval, self.index, self._ctx.count)
        self._reconcile_timer = self._ctx.clock.callLater(at - now, self._reconcile_slot)

    def _reconcile_slot(self) -> None:
        self._reconcile_timer = None
        self._arm_reconcile()
        if self.session is None or self.call_id is not None:
            return
        self.reconcile_due = True
        self.kick("reconciliation")

    def _recheck(self) -> None:
        self._recheck_timer = None
        if self.session is None or self.call_id is not None:
            return
        self.reconcile_due = True
        self.kick("looking again at a call LiveVox holds")

    def _reconciled(self, status: AgentStatus) -> None:
        """Act on a status poll: record what LiveVox said, count and repair any drift."""
        if self.call_id is not None:
            return
        finding = assess(
            status,
            believed_ready=self.lv_ready,
            desired=self.desired,
            previous_busy_key=self._busy_key,
        )
        now = self._ctx.clock.seconds()
        if finding.busy_key != self._busy_key:
            self._busy_since = now if finding.busy_key is not None else None
            self._noted = None
        self._busy_key = finding.busy_key
        self._stranded = None
        if finding.busy_key is not None and finding.unknown_call is None:
            self._look_again(self._ctx.recheck_delay)
        human = None
        if finding.unknown_call is not None:
            human = self._weigh_stranded(status, finding.unknown_call, now)
        if finding.kind == "unknown_call":
            # The same stranded call is seen at every reconciliation until it
            # is closed: counted and logged once, and again only when what
            # is to be done about it changes.
            sighting = (finding.unknown_call, human)
            if sighting != self._stranded_logged:
                self._stranded_logged = sighting
                self._count_drift(finding.kind, finding.detail, human)
        elif finding.kind is not None:
            self._count_drift(finding.kind, finding.detail, human)
        if finding.unknown_call is not None:
            if self.unknown_call != finding.unknown_call:
                self.unknown_call = finding.unknown_call
                self.last_error = finding.detail
        elif finding.busy_key is None and self.unknown_call is not None:
            log.info(
                "agent {agent}: LiveVox released call {call}",
                agent=self.user_name,
                call=self.unknown_call,
            )
            self.unknown_call = None
        if not finding.logged_in:
            self._lose_session("logged_out", finding.detail)
            return
        if finding.joined is not None:
            self.joined = finding.joined
        if finding.lv_ready is not None:
            if finding.lv_ready and not self.lv_ready:
                self.ready_since = self._ctx.clock.seconds()
            self.lv_ready = finding.lv_ready

    def _look_again(self, delay: float) -> None:
        """Read LiveVox's status again in ``delay`` seconds, unless a look is already due sooner."""
        timer = self._recheck_timer
        if timer is not None and timer.active():
            if timer.getTime() <= self._ctx.clock.seconds() + delay:
                return
            timer.cancel()
        self._recheck_timer = self._ctx.clock.callLater(delay, self._recheck)

    # -- stranded calls --------------------------------------------------------------

    def _weigh_stranded(self, status: AgentStatus, key: str, now: float) -> str | None:
        """Decide about a call LiveVox holds that the gateway does not know.

        Plans its repair when it has been held past the grace, or a look at
        the grace's end; returns why a person must close it instead.
        """
        repairer = self._ctx.repairer
        if repairer is None:
            return "the repair of stranded agents is off"
        call = stranded_call(status, key)
        if call is None or not call.repairable:
            return "LiveVox names no callTransactionId and callSessionId to close it with"
        if call.state not in REPAIRABLE_STATES:
            return f"only a call INCALL or in WRAPUP is closed, and the line is {call.state}"
        if call.call_session_id in self.invites:
            if self._noted != key:
                self._noted = key
                self._count_repair("invite_seen")
            return f"the gateway saw its INVITE (Session-ID {call.call_session_id})"
        due = (self._busy_since if self._busy_since is not None else now) + repairer.grace
        if now >= due:
            self._stranded = call
        else:
            self._look_again(due - now)
        return None

    async def _repair(self, session: Session) -> None:
        """Close the stranded call at LiveVox; the agent is then READY or NOT READY as the pool decides."""
        call, self._stranded = self._stranded, None
        repairer = self._ctx.repairer
        if call is None or repairer is None or call.call_session_id in self.invites:
            return  # an INVITE for it came since the status read: the next look says more
        move = moves_not_ready(self.desired is Desired.IN, None)
        now = self._ctx.clock.seconds()
        held = now - (self._busy_since if self._busy_since is not None else now)
        try:
            result = await repairer.repair(
                self.user_name, session, call, move, self.config.service_id
            )
        except (CancelledError, SessionExpiredError):
            raise
        except Exception as e:
            self._repair_failed(call, e)
            return
        self._count_repair(result.outcome)
        log.warn(
            "agent {agent}: repaired: LiveVox held call {call_transaction_id}"
            " (Session-ID {call_session_id}, {line_state}), unknown to the gateway, for"
            " {held:.0f}s; saved term code {term_code} ({term_code_id}){how},"
            " moveAgentToNotReady {move}",
            agent=self.user_name,
            call_transaction_id=call.call_transaction_id,
            call_session_id=call.call_session_id,
            line_state=call.state,
            held=held,
            term_code=result.term_code.name or result.term_code.id,
            term_code_id=result.term_code.id,
            how=(
                f" after ending the call (LiveVox refused it while INCALL: {result.refusal})"
                if result.outcome == "call_end"
                else ""
            ),
            move=move,
            outcome=result.outcome,
            fallback=result.fallback,
        )
        if self.session is session and self.call_id is None:
            self._clear_busy()
            self.lv_ready = not move
            self.last_change = self._ctx.clock.seconds()
            if not move:
                self.ready_since = self.last_change

    def _repair_failed(self, call: StrandedCall, error: Exception) -> None:
        """Count and log a failed repair; it is tried again at a later look."""
        self._count_repair("failed")
        self.last_error = f"repairing call {call.describe()} failed: {error}"
        refused = isinstance(error, (LiveVoxClientError, RepairError))
        if not isinstance(error, (LiveVoxError, RepairError)):
            log.failure(
                "agent {agent}: repairing call {call} raised",
                Failure(error),  # type: ignore[no-untyped-call]
                agent=self.user_name,
                call=call.describe(),
            )
        else:
            log.warn(
                "agent {agent}: repairing call {call} failed: {error}; trying again {when}",
                agent=self.user_name,
                call=call.describe(),
                error=str(error),
                when="at the next look" if refused else "shortly",
            )
        if not refused:
            # A save whose answer was lost may have landed: look again soon.
            self._look_again(self._ctx.recheck_delay)

    # -- transitions -----------------------------------------------------------------

    def _transition(self, new: AgentState, reason: str) -> None:
        """Enter ``new`` for ``reason``: logged, counted, and told to the pool's listeners."""
        old = self.state
        if new is old and reason == self.reason:
            return
        self.reason = reason
        if new is not old:
            self.state = new
            self.since = self._ctx.clock.seconds()
        # While the agent holds a call, its transitions concern that call: say which.
        call = {} if self.call_id is None else {"call_id": self.call_id}
        if new is not old:
            log.info(
                "agent {agent}: {old} -> {new}: {reason}",
                agent=self.user_name,
                old=old.value,
                new=new.value,
                reason=reason,
                **call,
            )
            self._ctx.transitioned(self, old, new, reason)
        else:
            log.debug(
                "agent {agent}: still {state}: {reason}",
                agent=self.user_name,
                state=new.value,
                reason=reason,
                **call,
            )
        waiters, self._change_waiters = self._change_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)
