"""Test doubles around the calls part, for its own tests, the SIP part's, the crash test and the benchmark.

- :class:`FakeCallLegs`: a verified :class:`~lvgateway.calls.interfaces.ICallLegs`
  that records each hang-up it is asked for.
- :class:`FakeCalls`: a verified in-memory :class:`~lvgateway.calls.interfaces.ICalls`
  for the SIP part's tests: no SQLite, no wrap-up, every call remembered.
- :class:`StandInPool`: a small :class:`~lvgateway.agents.interfaces.IAgentPool`
  over any :class:`~lvgateway.livevox.interfaces.ILiveVoxAgentAPI` (the
  in-memory fake or the real client against the simulator): it logs agents
  in, joins them and sets them READY when asked, and records every event.
- :class:`StandInCallSource`: stands in for the SIP part. It has LiveVox put
  a call through to an agent (a *dialler* the test gives, such as the
  simulator's ``start_call``), accepts it as the SIP part would from the
  INVITE's headers, and ends it the ways SIP would; it is also the
  :class:`ICallLegs` the store hangs transfers up through.
- :class:`SandboxAdmin`: puts calls through and ends them with the LiveVox
  simulator's admin API over HTTP (a dialler for :class:`StandInCallSource`).
- :func:`simulator_rig`: the call store wired to a LiveVox simulator with
  the real REST and AIA clients, the stand-in pool and the stand-in SIP source.
- :func:`wrapup_config` and :func:`aia_config`: settings with test defaults.

The doubles are checked against their interfaces with ``verifyObject`` in
``tests/test_calls_testing.py``.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from lvgateway.agents.interfaces import Admission, CallClose, IAgentPool, Refusal, Reservation
from lvgateway.agents.state import moves_not_ready
from lvgateway.calls.disposition import disposition_from_request
from lvgateway.calls.errors import AlreadyWrappedUpError, UnknownCallError
from lvgateway.calls.interfaces import ICallLegs, ICalls
from lvgateway.calls.outcome import (
    CallEvent,
    Ending,
    EventKind,
    LegAction,
    Outcome,
    TransferStatus,
    decide,
    ended_fields,
)
from lvgateway.calls.records import CallRecord, CallState, Disposition, InviteFacts
from lvgateway.calls.service import CallService
from lvgateway.calls.store import CallStore
from lvgateway.config.model import AIA_FIELDS, AgentConfig, AiaConfig, WrapupConfig, phone_key
from lvgateway.config.secret import Secret
from lvgateway.livevox.aia import AiaClient
from lvgateway.livevox.client import LiveVoxClient
from lvgateway.livevox.interfaces import ILiveVoxAgentAPI
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.parsing import Session
from lvgateway.livevox.testing import livevox_config

__all__ = [
    "FakeCallLegs",
    "FakeCalls",
    "PlacedCall",
    "SandboxAdmin",
    "SimulatorRig",
    "StandInCallSource",
    "StandInPool",
    "agent_configs",
    "aia_config",
    "simulator_rig",
    "wrapup_config",
]

log = Logger()


def wrapup_config(**overrides: Any) -> WrapupConfig:
    """Return wrap-up settings for tests (the simulator's term code names); keywords replace fields."""
    values: dict[str, Any] = {
        "term_codes": {"done": "AI Completed", "transfer": "Transfer To Agent"},
        "defaults": {
            "caller_hangup": "done",
            "vendor_hangup": "done",
            "setup_failed": "transfer",
            "timeout": "transfer",
            "gateway_failure": "transfer",
        },
        "fallback_term_code": "done",
        "transfer_term_code": "transfer",
        "transfer_order": "term_code_then_end",
        "transfer_timeout": 10.0,
        "create_missing_contacts": False,
        "max_age": 86400.0,
        "retention": 30 * 86400.0,
    }
    values.update(overrides)
    return WrapupConfig(**values)


def aia_config(url: str, token: str | None = None, **overrides: Any) -> AiaConfig:
    """Return AIA settings for tests; keywords replace fields (``field_names`` renames some).

    :param url: the endpoint.
    :param token: sent in ``auth_header`` when given.
    """
    renames = overrides.pop("field_names", {})
    values: dict[str, Any] = {
        "url": url,
        "method": "POST",
        "auth_header": "X-AIA-Token",
        "token": Secret(token, "test") if token is not None else None,
        "headers": (),
        "field_names": {f: renames.get(f, f) for f in AIA_FIELDS},
        "timeout": 10.0,
    }
    values.update(overrides)
    return AiaConfig(**values)


def agent_configs(
    count: int,
    password: str,
    service_id: str = "1234567",
    first: int = 1,
) -> list[AgentConfig]:
    """Return agents ``AIVA<n>`` on ``+1899000000<n>``, as the sandbox's test config names them.

    :param count: how many.
    :param password: their password.
    :param service_id: the service they join.
    :param first: the first ``n``.
    """
    return [
        AgentConfig(
            user_name=f"AIVA{n}",
            password=Secret(password, "test"),
            phone_number=f"+1899{n:07d}",
            service_id=service_id,
            origin=f"agents[{n - first}]",
        )
        for n in range(first, first + count)
    ]


@implementer(ICallLegs)
class FakeCallLegs:
    """Records the LiveVox legs the store asks to end.

    :ivar hang_ups: ``(call_id, reason)`` in the order asked.
    :ivar orphans: ``(call_id, dialogs, cause, text)`` for each :meth:`end_orphaned`.
    :ivar ending: when set, every :meth:`end_orphaned` fires only once it does
        (the BYEs still waiting for their answers).
    """

    def __init__(self) -> None:
        self.hang_ups: list[tuple[str, str]] = []
        self.dialogs_ended: list[tuple[str, dict[str, Any]]] = []
        self.told: list[tuple[str, CallEvent]] = []
        self.orphans: list[tuple[str, dict[str, Any], int, str]] = []
        self.ending: Deferred[None] | None = None

    def hang_up_livevox(
        self, call_id: str, reason: str, dialog: Mapping[str, Any] | None = None
    ) -> Deferred[None]:
        """Record the hang-up (and, in :attr:`dialogs_ended`, a previous run's dialog it was given)."""
        self.hang_ups.append((call_id, reason))
        if dialog is not None:
            self.dialogs_ended.append((call_id, dict(dialog)))
        return succeed(None)

    def tell(self, call_id: str, event: CallEvent) -> bool:
        """Record the event; the fake holds no call to act on."""
        self.told.append((call_id, event))
        return False

    def end_orphaned(
        self, call_id: str, dialogs: Mapping[str, Mapping[str, Any]], cause: int, text: str
    ) -> Deferred[None]:
        """Record the legs to end; fire at once, or once :attr:`ending` does."""
        self.orphans.append((call_id, dict(dialogs), cause, text))
        if self.ending is None:
            return succeed(None)
        d: Deferred[None] = Deferred()

        def release(result: None) -> None:
            d.callback(None)

        self.ending.addCallback(release)
        return d


@implementer(ICalls)
class FakeCalls:
    """An in-memory call store for the SIP part's tests: it keeps records, runs no wrap-up.

    :param clock_seconds: stamps the records.
    :param config: the term codes its decisions request.
    :ivar records: every record by call id.
    :ivar events: ``(method, call_id, details)`` in order; an event that
        ends a call shows as ``ended`` with its outcome.
    :ivar reports: every ``(call_id, event)`` reported to :meth:`end`.
    :ivar noted: every ``(call_id, dialogs)`` given to :meth:`note_dialogs`.
    """

    def __init__(
        self,
        clock_seconds: Callable[[], float] = lambda: 0.0,
        config: WrapupConfig | None = None,
    ) -> None:
        self._now = clock_seconds
        self.config = config or wrapup_config()
        self._ids = itertools.count(1)
        self.records: dict[str, CallRecord] = {}
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.refuse: BaseException | None = None
        self.reports: list[tuple[str | None, CallEvent]] = []
        #: The held transfers' status, fired by :meth:`transfer_done`.
        self.transfers: dict[str, Deferred[TransferStatus]] = {}
        self.noted: list[tuple[str, dict[str, dict[str, Any]]]] = []
        #: When set, the next :meth:`accept` waits for it: a record write in progress.
        self.accept_gate: Deferred[None] | None = None
        #: How many accepts have waited on a gate.
        self.accepting = 0

    def _update(self, call_id: str, **changes: Any) -> CallRecord:
        if call_id not in self.records:
            raise UnknownCallError(call_id)
        record = attrs.evolve(self.records[call_id], updated_at=self._now(), **changes)
        self.records[call_id] = record
        return record

    def accept(self, invite: InviteFacts) -> Deferred[CallRecord]:
        """Keep a new record (or fail with :attr:`refuse`, when set), once :attr:`accept_gate` fires."""
        gate, self.accept_gate = self.accept_gate, None
        if gate is not None:
            self.accepting += 1
            return gate.addCallback(lambda _: self._keep(invite))
        return self._keep(invite)

    def _keep(self, invite: InviteFacts) -> Deferred[CallRecord]:
        if self.refuse is not None:
            return fail(self.refuse)
        now = self._now()
        record = CallRecord(
            call_id=invite.call_id or f"call-{next(self._ids):04d}",
            state=CallState.ACCEPTED,
            agent=invite.agent,
            dnis=invite.dnis,
            accepted_at=now,
            updated_at=now,
            service_id=invite.service_id,
            ani=invite.ani,
            sip_call_id=invite.sip_call_id,
            call_session_id=invite.call_session_id,
            call_transaction_id=invite.call_transaction_id,
            lv_agent_login=invite.lv_agent_login,
        )
        self.records[record.call_id] = record
        self.events.append(("accept", record.call_id, {"invite": invite}))
        return succeed(record)

    def connected(self, call_id: str) -> Deferred[CallRecord]:
        """Mark the record connected."""
        try:
            record = self._update(call_id, state=CallState.CONNECTED, connected_at=self._now())
        except UnknownCallError as e:
            return fail(e)
        self.events.append(("connected", call_id, {}))
        return succeed(record)

    def note_dialogs(
        self, call_id: str, dialogs: Mapping[str, Mapping[str, Any]]
    ) -> Deferred[CallRecord]:
        """Keep a live record's dialogs as the real store does; each call is in :attr:`noted` (not :attr:`events`)."""
        record = self.records.get(call_id)
        if record is None:
            return fail(UnknownCallError(call_id))
        try:
            merged = record.with_dialogs(dialogs)
        except ValueError as e:
            return fail(e)
        self.noted.append((call_id, {leg: dict(state) for leg, state in dialogs.items()}))
        if record.is_live and merged != record.dialogs:
            record = self._update(call_id, dialogs=merged)
        return succeed(record)

    def set_disposition(
        self, call_id: str, disposition: Disposition, source: str = "api"
    ) -> Deferred[CallRecord]:
        """Lay the disposition over the record's while it is live."""
        record = self.records.get(call_id)
        if record is None:
            return fail(UnknownCallError(call_id))
        if not record.is_live:
            return fail(AlreadyWrappedUpError(call_id, record.state.value))
        record = self._update(
            call_id, disposition=record.said(disposition), disposition_source=source
        )
        self.events.append(("set_disposition", call_id, {"disposition": disposition}))
        return succeed(record)

    def end(self, call_id: str | None, event: CallEvent) -> Ending:
        """Decide as the real store does; an ending event puts the record in wrap-up."""
        record = self.records.get(call_id) if call_id is not None else None
        self.reports.append((call_id, event))
        if call_id is not None and record is None:
            return Ending(Outcome(ends_call=False), fail(UnknownCallError(call_id)))
        outcome = decide(record, event, self.config)
        if record is not None and outcome.ends_call and not outcome.posts:
            self.events.append(("closed", record.call_id, {"reason": outcome.end_reason}))
            closed = self._update(
                record.call_id, state=CallState.DONE, end_reason=outcome.end_reason
            )
            return Ending(outcome, succeed(closed))
        if record is None or not outcome.posts:
            return Ending(outcome, succeed(record))
        hold = outcome.livevox_leg is LegAction.HOLD_FOR_TRANSFER
        self.events.append(
            (
                "ended",
                record.call_id,
                {
                    "reason": outcome.end_reason,
                    "disposition": outcome.disposition,
                    "livevox_leg_up": hold,
                    "event": event.kind,
                },
            )
        )
        record = self._update(record.call_id, **ended_fields(outcome, self._now()))
        transferred: Deferred[TransferStatus] | None = None
        if hold:
            transferred = self.transfers[record.call_id] = Deferred()
        return Ending(outcome, succeed(record), transferred)

    def transfer_done(self, call_id: str, status: TransferStatus) -> None:
        """Fire a held call's transfer status, as the wrap-up does before ending its LiveVox leg."""
        self.transfers.pop(call_id).callback(status)

    def lookup(self, call_id: str) -> Deferred[CallRecord]:
        """Return the record."""
        record = self.records.get(call_id)
        return succeed(record) if record is not None else fail(UnknownCallError(call_id))


@implementer(IAgentPool)
class StandInPool:
    """A small agent pool over a LiveVox API: sessions on demand, READY on request, events recorded.

    :param api: the LiveVox agent API (the in-memory fake or the real client).
    :param agents: the virtual agents.
    :ivar events: ``(event, user, call_id, detail)`` for ``call_started``,
        ``call_ended``, ``wrapup_done`` (detail: ``moved_not_ready``) and
        ``session_expired``, in order.
    :ivar not_ready_after_call: agents whose next term code leaves them NOT READY.
    """

    def __init__(
        self,
        api: ILiveVoxAgentAPI,
        agents: Sequence[AgentConfig],
        clock: IReactorTime | None = None,
    ) -> None:
        self._api = api
        self._clock = clock
        self.ready_at: dict[str, float] = {}
        self.agents = {a.user_name: a for a in agents}
        self._by_number = {phone_key(a.phone_number): a for a in agents}
        self.sessions: dict[str, Session] = {}
        self._logins: dict[str, list[Deferred[Session]]] = {}
        self.events: list[tuple[str, str, str | None, object]] = []
        self.not_ready_after_call: set[str] = set()
        self.on_wrapup_done: list[Callable[[str, str, bool], None]] = []
        self._paused: list[str] = []
        self._listeners: list[Callable[[str, str, str], None]] = []
        self.busy: dict[str, str] = {}
        self.reserved: dict[str, Reservation] = {}

    def wrapups_done(self) -> dict[str, bool]:
        """Return ``{call_id: moved_not_ready}`` of every ``wrapup_done`` heard."""
        return {str(e[2]): bool(e[3]) for e in self.events if e[0] == "wrapup_done"}

    # -- IAgentPool ---------------------------------------------------------------------------

    def admit(self, phone_number: str) -> Admission:
        """Admit a call to a known, idle agent."""
        agent = self._by_number.get(phone_key(phone_number))
        if agent is None:
            return Admission(None, None, Refusal.UNKNOWN_NUMBER)
        if agent.user_name in self.busy or agent.user_name in self.reserved:
            return Admission(agent.user_name, agent.service_id, Refusal.ON_CALL)
        if self._paused:
            return Admission(agent.user_name, agent.service_id, Refusal.PAUSED)
        reservation = Reservation(agent.user_name, self._release)
        self.reserved[agent.user_name] = reservation
        return Admission(agent.user_name, agent.service_id, None, reservation=reservation)

    def _release(self, reservation: Reservation) -> None:
        if self.reserved.get(reservation.user_name) is reservation:
            del self.reserved[reservation.user_name]

    def invite_seen(self, user_name: str, call_session_id: str | None) -> None:
        """Note the INVITE."""
        self.events.append(("invite_seen", user_name, call_session_id, None))

    def call_started(self, user_name: str, call_id: str) -> None:
        """Note the agent on a call (its reservation, if any, passes to the call)."""
        self.reserved.pop(user_name, None)
        self.busy[user_name] = call_id
        self.events.append(("call_started", user_name, call_id, None))

    def call_ended(self, user_name: str, call_id: str) -> None:
        """Note the agent in wrap-up."""
        self.events.append(("call_ended", user_name, call_id, None))

    def wrapup_done(self, user_name: str, call_id: str, moved_not_ready: bool) -> None:
        """Note the agent free."""
        if self.busy.get(user_name) == call_id:
            del self.busy[user_name]
        self.events.append(("wrapup_done", user_name, call_id, moved_not_ready))
        for hook in list(self.on_wrapup_done):
            hook(user_name, call_id, moved_not_ready)

    def dismissed(self, user_name: str, call_id: str) -> None:
        """Note the agent free of the call and held NOT READY."""
        if self.busy.get(user_name) == call_id:
            del self.busy[user_name]
        self.events.append(("dismissed", user_name, call_id, None))

    def move_to_not_ready_after_call(self, user_name: str, close: CallClose | None = None) -> bool:
        """True for the agents in :attr:`not_ready_after_call`, all while paused, or a failed step."""
        wanted_in = not self._paused and user_name not in self.not_ready_after_call
        return moves_not_ready(wanted_in, close)

    def session_for(self, user_name: str) -> Deferred[Session]:
        """Return the agent's session, logging it in when it has none (one login at a time)."""
        session = self.sessions.get(user_name)
        if session is not None:
            return succeed(session)
        agent = self.agents.get(user_name)
        if agent is None:
            return fail(KeyError(f"no agent {user_name!r}"))
        d: Deferred[Session] = Deferred()
        waiting = self._logins.get(user_name)
        if waiting is not None:
            waiting.append(d)
            return d
        self._logins[user_name] = [d]

        def done(result: Session | Failure) -> None:
            waiters = self._logins.pop(user_name, [])
            if not isinstance(result, Failure):
                self.sessions[user_name] = result
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        self._api.login(user_name, agent.password, True).addBoth(done)
        return d

    def session_expired(self, user_name: str, session: Session) -> None:
        """Forget the session, so the next :meth:`session_for` logs in again."""
        self.events.append(("session_expired", user_name, None, session.short_id))
        current = self.sessions.get(user_name)
        if current is not None and current.session_id == session.session_id:
            del self.sessions[user_name]

    def pause(self, cause: str, refusal: Refusal = Refusal.PAUSED) -> Deferred[None]:
        """Note the pause."""
        self._paused.append(cause)
        return succeed(None)

    def resume(self, cause: str) -> Deferred[None]:
        """Withdraw the pause."""
        if cause in self._paused:
            self._paused.remove(cause)
        return succeed(None)

    def add_listener(self, listener: Callable[[str, str, str], None]) -> None:
        """Keep the listener (the stand-in makes no transitions)."""
        self._listeners.append(listener)

    def ready_since(self, user_name: str) -> float | None:
        """Return when :meth:`bring_in` last set the agent READY (with a clock), else ``None``."""
        return self.ready_at.get(user_name)

    # -- for tests ------------------------------------------------------------------------------

    async def bring_in(self, user_name: str) -> Session:
        """Log the agent in, join it to its service on its number, and set it READY.

        :param user_name: the agent.
        """
        agent = self.agents[user_name]
        session = await self.session_for(user_name)
        await self._api.join_service(session, agent.service_id, agent.phone_number)
        await self._api.ready(session)
        if self._clock is not None:
            self.ready_at[user_name] = self._clock.seconds()
        return session


@attrs.frozen
class PlacedCall:
    """A call LiveVox put through to an agent, as its INVITE would show it.

    :param agent: the agent's login.
    :param dnis: the agent's 899 number.
    :param ani: the caller's number.
    :param call_session_id: LiveVox's callSessionId (``Session-ID``).
    :param call_transaction_id: LiveVox's callTransactionId, which the
        guide's INVITE does not carry (sent only when asked).
    """

    agent: str
    dnis: str
    ani: str
    call_session_id: str
    call_transaction_id: str | None = None


Dialler = Callable[[str], Awaitable[PlacedCall]]
LegHook = Callable[[PlacedCall], Any]


@implementer(ICallLegs)
class StandInCallSource:
    """Stands in for the SIP part: takes calls LiveVox puts through, and ends them as SIP would.

    :param calls: the call store.
    :param dial: has LiveVox put a call through to an agent and returns it
        (the simulator's ``start_call``, over HTTP or in process).
    :param services: each agent's service id.
    :param livevox_leg_ended: told when a LiveVox leg ends (the caller hung
        up, or the gateway hung it up), so the simulator's line can go to
        wrap-up as LiveVox's would; its errors are logged.
    :ivar placed: every call placed, by call id.
    :ivar hang_ups: ``(call_id, reason)`` of each :meth:`hang_up_livevox`.
    :ivar orphans: ``(call_id, dialogs, cause, text)`` of each :meth:`end_orphaned`.
    """

    def __init__(
        self,
        calls: ICalls,
        dial: Dialler,
        services: Mapping[str, str] | None = None,
        livevox_leg_ended: LegHook | None = None,
    ) -> None:
        self._calls = calls
        self._dial = dial
        self._services = dict(services or {})
        self._leg_ended = livevox_leg_ended
        self.placed: dict[str, PlacedCall] = {}
        self.hang_ups: list[tuple[str, str]] = []
        #: The previous run's LiveVox dialogs a hang-up was given, by call.
        self.dialogs_ended: list[tuple[str, dict[str, Any]]] = []
        #: Each transfer's status, as the wrap-up gave it before ending the LiveVox leg.
        self.transfer_statuses: list[tuple[str, TransferStatus]] = []
        self.orphans: list[tuple[str, dict[str, Any], int, str]] = []
        self.told: list[tuple[str, CallEvent]] = []
        self._sip_ids = itertools.count(1)

    async def place(
        self, agent: str, transaction_header: bool = False, connect: bool = True
    ) -> CallRecord:
        """Have LiveVox put a call through to ``agent``, accept it, and connect its vendor leg.

        :param agent: the agent's login.
        :param transaction_header: send LiveVox's transaction id in
            ``X-transaction-id`` (the guide's INVITE has none).
        :param connect: have the vendor answer; without it the call stays dialling.
        """
        placed = await self._dial(agent)
        headers = {"Session-ID": placed.call_session_id}
        if transaction_header and placed.call_transaction_id:
            headers["X-transaction-id"] = placed.call_transaction_id
        invite = InviteFacts.from_headers(
            agent,
            placed.dnis,
            headers,
            service_id=self._services.get(agent),
            ani=placed.ani,
            sip_call_id=f"standin-{next(self._sip_ids)}@127.0.0.1",
        )
        record = await self._calls.accept(invite)
        self.placed[record.call_id] = placed
        if not connect:
            return record
        return await self._calls.connected(record.call_id)

    async def caller_hangs_up(self, call_id: str) -> CallRecord:
        """The customer hung up: the LiveVox leg is down, the gateway ends the vendor leg."""
        await self._leg_down(call_id)
        return await self.report(call_id, CallEvent(EventKind.LIVEVOX_HANGUP))

    async def vendor_hangs_up(
        self, call_id: str, headers: Mapping[str, str] | None = None
    ) -> CallRecord:
        """The vendor sent BYE, perhaps with disposition headers; the LiveVox leg is still up."""
        disposition = disposition_from_request(headers or {}, call_id)
        return await self.report(call_id, CallEvent(EventKind.VENDOR_HANGUP, disposition))

    async def vendor_refers(
        self, call_id: str, headers: Mapping[str, str] | None = None
    ) -> CallRecord:
        """The vendor sent REFER, perhaps with disposition headers (read from every source, as SIP does)."""
        disposition = disposition_from_request(headers or {}, call_id)
        return await self.report(call_id, CallEvent(EventKind.VENDOR_REFER, disposition))

    async def ends(self, call_id: str, kind: EventKind) -> CallRecord:
        """The call ended for another reason (a setup failure, a timer, the drain)."""
        return await self.report(call_id, CallEvent(kind))

    async def report(self, call_id: str, event: CallEvent) -> CallRecord:
        """Report an event as the SIP part does, and carry out its outcome on the LiveVox leg."""
        ending = self._calls.end(call_id, event)
        if ending.transferred is not None:
            ending.transferred.addCallback(
                lambda status: self.transfer_statuses.append((call_id, status))
            )
        if ending.outcome.livevox_leg is LegAction.END:
            self.hang_ups.append((call_id, ending.outcome.end_reason or ""))
            await self._leg_down(call_id)
        record = await ending.recorded
        assert record is not None
        return record

    def tell(self, call_id: str, event: CallEvent) -> bool:
        """Report the event back, as the SIP part would, if the call is one of this source's."""
        if call_id not in self.placed:
            return False
        self.told.append((call_id, event))
        Deferred.fromCoroutine(self.report(call_id, event)).addErrback(
            lambda f: log.failure(
                "call {call_id}: reporting {event} failed", f, call_id=call_id, event=event
            )
        )
        return True

    def hang_up_livevox(
        self, call_id: str, reason: str, dialog: Mapping[str, Any] | None = None
    ) -> Deferred[None]:
        """End the LiveVox leg, as the SIP part would with BYE (a previous run's, from ``dialog``)."""
        self.hang_ups.append((call_id, reason))
        if dialog is not None:
            self.dialogs_ended.append((call_id, dict(dialog)))
        return Deferred.fromCoroutine(self._leg_down(call_id))

    def end_orphaned(
        self, call_id: str, dialogs: Mapping[str, Mapping[str, Any]], cause: int, text: str
    ) -> Deferred[None]:
        """Record the legs a previous run left up (this source never placed them: nothing to end)."""
        self.orphans.append((call_id, dict(dialogs), cause, text))
        return succeed(None)

    async def _leg_down(self, call_id: str) -> None:
        """Tell the LiveVox side the leg ended (awaiting the hook if it returns an awaitable)."""
        placed = self.placed.get(call_id)
        if placed is None or self._leg_ended is None:
            return
        try:
            result = self._leg_ended(placed)
            if inspect.isawaitable(result):
                await result
        except Exception as e:
            log.info(
                "call {call_id}: LiveVox side of the leg's end: {error}",
                call_id=call_id,
                error=str(e),
            )


@attrs.frozen
class SandboxAdmin:
    """The LiveVox simulator's admin API (``/_sandbox/``) as a dialler: calls put through and ended.

    :param http: a treq client.
    :param base_url: the simulator's URL, without a trailing slash.
    """

    http: HTTPClient
    base_url: str

    async def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        response = await self.http.post(self.base_url + "/_sandbox" + path, json=dict(body))
        content = await response.content()
        if response.code >= 300:
            raise RuntimeError(f"/_sandbox{path} answered {response.code}: {content!r}")
        return json.loads(content)

    async def dial(self, agent: str) -> PlacedCall:
        """Have the simulator put a call through to a READY agent."""
        call = (await self._post("/calls", {"agent": agent}))["call"]
        return PlacedCall(
            agent=agent,
            dnis=call["dnis"],
            ani="+1" + call["phoneNumber"],
            call_session_id=call["callSessionId"],
            call_transaction_id=call["callTransactionId"],
        )

    async def leg_ended(self, placed: PlacedCall) -> None:
        """Tell the simulator the customer leg ended: the agent's line goes to wrap-up."""
        await self._post("/calls/end", {"callTransactionId": placed.call_transaction_id})


@attrs.frozen
class SimulatorRig:
    """A call store wired to a LiveVox simulator (see :func:`simulator_rig`).

    :param client: the LiveVox REST client.
    :param pool: the stand-in pool over it.
    :param calls: the call service.
    :param source: the stand-in SIP source (also the store's :class:`ICallLegs`).
    """

    client: LiveVoxClient
    pool: StandInPool
    calls: CallService
    source: StandInCallSource


def simulator_rig(
    *,
    base_url: str,
    clock: IReactorTime,
    http: HTTPClient,
    store: CallStore,
    agents: Sequence[AgentConfig],
    client_name: str,
    token: str,
    aia_path: str,
    aia_token: str,
    dial: Dialler,
    leg_ended: LegHook | None = None,
    aia_header: str = "X-AIA-Token",
    registry: CollectorRegistry | None = None,
    **livevox: Any,
) -> SimulatorRig:
    """Wire a call service to a LiveVox simulator at ``base_url``: real clients, stand-in pool and SIP.

    The service is not started.

    :param base_url: the simulator's URL (its AIA is ``base_url + aia_path``).
    :param clock: the clock of every part (the reactor, or the simulator's ``task.Clock``).
    :param http: the treq client (real, or in memory over the simulator's resource).
    :param store: the call store (not yet open).
    :param agents: the virtual agents.
    :param client_name: the simulator's client name.
    :param token: its API token.
    :param aia_path: its AIA path.
    :param aia_token: its AIA token, sent in ``aia_header``.
    :param dial: puts a call through (``SandboxAdmin.dial``, or the simulator's ``start_call``).
    :param leg_ended: told when a LiveVox leg ends.
    :param registry: where the metrics go; a new registry by default.
    :param livevox: more :class:`~lvgateway.config.model.LiveVoxConfig` fields.
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = LiveVoxMetrics(registry)
    config = livevox_config(
        base_url=base_url, client_name=client_name, token=Secret(token, "test"), **livevox
    )
    client = LiveVoxClient(config, clock, http, metrics)
    aia = AiaClient(
        aia_config(base_url + aia_path, token=aia_token, auth_header=aia_header),
        clock,
        http,
        metrics,
        config.max_in_flight,
    )
    pool = StandInPool(client, agents, clock)
    calls = CallService(
        config=wrapup_config(),
        store=store,
        agent_api=client,
        call_api=client,
        aia=aia,
        pool=pool,
        clock=clock,
        registry=registry,
        services={agents[0].service_id: agents[0].user_name},
    )
    source = StandInCallSource(
        calls, dial, {a.user_name: a.service_id for a in agents}, livevox_leg_ended=leg_ended
    )
    calls.set_legs(source)
    return SimulatorRig(client, pool, calls, source)
