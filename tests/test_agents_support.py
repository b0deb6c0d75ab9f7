"""A verified in-memory fake of LiveVox's agent API, and builders, for the agent pool's tests.

:class:`ScriptedLiveVox` keeps one line per agent with LiveVox's rules as the
simulator has them (READY needs a joined service, no state change on a call,
the same session for a repeated login, a term code closes the call), records
every request with the clock time, and can fail, deny, expire, delay or hold
requests. Of LiveVox's call API it has what the repair of stranded agents
uses (term code save, call end). The tests at the bottom check it against
:class:`ILiveVoxAgentAPI` and :class:`ILiveVoxCallAPI`.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from lvgateway.agents.pool import AgentPool
from lvgateway.agents.stranded import StrandedSettings
from lvgateway.config.model import AgentConfig, AgentTimings, OpenHours, TimeRange
from lvgateway.config.secret import Secret
from lvgateway.livevox.errors import (
    LiveVoxClientError,
    LiveVoxError,
    LiveVoxServerError,
    LoginDeniedError,
    SessionExpiredError,
)
from lvgateway.livevox.interfaces import ILiveVoxAgentAPI, ILiveVoxCallAPI
from lvgateway.livevox.parsing import (
    AgentStatus,
    CallDetails,
    ContactCreated,
    LineStatus,
    Session,
    TermCode,
    TermCodeCatalogue,
)

SERVICE = "1234567"
DONE_CODE = "101416228"
TRANSFER_CODE = "101416229"
CUSTOMER = "9195550100"
#: The config's term code names, as ``[wrapup.term_codes]`` gives them.
TERM_CODE_NAMES = {"done": "AI Completed", "transfer": "Transfer To Agent"}


def session_id_of(call: str) -> str:
    """The callSessionId the fake gives the call with transaction id ``call``."""
    return f"U{call}T1@10.0.0.1"


@attrs.define
class FakeLine:
    """One agent's line at the fake LiveVox."""

    state: str = "LOGOFF"
    service_id: str | None = None
    phone_number: str | None = None
    reason_code: str | None = None
    call: str | None = None
    changed: float = 0.0


@attrs.frozen
class Request:
    """One request the fake received."""

    time: float
    op: str
    user: str


@implementer(ILiveVoxAgentAPI, ILiveVoxCallAPI)
class ScriptedLiveVox:
    """An in-memory LiveVox for the agent pool, on a ``task.Clock``.

    :param clock: the clock request times and delays use.
    :param latency: when set, every answer comes this many seconds later.
    :ivar refuse_in_call: a term code for a call still INCALL is refused
        with 400 until the call is ended (one reading of LiveVox).
    :ivar saved: the body of every term code save LiveVox accepted.
    """

    def __init__(self, clock: Clock, latency: float | None = None) -> None:
        self.clock = clock
        self.latency = latency
        self.lines: dict[str, FakeLine] = {}
        self.sessions: dict[str, str] = {}
        self.requests: list[Request] = []
        self.days: dict[str, int] = {}
        self.denied: dict[str, str] = {}
        self.down = False
        self.holding = False
        self.held: list[tuple[Deferred[Any], Callable[[], Any]]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._failures: list[tuple[str, str | None, LiveVoxError]] = []
        self._ids = itertools.count(1)
        self._calls = itertools.count(147516594361)
        self.refuse_in_call = False
        self.saved: list[dict[str, Any]] = []
        self.catalogue = (
            TermCode(DONE_CODE, "AI Completed", "AI"),
            TermCode(TRANSFER_CODE, "Transfer To Agent", "AI"),
        )

    # -- controls ---------------------------------------------------------------------

    def line(self, user: str) -> FakeLine:
        """Return (creating) a user's line."""
        return self.lines.setdefault(user.casefold(), FakeLine())

    def fail_next(
        self, op: str, error: LiveVoxError, count: int = 1, user: str | None = None
    ) -> None:
        """Fail the next ``count`` requests of ``op`` (for ``user``, or anyone) with ``error``."""
        self._failures.extend([(op, user.casefold() if user else None, error)] * count)

    def expire(self, user: str | None = None) -> None:
        """End every session (or ``user``'s) as an idle expiry would: the line logs off."""
        for sid, key in list(self.sessions.items()):
            if user is None or key == user.casefold():
                del self.sessions[sid]
                self._set(self.lines[key], "LOGOFF")
                self.lines[key].service_id = self.lines[key].phone_number = None
                self.lines[key].call = None

    def dispatch(self, user: str) -> str:
        """Put a call through to a READY agent, as LiveVox routing would; return its id."""
        line = self.line(user)
        assert line.state == "READY", f"{user} is {line.state}, not READY"
        line.call = str(next(self._calls))
        self._set(line, "INCALL")
        return line.call

    def hang_up(self, user: str) -> None:
        """End the agent's call: WRAPUP until a term code."""
        line = self.line(user)
        assert line.state == "INCALL"
        self._set(line, "WRAPUP")

    def term_code(self, user: str, move_not_ready: bool) -> None:
        """Save the call's term code, as the wrap-up would."""
        line = self.line(user)
        assert line.state in ("INCALL", "WRAPUP")
        line.call = None
        self._set(line, "NOTREADY" if move_not_ready else "READY")

    def set_state(self, user: str, state: str) -> None:
        """Change a line's state behind the gateway's back (a supervisor)."""
        line = self.line(user)
        self._set(line, state)
        if state in ("LOGOFF", "LOGON"):
            line.service_id = line.phone_number = None

    def release(self) -> int:
        """Answer every held request; return how many."""
        held, self.held = self.held, []
        for d, answer in held:
            self._answer(d, answer)
        return len(held)

    def ops(self, op: str | None = None, user: str | None = None) -> list[Request]:
        """Return the requests of ``op`` (any if ``None``) by ``user`` (anyone if ``None``)."""
        return [
            r
            for r in self.requests
            if (op is None or r.op == op) and (user is None or r.user.casefold() == user.casefold())
        ]

    def count(self, op: str | None = None, user: str | None = None) -> int:
        """Return how many requests of ``op`` by ``user`` came."""
        return len(self.ops(op, user))

    def state_of(self, user: str) -> str:
        """Return a line's state."""
        return self.line(user).state

    # -- the machinery ----------------------------------------------------------------------

    def _set(self, line: FakeLine, state: str) -> None:
        if line.state != state:
            line.state = state
            line.changed = self.clock.seconds()

    def _request(self, op: str, user: str, apply: Callable[[], Any]) -> Deferred[Any]:
        self.requests.append(Request(self.clock.seconds(), op, user))

        def answer() -> Any:
            for i, (f_op, f_user, error) in enumerate(self._failures):
                if f_op == op and f_user in (None, user.casefold()):
                    del self._failures[i]
                    raise error
            if self.down:
                raise LiveVoxServerError(op, status=503, message="Service unavailable")
            return apply()

        if self.holding:
            d: Deferred[Any] = Deferred(lambda d: self._cancel(d))
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.held.append((d, answer))
            return d
        if self.latency is not None:
            d = Deferred(lambda d: self._cancel(d))
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.clock.callLater(self.latency, self._answer, d, answer)
            return d
        try:
            return succeed(answer())
        except LiveVoxError as e:
            return fail(e)

    def _cancel(self, d: Deferred[Any]) -> None:
        self.in_flight -= 1

    def _answer(self, d: Deferred[Any], answer: Callable[[], Any]) -> None:
        if d.called:
            return
        self.in_flight -= 1
        try:
            result = answer()
        except LiveVoxError as e:
            d.errback(e)
        else:
            d.callback(result)

    def _user_of(self, op: str, session: Session) -> FakeLine:
        key = self.sessions.get(session.session_id)
        if key is None:
            raise SessionExpiredError(op, status=401, code=401, message="Session is not valid")
        return self.lines[key]

    # -- ILiveVoxAgentAPI ------------------------------------------------------------------

    def login(self, user_name: str, password: Secret, agent: bool = True) -> Deferred[Session]:
        """Log in: the same session while one is valid."""

        def apply() -> Session:
            key = user_name.casefold()
            if key in self.denied:
                raise LoginDeniedError("login", status=401, code=401, message=self.denied[key])
            line = self.line(user_name)
            existing = next((s for s, k in self.sessions.items() if k == key), None)
            session_id = existing or f"sess-{key}-{next(self._ids):04d}-0000"
            self.sessions[session_id] = key
            if line.state == "LOGOFF":
                self._set(line, "LOGON")
            return Session(
                session_id=session_id,
                user_name=user_name,
                agent=agent,
                days_until_password_expires=self.days.get(key, 90),
            )

        return self._request("login", user_name, apply)

    def validate(self, session: Session) -> Deferred[bool]:
        """Say whether the session is valid."""
        return self._request(
            "validate", session.user_name, lambda: session.session_id in self.sessions
        )

    def logout(self, session: Session) -> Deferred[bool]:
        """End the session; the line logs off."""

        def apply() -> bool:
            key = self.sessions.pop(session.session_id, None)
            if key is None:
                return False
            line = self.lines[key]
            line.service_id = line.phone_number = None
            self._set(line, "LOGOFF")
            return True

        return self._request("logout", session.user_name, apply)

    def join_service(
        self, session: Session, service_id: str, phone_number: str, sip_id: str | None = None
    ) -> Deferred[None]:
        """Join a service: NOTREADY."""

        def apply() -> None:
            line = self._user_of("join", session)
            if line.state in ("INCALL", "WRAPUP"):
                raise LiveVoxClientError("join", status=400, code=400, message="Agent is on a call")
            if line.service_id == service_id and line.phone_number == phone_number:
                return
            line.service_id, line.phone_number = service_id, phone_number
            self._set(line, "NOTREADY")

        return self._request("join", session.user_name, apply)

    def leave_service(self, session: Session) -> Deferred[None]:
        """Leave the service: LOGON."""

        def apply() -> None:
            line = self._user_of("leave", session)
            line.service_id = line.phone_number = None
            self._set(line, "LOGON")

        return self._request("leave", session.user_name, apply)

    def _change(self, op: str, session: Session, state: str) -> Deferred[None]:
        def apply() -> None:
            line = self._user_of(op, session)
            if line.service_id is None:
                raise LiveVoxClientError(
                    op, status=400, code=400, message="Agent has not joined a service"
                )
            if line.state in ("INCALL", "WRAPUP"):
                raise LiveVoxClientError(op, status=400, code=400, message="Agent is on a call")
            self._set(line, state)

        return self._request(op, session.user_name, apply)

    def ready(self, session: Session) -> Deferred[None]:
        """Go READY."""
        return self._change("ready", session, "READY")

    def not_ready(self, session: Session, reason_code: str | None = None) -> Deferred[None]:
        """Go NOT READY."""
        return self._change("not_ready", session, "NOTREADY")

    def agent_status(
        self, session: Session, state_changed_after: int | None = None
    ) -> Deferred[AgentStatus]:
        """Return the line as LiveVox's status would."""

        def apply() -> AgentStatus:
            line = self._user_of("status", session)
            call = (
                CallDetails(
                    line.call,
                    session_id_of(line.call),
                    phone_number=CUSTOMER,
                    service_id=line.service_id,
                )
                if line.call
                else None
            )
            return AgentStatus(
                lines=(LineStatus("ACD", line.state, int(line.changed * 1000), call),),
            )

        return self._request("status", session.user_name, apply)

    def term_codes(self, session: Session, service_id: str) -> Deferred[TermCodeCatalogue]:
        """Return the catalogue: "AI Completed" and "Transfer To Agent"."""
        return self._request(
            "term_codes", session.user_name, lambda: TermCodeCatalogue(service_id, self.catalogue)
        )

    # -- ILiveVoxCallAPI: what the repair of stranded agents uses ----------------------------

    def save_term_code(
        self,
        session: Session,
        *,
        call_transaction_id: str,
        call_session_id: str,
        term_code_id: str,
        phone_dialed: str | None,
        move_agent_to_not_ready: bool,
        service_id: str | None = None,
        account: str | None = None,
        agent_entered_account: str | None = None,
        payment_amount: str | None = None,
        notes: str | None = None,
        reason_code: str | None = None,
        immediate_callback_number: str | None = None,
        line_number: str | None = None,
    ) -> Deferred[None]:
        """Close the line's call (INCALL or WRAPUP) when both ids name it: READY, or NOTREADY."""
        body = {
            "callTransactionId": call_transaction_id,
            "callSessionId": call_session_id,
            "termCodeId": term_code_id,
            "phoneDialed": phone_dialed,
            "moveAgentToNotReady": move_agent_to_not_ready,
        }

        def apply() -> None:
            line = self._user_of("term_code", session)
            if (
                line.call is None
                or line.call != call_transaction_id
                or session_id_of(line.call) != call_session_id
            ):
                raise LiveVoxClientError("term_code_save", status=400, message="No such call")
            if term_code_id not in {c.id for c in self.catalogue}:
                raise LiveVoxClientError("term_code_save", status=400, message="Invalid termCodeId")
            if self.refuse_in_call and line.state == "INCALL":
                raise LiveVoxClientError(
                    "term_code_save", status=400, message="Call is in progress: end it first"
                )
            self.saved.append(body)
            line.call = None
            self._set(line, "NOTREADY" if move_agent_to_not_ready else "READY")

        return self._request("term_code", session.user_name, apply)

    def end_call(self, session: Session, line_number: str | None = None) -> Deferred[None]:
        """End the customer's call: INCALL goes to WRAPUP; nothing else changes."""

        def apply() -> None:
            line = self._user_of("call_end", session)
            if line.state == "INCALL":
                self._set(line, "WRAPUP")

        return self._request("call_end", session.user_name, apply)

    def manual_conference(
        self,
        session: Session,
        number: str,
        put_call_on_hold: bool = True,
        secure_transfer: bool = False,
        line_number: str | None = None,
    ) -> Deferred[None]:
        """Not used by the agent pool."""
        return fail(NotImplementedError("manual_conference"))

    def read_contact(self, account: str, session: Session) -> Deferred[dict[str, Any]]:
        """Not used by the agent pool."""
        return fail(NotImplementedError("read_contact"))

    def create_contact(
        self, details: Mapping[str, Any], session: Session
    ) -> Deferred[ContactCreated]:
        """Not used by the agent pool."""
        return fail(NotImplementedError("create_contact"))

    def update_contact(
        self, account: str, details: Mapping[str, Any], session: Session
    ) -> Deferred[None]:
        """Not used by the agent pool."""
        return fail(NotImplementedError("update_contact"))


# -- builders ---------------------------------------------------------------------------


def agent_configs(count: int, first: int = 1) -> list[AgentConfig]:
    """``count`` agents AIVA<n> on +1899000<nnnn>, all in one service."""
    return [
        AgentConfig(
            user_name=f"AIVA{n}",
            password=Secret(f"pw-{n}", f"test pw {n}"),
            phone_number=f"+1899000{n:04d}",
            service_id=SERVICE,
            origin=f"agents[{n - 1}]",
        )
        for n in range(first, first + count)
    ]


def timings(**changes: Any) -> AgentTimings:
    """Agent timings as the defaults, with changes."""
    base: dict[str, Any] = dict(
        login_concurrency=10,
        cycle_interval=3600.0,
        reconcile_interval=300.0,
        backoff_base=1.0,
        backoff_max=60.0,
        not_ready_reason="AI Break",
    )
    base.update(changes)
    return AgentTimings(**base)


ALWAYS_OPEN = OpenHours(
    time_zone="UTC", always_open=True, weekly=((),) * 7, holidays=frozenset(), lead_time=0.0
)


def span(start: str, end: str) -> TimeRange:
    """A TimeRange from 'HH:MM' strings; '24:00' is the end of the day."""
    s = datetime.time.fromisoformat(start)
    return TimeRange(s, None if end == "24:00" else datetime.time.fromisoformat(end))


def new_york_hours(
    weekly: Sequence[tuple[TimeRange, ...]] | None = None,
    holidays: frozenset[datetime.date] = frozenset(),
    lead_time: float = 0.0,
) -> OpenHours:
    """Hours in New York: by default weekdays 08-20, Saturday 09-13, Sunday closed."""
    days = (
        tuple(weekly)
        if weekly is not None
        else ((span("08:00", "20:00"),),) * 5
        + (
            (span("09:00", "13:00"),),
            (),
        )
    )
    return OpenHours(
        time_zone="America/New_York",
        always_open=False,
        weekly=days,
        holidays=holidays,
        lead_time=lead_time,
    )


@attrs.define
class Rig:
    """A pool on a fake LiveVox and a clock, started by :func:`rig`."""

    pool: AgentPool
    lv: ScriptedLiveVox
    clock: Clock
    registry: Any
    transitions: list[tuple[float, str, str, str]]

    def state(self, user: str) -> str:
        """The pool's state of an agent."""
        return self.pool.agent(user).state.value

    def states(self) -> set[str]:
        """The states the pool's agents are in."""
        return {a.state.value for a in self.pool.views()}

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the pool's registry (0 when absent)."""
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else float(value)


def rig(
    count: int = 3,
    *,
    hours: OpenHours = ALWAYS_OPEN,
    start_at: float = 1_000_000.0,
    latency: float | None = None,
    start: bool = True,
    jitter: float = 0.5,
    repair: StrandedSettings | None = None,
    **timing_changes: Any,
) -> Rig:
    """Build (and start) a pool of ``count`` agents on a fake LiveVox and a fresh clock.

    :param repair: repair stranded agents so (the fake is the call API too);
        by default they are only reported.
    """
    from lvgateway.metrics import new_registry

    clock = Clock()
    clock.advance(start_at)
    lv = ScriptedLiveVox(clock, latency=latency)
    registry = new_registry(version="test", process_metrics=False)
    pool = AgentPool(
        agent_configs(count),
        lv,
        clock,
        timings(**timing_changes),
        hours,
        registry=registry,
        jitter=lambda: jitter,
        call_api=lv if repair is not None else None,
        stranded=repair,
    )
    transitions: list[tuple[float, str, str, str]] = []
    pool.add_listener(lambda user, old, new: transitions.append((clock.seconds(), user, old, new)))
    if start:
        pool.startService()
    return Rig(pool, lv, clock, registry, transitions)


def advance(clock: Clock, seconds: float, step: float = 1.0) -> None:
    """Advance the clock by ``seconds`` in steps, so timers fire in order."""
    end = clock.seconds() + seconds
    while clock.seconds() + step < end:
        clock.advance(step)
    clock.advance(end - clock.seconds())


# -- the fake's own tests ---------------------------------------------------------------


def test_fake_livevox_provides_the_agent_api() -> None:
    """The fake provides every method of ILiveVoxAgentAPI and ILiveVoxCallAPI with the same signatures."""
    assert verifyObject(ILiveVoxAgentAPI, ScriptedLiveVox(Clock()))
    assert verifyObject(ILiveVoxCallAPI, ScriptedLiveVox(Clock()))


def test_fake_livevox_closes_calls_by_term_code() -> None:
    """A term code naming the line's call closes it; a wrong call is refused; with refuse_in_call, INCALL needs the call ended first."""
    lv = ScriptedLiveVox(Clock())
    session = lv.login("AIVA1", Secret("x", "t")).result
    lv.join_service(session, SERVICE, "8990000001")
    lv.ready(session)
    call = lv.dispatch("AIVA1")

    def save(transaction: str) -> Deferred[None]:
        return lv.save_term_code(
            session,
            call_transaction_id=transaction,
            call_session_id=session_id_of(transaction),
            term_code_id=TRANSFER_CODE,
            phone_dialed=CUSTOMER,
            move_agent_to_not_ready=False,
        )

    wrong = save("1")
    assert isinstance(wrong.result.value, LiveVoxClientError)
    wrong.addErrback(lambda f: None)
    lv.refuse_in_call = True
    refused = save(call)
    assert isinstance(refused.result.value, LiveVoxClientError)
    refused.addErrback(lambda f: None)
    assert lv.state_of("AIVA1") == "INCALL" and lv.saved == []
    lv.end_call(session)
    assert lv.state_of("AIVA1") == "WRAPUP"
    save(call)
    assert lv.state_of("AIVA1") == "READY" and lv.saved[0]["callTransactionId"] == call


def test_fake_livevox_follows_livevox_rules() -> None:
    """The fake refuses READY before a join and on a call, reuses sessions, and expires them with 401."""
    clock = Clock()
    lv = ScriptedLiveVox(clock)
    pw = Secret("x", "test")
    session = lv.login("AIVA1", pw).result
    assert lv.login("aiva1", pw).result.session_id == session.session_id
    refused = lv.ready(session)
    failure = refused.result
    refused.addErrback(lambda f: None)
    assert isinstance(failure.value, LiveVoxClientError)
    lv.join_service(session, SERVICE, "8990000001")
    lv.ready(session)
    assert lv.state_of("AIVA1") == "READY"
    lv.dispatch("AIVA1")
    busy = lv.not_ready(session)
    assert isinstance(busy.result.value, LiveVoxClientError)
    busy.addErrback(lambda f: None)
    lv.expire("AIVA1")
    expired = lv.agent_status(session)
    assert isinstance(expired.result.value, SessionExpiredError)
    expired.addErrback(lambda f: None)


def test_fake_livevox_holds_and_cancels_requests() -> None:
    """Held requests are answered on release; a cancelled one is no longer in flight."""
    lv = ScriptedLiveVox(Clock())
    lv.holding = True
    d = lv.login("AIVA1", Secret("x", "t"))
    d2 = lv.login("AIVA2", Secret("x", "t"))
    assert lv.in_flight == 2 and not d.called
    d2.cancel()
    d2.addErrback(lambda f: f.trap(CancelledError))
    assert lv.in_flight == 1
    assert lv.release() == 2
    assert d.result.user_name == "AIVA1"
