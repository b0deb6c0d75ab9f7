"""The calls part as one service: the store, its recovery, the wrap-up pipeline, and their timers.

:class:`CallService` is what the rest of the gateway holds (``calls`` in the
manhole's namespace). It provides :class:`~lvgateway.calls.interfaces.ICalls`
to the SIP part and the vendor API, and
:class:`~lvgateway.calls.interfaces.ICallAdmin` to operators.

Start-up, in :meth:`CallService.startService`: open the store, recover
(:mod:`lvgateway.calls.recovery`), resume the wrap-ups, then fetch the term
code catalogues and start the retention and catalogue timers.
:meth:`CallService.when_recovered` fires once every call that was live or in
wrap-up at the last stop has its term code at LiveVox: **the agent pool must
wait for it before it sets any agent READY** (its ``session_for`` must work
before then: the recovery's wrap-ups log agents in).

Stop, in :meth:`CallService.stopService` (after the ordered drain's
``flush wrap-ups`` step, :meth:`CallService.flush`): cancel what runs, commit
and close the store. Records still in wrap-up resume at the next start.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from lvgateway.agents.interfaces import IAgentPool
from lvgateway.backoff import Backoff
from lvgateway.calls.book import CallBook
from lvgateway.calls.errors import (
    AlreadyWrappedUpError,
    CallStoreUnavailableError,
    NotDeadLetterError,
    UnknownCallError,
)
from lvgateway.calls.ids import IdFinder, Verdict
from lvgateway.calls.interfaces import ICallAdmin, ICallLegs, ICalls
from lvgateway.calls.metrics import CallMetrics
from lvgateway.calls.outcome import (
    CallEvent,
    Ending,
    EventKind,
    LegAction,
    Outcome,
    decide,
    ended_fields,
)
from lvgateway.calls.records import (
    CallRecord,
    CallState,
    Disposition,
    InviteFacts,
    StepState,
)
from lvgateway.calls.recovery import RecoveryGate, recover
from lvgateway.calls.store import CallStore
from lvgateway.calls.termcodes import TermCodes
from lvgateway.calls.wrapup import StepListener, WrapupPipeline
from lvgateway.config.model import AgentConfig, WrapupConfig
from lvgateway.drain import DrainPhase, OrderedDrain
from lvgateway.livevox.interfaces import IAiaAPI, ILiveVoxAgentAPI, ILiveVoxCallAPI

__all__ = ["CallService", "catalogue_agents", "default_retry"]

log = Logger()


def default_retry() -> Backoff:
    """The wrap-up's backoff: 1 s doubling to 30 s, each delay between half and all of that."""
    return Backoff(base=1.0, ceiling=30.0)


def catalogue_agents(agents: Sequence[AgentConfig]) -> dict[str, str]:
    """Return each service the agents join with the first agent of it (whose session fetches its term codes)."""
    found: dict[str, str] = {}
    for agent in agents:
        found.setdefault(agent.service_id, agent.user_name)
    return found


#: Where a disposition that came with an event came from, as the record keeps it.
_SOURCES = {
    EventKind.VENDOR_HANGUP: "bye",
    EventKind.VENDOR_REFER: "refer",
    EventKind.VENDOR_DISPOSITION: "api",
}


def _new_call_id() -> str:
    return uuid.uuid4().hex


@implementer(ICalls, ICallAdmin)
class CallService(Service):
    """The call store, its recovery and its wrap-up pipeline, as one service.

    :param config: the wrap-up settings.
    :param store: the SQLite store (not yet open).
    :param agent_api: LiveVox's agent calls (status, term code catalogue).
    :param call_api: LiveVox's wrap-up calls (term code, contacts).
    :param aia: the AIA endpoint, or ``None`` without ``[aia]``.
    :param pool: the agent pool.
    :param clock: the clock every timer runs on.
    :param registry: where the metrics go.
    :param services: each LiveVox service the gateway's agents join, with an
        agent whose session fetches its term code catalogue.
    :param retry: the wrap-up's backoff.
    :param refresh_interval: how often term code catalogues are fetched again.
    :param purge_interval: how often finished records past retention are deleted.
    :param new_call_id: makes call ids (uuid4 hex by default).
    """

    def __init__(
        self,
        *,
        config: WrapupConfig,
        store: CallStore,
        agent_api: ILiveVoxAgentAPI,
        call_api: ILiveVoxCallAPI,
        aia: IAiaAPI | None,
        pool: IAgentPool,
        clock: IReactorTime,
        registry: CollectorRegistry,
        services: Mapping[str, str] | None = None,
        retry: Backoff | None = None,
        refresh_interval: float = 900.0,
        purge_interval: float = 3600.0,
        new_call_id: Callable[[], str] = _new_call_id,
    ) -> None:
        self.config = config
        self.store = store
        self._pool = pool
        self._clock = clock
        self._services = dict(services or {})
        self._new_call_id = new_call_id
        self.book = CallBook(store, clock)
        self.metrics = CallMetrics(
            registry,
            queue_depth=lambda: self.book.count(CallState.WRAPUP),
            oldest_age=self._oldest_age,
            dead_letters=lambda: self.book.count(CallState.DEAD),
        )
        self.term_codes = TermCodes(config, agent_api, clock)
        self.ids = IdFinder(self.book, agent_api, pool, clock, self.metrics)
        self.pipeline = WrapupPipeline(
            book=self.book,
            config=config,
            call_api=call_api,
            aia=aia,
            pool=pool,
            term_codes=self.term_codes,
            ids=self.ids,
            clock=clock,
            metrics=self.metrics,
            retry=retry or default_retry(),
        )
        self.gate = RecoveryGate(self.book)
        self.pipeline.add_listener(lambda call_id, step, outcome: self.gate.check(call_id))
        self._tasks: set[Deferred[Any]] = set()
        self._loops: list[LoopingCall] = []
        self._refresh_interval = refresh_interval
        self._purge_interval = purge_interval
        self._started: Deferred[None] | None = None

    # -- wiring ---------------------------------------------------------------------------

    def set_legs(self, legs: ICallLegs) -> None:
        """Give the SIP part's :class:`ICallLegs`, through which transfers end the LiveVox leg."""
        self.pipeline.legs = legs

    def add_listener(self, listener: StepListener) -> None:
        """Hear every wrap-up step outcome (see :data:`~lvgateway.calls.wrapup.StepListener`)."""
        self.pipeline.add_listener(listener)

    @property
    def store_open(self) -> bool:
        """Whether the store is open (the readiness check "call store open")."""
        return self.store.is_open

    def readiness(self) -> str | None:
        """The readiness check: ``None`` when the store is open, else why not."""
        return None if self.store.is_open else "the call store is not open"

    def when_recovered(self) -> Deferred[None]:
        """Fire once every call recovered at start-up has its term code settled (or is a dead letter).

        The agent pool waits for this before setting any agent READY.
        """
        return self.gate.when_recovered()

    def hold_pool_until_recovered(self, cause: str = "call recovery") -> None:
        """Pause the agent pool (``cause``) until :meth:`when_recovered` fires, then resume it.

        Call it before the services start: the agents log in and join but
        none is set READY while LiveVox still holds a call of the last run
        without its term code. If the store cannot open, the pool stays paused.
        """
        self._pool.pause(cause).addErrback(
            lambda failure: log.failure("pausing the agent pool for recovery failed", failure)
        )

        def recovered(_: None) -> Deferred[None]:
            log.info("call recovery done: the agent pool may set agents READY")
            return self._pool.resume(cause)

        def failed(failure: Failure) -> None:
            log.failure("call recovery failed: the agent pool stays paused", failure)

        self.when_recovered().addCallback(recovered).addErrback(failed)

    def register_drain(self, drain: OrderedDrain, timeout: float) -> None:
        """Register the drain step that flushes the wrap-ups, before the agents log out.

        :param drain: the gateway's ordered drain.
        :param timeout: the step's bound.
        """
        drain.register("flush wrap-ups", DrainPhase.FLUSH_WRAPUPS, self.flush, timeout)

    # -- lifecycle --------------------------------------------------------------------------

    def startService(self) -> None:
        """Open the store and recover, in the background; see :meth:`when_recovered`."""
        Service.startService(self)
        if not self.config.confirm_calls:
            log.error(
                "[wrapup] confirm_calls is off: calls LiveVox never routed are kept and bridged."
                " This is for a lab only, never for production"
            )
        self._started = Deferred.fromCoroutine(self._start())
        self._started.addErrback(self._start_failed)

    async def _start(self) -> None:
        await self.store.open()
        resume = await recover(
            self.book, self._pool, self._clock, self.metrics, self.config, self.pipeline.legs
        )
        self.gate.expect(resume)
        for call_id in resume:
            self.pipeline.start(call_id)
        self._loop(self._refresh_catalogues, self._refresh_interval, now=True)
        self._loop(self._purge, self._purge_interval, now=True)

    def _start_failed(self, failure: Failure) -> None:
        if isinstance(failure.value, CancelledError):
            return
        log.failure("call store failed to start: no call can be accepted", failure)
        self.gate.failed(failure.value or RuntimeError("call store failed to start"))

    def _loop(self, f: Callable[[], Coroutine[Any, Any, None]], interval: float, now: bool) -> None:
        loop = LoopingCall(lambda: self._spawn(f()))
        loop.clock = self._clock
        self._loops.append(loop)
        loop.start(interval, now=now).addErrback(
            lambda failure: log.failure("call store timer stopped", failure)
        )

    def stopService(self) -> Deferred[None]:
        """Cancel what runs, commit what is pending, and close the store."""
        Service.stopService(self)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        if self._started is not None and not self._started.called:
            self._started.cancel()
        for task in list(self._tasks):
            task.cancel()
        d = self.pipeline.stop()
        d.addCallback(lambda _: gatherResults(list(self._tasks), consumeErrors=True))

        return d.addBoth(lambda _: self.store.close())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> Deferred[None]:
        """Run a background coroutine, logged if it fails, cancelled at stop."""
        d = Deferred.fromCoroutine(coroutine)
        self._tasks.add(d)

        def done(result: object) -> None:
            self._tasks.discard(d)
            if isinstance(result, Failure) and not isinstance(result.value, CancelledError):
                log.failure("call store background work failed", result)

        d.addBoth(done)
        return d

    async def _refresh_catalogues(self) -> None:
        for service_id, agent in sorted(self._services.items()):
            try:
                session = await self._pool.session_for(agent)
                await self.term_codes.fetch(session, service_id)
            except CancelledError:
                raise
            except Exception as e:
                log.warn(
                    "term codes of service {service_id} not fetched ({error}): fetched when a call needs them",
                    service_id=service_id,
                    error=str(e),
                )

    async def _purge(self) -> None:
        cutoff = self._clock.seconds() - self.config.retention
        count = await self.store.purge(cutoff)
        if count:
            log.info("call store: {count} finished records past retention deleted", count=count)

    def _oldest_age(self) -> float:
        ends = [r.ended_at for r in self.book.records(CallState.WRAPUP) if r.ended_at is not None]
        return max(0.0, self._clock.seconds() - min(ends)) if ends else 0.0

    def flush(self) -> Deferred[None]:
        """Retry every waiting wrap-up now and fire once none is running (the drain step)."""
        self.pipeline.poke()
        return self.pipeline.when_idle()

    # -- ICalls -------------------------------------------------------------------------------

    def accept(self, invite: InviteFacts) -> Deferred[CallRecord]:
        """Write a new call's record; see :meth:`ICalls.accept`."""
        return Deferred.fromCoroutine(self._accept(invite))

    async def _accept(self, invite: InviteFacts) -> CallRecord:
        if not self.running or not self.store.is_open:
            raise CallStoreUnavailableError("the call store is not open")
        now = self._clock.seconds()
        record = CallRecord(
            call_id=invite.call_id or self._new_call_id(),
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
            ids_source="headers" if invite.call_transaction_id else None,
            lv_agent_login=invite.lv_agent_login,
        )
        if invite.lv_agent_login and invite.lv_agent_login.lower() != invite.agent.lower():
            log.warn(
                "call {call_id}: the INVITE names agent {named}, the 899 number {dnis} is {agent}'s",
                call_id=record.call_id,
                named=invite.lv_agent_login,
                dnis=invite.dnis,
                agent=invite.agent,
            )
        await self.book.add(record)
        self.metrics.accepted.inc()
        self._pool.call_started(record.agent, record.call_id)
        log.info(
            "call {call_id} accepted for {agent} on {dnis} from {ani}, LiveVox session {session}",
            call_id=record.call_id,
            agent=record.agent,
            dnis=record.dnis,
            ani=record.ani,
            session=record.call_session_id,
        )
        self._spawn(self._confirm(record.call_id))
        return record

    async def _confirm(self, call_id: str) -> None:
        """Confirm the call in its agent's status; end it if LiveVox never routed it."""
        config = self.config
        verdict = await self.ids.confirm(call_id, config.confirm_within, config.confirm_polls)
        if verdict is not Verdict.NOT_ROUTED:
            return
        if not config.confirm_calls:
            log.warn(
                "call {call_id}: LiveVox's status does not show it, and confirm_calls is off: kept",
                call_id=call_id,
            )
            return
        legs = self.pipeline.legs
        if legs is None or not legs.tell(call_id, CallEvent(EventKind.NOT_ROUTED)):
            self.end(call_id, CallEvent(EventKind.NOT_ROUTED)).recorded.addErrback(
                lambda f: log.failure("call {call_id}: ending it failed", f, call_id=call_id)
            )

    def connected(self, call_id: str) -> Deferred[CallRecord]:
        """Note that the vendor leg answered; see :meth:`ICalls.connected`."""
        return Deferred.fromCoroutine(self._connected(call_id))

    async def _connected(self, call_id: str) -> CallRecord:
        record = await self._unsettled(call_id)
        if record.state is not CallState.ACCEPTED:
            return record
        log.info("call {call_id}: vendor leg answered", call_id=call_id)
        return await self.book.update(
            call_id, state=CallState.CONNECTED, connected_at=self._clock.seconds()
        )

    def note_dialogs(
        self, call_id: str, dialogs: Mapping[str, Mapping[str, Any]]
    ) -> Deferred[CallRecord]:
        """Keep the SIP dialogs of a live call's legs; see :meth:`ICalls.note_dialogs`."""

        async def note() -> CallRecord:
            record = await self._unsettled(call_id)
            merged = record.with_dialogs(dialogs)
            if not record.is_live or merged == record.dialogs:
                return record
            return await self.book.update(call_id, dialogs=merged)

        return Deferred.fromCoroutine(note())

    async def _unsettled(self, call_id: str) -> CallRecord:
        record = self.book.get(call_id)
        if record is not None:
            return record
        stored = await self.store.get(call_id)
        if stored is None:
            raise UnknownCallError(call_id)
        return stored

    def set_disposition(
        self, call_id: str, disposition: Disposition, source: str = "api"
    ) -> Deferred[CallRecord]:
        """Lay a disposition over the call's; see :meth:`ICalls.set_disposition`."""
        return Deferred.fromCoroutine(self._set_disposition(call_id, disposition, source))

    async def _set_disposition(
        self, call_id: str, disposition: Disposition, source: str
    ) -> CallRecord:
        record = await self._unsettled(call_id)
        if not record.is_live:
            raise AlreadyWrappedUpError(call_id, record.state.value)
        merged = disposition.over(record.disposition)
        log.info(
            "call {call_id}: disposition from {source}: {disposition}",
            call_id=call_id,
            source=source,
            disposition=merged.to_json(),
        )
        return await self.book.update(call_id, disposition=merged, disposition_source=source)

    def end(self, call_id: str | None, event: CallEvent) -> Ending:
        """Decide what ``event`` means for the call and, if it ends it, start its wrap-up; see :meth:`ICalls.end`."""
        record = self.book.get(call_id) if call_id is not None else None
        if call_id is not None and record is None:
            # Finished (or never known here): nothing of it can change.
            found: Deferred[CallRecord | None] = Deferred.fromCoroutine(self._unsettled(call_id))
            return Ending(Outcome(ends_call=False), found)
        outcome = decide(record, event, self.config)
        if record is not None and outcome.ends_call and not outcome.posts:
            return Ending(outcome, self._close_unposted(record, event, outcome))
        if record is None or not outcome.posts:
            if record is not None:
                log.info(
                    "call {call_id}: {event} while {state}: the call's end stands",
                    call_id=call_id,
                    event=event.kind.value,
                    state=record.state.value,
                )
            return Ending(outcome, succeed(record))
        transferred = (
            self.pipeline.watch_transfer(record.call_id)
            if outcome.livevox_leg is LegAction.HOLD_FOR_TRANSFER
            else None
        )
        saved: Deferred[CallRecord | None] = self._record_end(record, event, outcome).addCallback(
            lambda ended: ended
        )
        return Ending(outcome, saved, transferred)

    def _close_unposted(
        self, record: CallRecord, event: CallEvent, outcome: Outcome
    ) -> Deferred[CallRecord | None]:
        """Close a call LiveVox has no trace of: nothing is posted, and its agent is free at once."""
        assert outcome.end_reason is not None
        now = self._clock.seconds()
        saved: Deferred[CallRecord | None] = self.book.update(
            record.call_id,
            state=CallState.DONE,
            ended_at=now,
            finished_at=now,
            end_reason=outcome.end_reason,
            aia=StepState.SKIPPED,
            contact=StepState.SKIPPED,
            term_code=StepState.SKIPPED,
            hangup=StepState.SKIPPED,
            last_error=outcome.text,
        ).addCallback(lambda closed: closed)
        self.metrics.ended.labels(reason=outcome.end_reason).inc()
        log.info(
            "call {call_id} closed ({event}): nothing posted to LiveVox; agent {agent} is free",
            call_id=record.call_id,
            event=event.kind.value,
            agent=record.agent,
        )
        self._pool.call_ended(record.agent, record.call_id)
        self._pool.wrapup_done(record.agent, record.call_id, False)
        return saved

    def _record_end(
        self, record: CallRecord, event: CallEvent, outcome: Outcome
    ) -> Deferred[CallRecord]:
        """Write the call's end, tell the pool, and start the wrap-up."""
        assert outcome.end_reason is not None
        call_id = record.call_id
        hold = outcome.livevox_leg is LegAction.HOLD_FOR_TRANSFER
        now = self._clock.seconds()
        saved = self.book.update(
            call_id,
            **ended_fields(outcome, now),
            disposition_source=_SOURCES.get(event.kind, record.disposition_source)
            if event.disposition is not None
            else record.disposition_source,
        )
        self._pool.call_ended(record.agent, call_id)
        self.metrics.ended.labels(reason=outcome.end_reason).inc()
        log.info(
            "call {call_id} ended ({reason}, {event}) after {seconds:.1f}s: {action}, term code {term_code}",
            call_id=call_id,
            reason=outcome.end_reason,
            event=event.kind.value,
            seconds=now - record.accepted_at,
            action="transfer to a human" if outcome.transfer else "done",
            term_code=outcome.term_code,
        )
        if hold:
            self.pipeline.arm_transfer(call_id)
        self.pipeline.start(call_id)
        return saved

    def lookup(self, call_id: str) -> Deferred[CallRecord]:
        """Return a call's record; see :meth:`ICalls.lookup`."""
        return Deferred.fromCoroutine(self._unsettled(call_id))

    # -- ICallAdmin ---------------------------------------------------------------------------

    def query(
        self,
        since: float | None = None,
        states: Sequence[CallState] | None = None,
        limit: int = 100,
    ) -> Deferred[list[CallRecord]]:
        """Return records changed at or after ``since``; see :meth:`ICallAdmin.query`."""
        return Deferred.fromCoroutine(self._query(since, states, limit))

    async def _query(
        self, since: float | None, states: Sequence[CallState] | None, limit: int
    ) -> list[CallRecord]:
        stored = await self.store.query(since, states, limit)

        def wanted(r: CallRecord) -> bool:
            return (since is None or r.updated_at >= since) and (not states or r.state in states)

        found = {r.call_id: r for r in stored}
        for record in self.book.records():
            if wanted(record):
                found[record.call_id] = record
            else:
                found.pop(record.call_id, None)
        return sorted(found.values(), key=lambda r: (r.updated_at, r.call_id))[:limit]

    def redrive(self, call_id: str) -> Deferred[CallRecord]:
        """Start a dead letter's wrap-up again; see :meth:`ICallAdmin.redrive`."""
        return Deferred.fromCoroutine(self._redrive(call_id))

    async def _redrive(self, call_id: str) -> CallRecord:
        record = await self._dead_letter(call_id)
        now = self._clock.seconds()
        steps = {
            name: StepState.PENDING
            for name in ("aia", "contact", "term_code")
            if record.step(name) is StepState.FAILED
        }
        saved = self.book.update(
            call_id,
            state=CallState.WRAPUP,
            attempts=0,
            wrapup_started_at=now,
            finished_at=None,
            **steps,
        )
        log.warn(
            "call {call_id}: dead letter re-driven by an operator (last error: {error})",
            call_id=call_id,
            error=record.last_error,
        )
        self.pipeline.start(call_id)
        return await saved

    def dismiss(self, call_id: str) -> Deferred[CallRecord]:
        """Give up on a dead letter; see :meth:`ICallAdmin.dismiss`."""
        return Deferred.fromCoroutine(self._dismiss(call_id))

    async def _dismiss(self, call_id: str) -> CallRecord:
        record = await self._dead_letter(call_id)
        saved = await self.book.update(
            call_id, state=CallState.DISMISSED, finished_at=self._clock.seconds()
        )
        log.warn(
            "call {call_id}: dead letter dismissed by an operator; agent {agent} held NOT READY"
            " until an operator readies it (term code {term_code})",
            call_id=call_id,
            agent=record.agent,
            term_code=record.term_code.value,
        )
        self._pool.dismissed(record.agent, call_id)
        self.gate.check(call_id)
        return saved

    async def _dead_letter(self, call_id: str) -> CallRecord:
        record = await self._unsettled(call_id)
        if record.state is not CallState.DEAD:
            raise NotDeadLetterError(call_id, record.state.value)
        return record
