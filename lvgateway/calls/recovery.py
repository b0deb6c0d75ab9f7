"""Start-up: close the calls that were live when the process died, and resume every wrap-up.

Every record the store holds that is not finished is taken back:

- **live** (``accepted``, ``connected``): the process died during the call.
  Its legs did not: LiveVox and the vendor still hold their dialogs, and the
  customer hears silence. For each such record that kept its legs' dialogs
  (:meth:`~lvgateway.calls.interfaces.ICalls.note_dialogs`), the SIP part is
  asked to end them with BYE
  (:meth:`~lvgateway.calls.interfaces.ICallLegs.end_orphaned`, ``Reason``
  500 "gateway restarted", the crash recovery's outcome), all calls at once,
  and the wrap-ups resume once every BYE has its answer or its bound. The
  record is ended with reason ``gateway_failure`` (its dialogs dropped); the
  vendor's disposition, if one was already posted, stands, else the
  configured default for ``gateway_failure`` applies. A record whose write
  fails after the BYEs keeps its dialogs, and the next start sends them again
  (a peer that ended the dialog answers 481).
- **in wrap-up**: resumed from the step it stood at. A step found ``sent``
  had its outcome lost: the pipeline checks LiveVox before re-sending it. A
  transfer's pending hang-up stays pending, in its place beside the term
  code (``transfer_order``): the customer's leg outlived the process, and
  the SIP part ends it from its noted dialog; without one, it is skipped.
- **dead letters** stay dead letters.

For each, the agent pool is told the agent is on a call and in wrap-up
(``call_started`` then ``call_ended``), as LiveVox still sees it, so the pool
sets no such agent READY before LiveVox has the call's term code.

:class:`RecoveryGate` fires once every recovered call's term code is settled
(or its record became a dead letter): the pool waits for it before setting
any agent READY.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from lvgateway.agents.interfaces import IAgentPool
from lvgateway.calls.book import CallBook
from lvgateway.calls.interfaces import ICallLegs
from lvgateway.calls.metrics import CallMetrics
from lvgateway.calls.outcome import CallEvent, EventKind, decide, ended_fields
from lvgateway.calls.records import CallRecord, CallState, StepState
from lvgateway.config.model import WrapupConfig

__all__ = ["RecoveryGate", "recover"]

log = Logger()


class RecoveryGate:
    """Fires once every call recovered at start-up has its term code settled (or is a dead letter).

    :param book: the records, to tell when a call is settled.
    """

    def __init__(self, book: CallBook) -> None:
        self._book = book
        self._pending: set[str] | None = None
        self._waiting: list[Deferred[None]] = []
        self._failure: BaseException | None = None

    def when_recovered(self) -> Deferred[None]:
        """Return a Deferred that fires once recovery is over; it errbacks if the store failed to open."""
        if self._failure is not None:
            d: Deferred[None] = Deferred()
            d.errback(self._failure)
            return d
        if self._pending is not None and not self._pending:
            return succeed(None)
        d = Deferred()
        self._waiting.append(d)
        return d

    @property
    def recovered(self) -> bool:
        """Whether recovery is over."""
        return self._pending is not None and not self._pending

    def expect(self, call_ids: list[str]) -> None:
        """Wait for these calls (once, at start-up)."""
        self._pending = set(call_ids)
        for call_id in call_ids:
            self.check(call_id)
        self._fire_if_done()

    def check(self, call_id: str) -> None:
        """Look again at one call: drop it from the wait once it is settled."""
        if not self._pending or call_id not in self._pending:
            return
        record = self._book.get(call_id)
        if record is None or record.state is CallState.DEAD or record.term_code_settled:
            self._pending.discard(call_id)
            self._fire_if_done()

    def failed(self, error: BaseException) -> None:
        """Recovery could not run (the store did not open): errback the waiters."""
        self._failure = error
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(error)

    def _fire_if_done(self) -> None:
        if self._pending is not None and not self._pending:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)


async def recover(
    book: CallBook,
    pool: IAgentPool,
    clock: IReactorTime,
    metrics: CallMetrics,
    config: WrapupConfig,
    legs: ICallLegs | None = None,
) -> list[str]:
    """Load every unfinished record from the store and make each ready to resume.

    :param book: the records (empty: this runs once, at start-up).
    :param pool: told of each recovered call's agent.
    :param clock: the end time of calls found live.
    :param metrics: counts calls ended by ``gateway_failure``.
    :param config: the term codes a call found live asks for.
    :param legs: the SIP part, which ends the legs of calls found live; with
        ``None`` those legs are left up (and a warning says so).
    :returns: the ids of the records now in ``wrapup``, for the pipeline to
        resume, once the legs of the calls found live are ended.
    """
    records = await book.store.unfinished()
    now = clock.seconds()
    resume: list[str] = []
    writes: list[Deferred[CallRecord]] = []
    orphaned = [r for r in records if r.is_live and r.dialogs]
    if orphaned:
        await _end_orphaned(orphaned, legs, config)
    for record in records:
        book.load(record)
        pool.call_started(record.agent, record.call_id)
        pool.call_ended(record.agent, record.call_id)
        if record.is_live:
            outcome = decide(record, CallEvent(EventKind.CRASH_RECOVERY), config)
            assert outcome.end_reason is not None
            log.warn(
                "call {call_id} on {agent} was live when the gateway stopped: ended as"
                " {reason}, term code {term_code}",
                call_id=record.call_id,
                agent=record.agent,
                reason=outcome.end_reason,
                term_code=outcome.term_code,
            )
            metrics.ended.labels(reason=outcome.end_reason).inc()
            writes.append(
                book.update(record.call_id, **ended_fields(outcome, now), dialogs={})
            )
            resume.append(record.call_id)
        elif record.state is CallState.WRAPUP:
            log.info(
                "call {call_id} on {agent}: resuming its wrap-up (AIA {aia}, contact {contact},"
                " term code {term_code})",
                call_id=record.call_id,
                agent=record.agent,
                aia=record.aia.value,
                contact=record.contact.value,
                term_code=record.term_code.value,
            )
            if record.hangup is StepState.PENDING and "livevox" not in record.dialogs:
                # A held transfer leg with no noted dialog cannot be reached.
                writes.append(book.update(record.call_id, hangup=StepState.SKIPPED))
            resume.append(record.call_id)
        else:
            log.warn(
                "call {call_id} on {agent} is a dead letter: {error}",
                call_id=record.call_id,
                agent=record.agent,
                error=record.last_error,
            )
    await gatherResults(writes)
    log.info(
        "call store recovery: {resumed} wrap-ups to resume, {dead} dead letters",
        resumed=len(resume),
        dead=len(records) - len(resume),
    )
    return resume


async def _end_orphaned(
    records: list[CallRecord], legs: ICallLegs | None, config: WrapupConfig
) -> None:
    """Have the SIP part end the legs of every call found live, at once; wait for them all."""
    if legs is None:
        for record in records:
            log.warn(
                "call {call_id}: no SIP part to end its legs ({legs}): they stay up",
                call_id=record.call_id,
                legs=", ".join(sorted(record.dialogs)),
            )
        return
    ending: list[Deferred[None]] = []
    for record in records:
        outcome = decide(record, CallEvent(EventKind.CRASH_RECOVERY), config)
        log.info(
            "call {call_id} on {agent}: ending its legs left up by the last run ({legs})",
            call_id=record.call_id,
            agent=record.agent,
            legs=", ".join(sorted(record.dialogs)),
        )
        d = maybeDeferred(
            legs.end_orphaned, record.call_id, record.dialogs, outcome.cause, outcome.text
        )
        d.addErrback(_legs_not_ended, record.call_id)
        ending.append(d)
    await gatherResults(ending, consumeErrors=True)


def _legs_not_ended(failure: Failure, call_id: str) -> None:
    log.failure("call {call_id}: ending its legs failed", failure, call_id=call_id)
