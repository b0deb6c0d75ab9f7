"""The wrap-up pipeline: from a call's end until LiveVox has its AIA, its contact changes and its term code.

Each record in ``wrapup`` gets one coroutine that takes its steps in order,
writing each step's state to the store as it goes:

1. ``aia``: the AIA post, when ``[aia]`` is configured;
2. ``contact``: the contact update (or create, when LiveVox lacks the
   account and the disposition or config allows it), when the vendor sent
   contact changes;
3. ``term_code``: the term code save, with ``moveAgentToNotReady`` as the
   agent pool decides;
4. then ``pool.wrapup_done(...)``.

Before the first step the term code is resolved (its ``lvresult`` goes in the
AIA), and LiveVox's ids are looked up if still unknown.

**Transfer to a number.** When the disposition names a
``transfer_number`` (a REFER's ``Refer-To`` with a number), LiveVox's manual
conference to it (``POST /callControl/agent/conference/manual``) is posted
before the term code (``conference_order = "conference_then_term_code"``) or
after it (``"term_code_then_conference"``). It is posted once per process
(a repeat could dial twice): a failure is noted for the REFER's NOTIFY and
the term code goes on, so the customer still goes to a person.

**The transfer's status.** :meth:`WrapupPipeline.watch_transfer` fires with
a :class:`~lvgateway.calls.outcome.TransferStatus` (LiveVox's answers mapped
by :func:`~lvgateway.calls.outcome.transfer_status`) just before the LiveVox
leg is ended, so the SIP part can send the REFER's final NOTIFY first.

**Transfer.** When the call ends with next action ``transfer`` while its
LiveVox leg is up, the same steps run while the leg is up, and the leg is
ended through :class:`~lvgateway.calls.interfaces.ICallLegs` right after the
term code (``transfer_order = "term_code_then_end"``) or right before it
(``"end_then_term_code"``); either way no later than ``transfer_timeout``
after the end, when it is ended regardless and the steps go on.

**At least once.** A step is written ``sent``, and committed, before its
request goes out (the first such commit also makes the call's end durable);
its ``done`` is written behind, carried by the next commit.
A step found ``sent`` (after a crash, a timeout, a lost answer) is sent
again, except the term code, which is first checked against the agent's
status: if LiveVox no longer holds the call, the term code landed and counts
as done. A 4xx on a term code save is checked the same way (an earlier
attempt may have closed the call). Contact creation answered "already
exists" is followed by an update.

**Failures.** LiveVox unavailable (5xx, timeout, no connection), or any
unexpected error: the record waits (exponential backoff with jitter) and
tries again from the step that failed. 401: the pool is told the session
expired (it logs the agent in again) and the step is retried at once. A 4xx
on the AIA or the contact step fails that step for good, but does not hold
back the term code: the call is closed with ``moveAgentToNotReady`` true and
the record becomes a dead letter. A 4xx on the term code, an unknown term
code with no usable fallback, or a wrap-up still failing ``max_age`` after it
began, makes the record a dead letter where it stands. A dead letter keeps
its agent out of service (the pool is not told the wrap-up is done) until an
operator re-drives or dismisses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from lvgateway.agents.interfaces import IAgentPool
from lvgateway.backoff import Backoff
from lvgateway.calls.book import CallBook
from lvgateway.calls.ids import IdFinder, Sighting
from lvgateway.calls.interfaces import ICallLegs
from lvgateway.calls.metrics import CallMetrics
from lvgateway.calls.outcome import (
    TransferStatus,
    call_close,
    requested_term_code,
    transfer_status,
)
from lvgateway.calls.records import CallRecord, CallState, StepState
from lvgateway.calls.termcodes import TermCodeError, TermCodes
from lvgateway.config.model import WrapupConfig
from lvgateway.livevox.aia import AiaRecord
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    LiveVoxError,
    NotFoundError,
    SessionExpiredError,
    in_outage,
)
from lvgateway.livevox.interfaces import IAiaAPI, ILiveVoxCallAPI
from lvgateway.livevox.parsing import Session

__all__ = ["StepListener", "WrapupPipeline"]

log = Logger()

#: ``listener(call_id, step, outcome)``: ``step`` is ``ids``, ``aia``,
#: ``contact``, ``term_code``, ``hangup`` or ``wrapup``; ``outcome`` is
#: ``sent``, ``done``, ``checked``, ``skipped``, ``retried``, ``failed``, or
#: for ``wrapup`` ``done`` or ``dead``.
StepListener = Callable[[str, str, str], None]

_SETTLED = (StepState.DONE, StepState.SKIPPED, StepState.FAILED)


class _RetryError(Exception):
    """The step could not be done now; the wrap-up waits and tries again."""

    def __init__(self, step: str, cause: BaseException | str, expired: bool = False) -> None:
        super().__init__(step, cause)
        self.step = step
        self.cause = cause
        self.expired = expired

    def __str__(self) -> str:
        return f"{self.step}: {self.cause}"


class _DeadError(Exception):
    """The wrap-up cannot go on without an operator."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(step, reason)
        self.step = step
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.step}: {self.reason}"


class WrapupPipeline:
    """Runs the wrap-up of every record in ``wrapup``, one coroutine per call.

    :param book: the records.
    :param config: the wrap-up settings.
    :param call_api: LiveVox's call wrap-up calls (term code, contacts).
    :param aia: the AIA endpoint, or ``None`` when ``[aia]`` is not configured.
    :param pool: the agent pool: sessions, ``moveAgentToNotReady``, ``wrapup_done``.
    :param term_codes: resolves term codes against the service's catalogue.
    :param ids: reads the agent's status for ids and for "is the call closed".
    :param clock: backoff delays and the transfer bound run on it.
    :param metrics: the calls part's metrics.
    :param retry: the backoff (the wrap-up retries until ``max_age``).
    """

    def __init__(
        self,
        *,
        book: CallBook,
        config: WrapupConfig,
        call_api: ILiveVoxCallAPI,
        aia: IAiaAPI | None,
        pool: IAgentPool,
        term_codes: TermCodes,
        ids: IdFinder,
        clock: IReactorTime,
        metrics: CallMetrics,
        retry: Backoff,
    ) -> None:
        self._book = book
        self._config = config
        self._api = call_api
        self._aia = aia
        self._pool = pool
        self._term_codes = term_codes
        self._ids = ids
        self._clock = clock
        self._metrics = metrics
        self._retry = retry
        self.legs: ICallLegs | None = None
        self._running: dict[str, Deferred[None]] = {}
        self._wakeups: dict[str, tuple[IDelayedCall, Deferred[None]]] = {}
        self._transfer_timers: dict[str, IDelayedCall] = {}
        self._idle: list[Deferred[None]] = []
        self._listeners: list[StepListener] = []
        self._stopping = False
        self._transfer_watches: dict[str, list[Deferred[TransferStatus]]] = {}
        #: A transfer's post LiveVox refused or did not answer, by call.
        self._transfer_failures: dict[str, TransferStatus] = {}
        #: The calls whose manual conference was posted (never twice).
        self._conferenced: set[str] = set()

    # -- control ------------------------------------------------------------------------

    def add_listener(self, listener: StepListener) -> None:
        """Call ``listener(call_id, step, outcome)`` on every step outcome (see :data:`StepListener`)."""
        self._listeners.append(listener)

    def start(self, call_id: str) -> None:
        """Run (or resume) the wrap-up of a record in ``wrapup``; nothing if it is running already."""
        if call_id in self._running or self._stopping:
            return
        d = Deferred.fromCoroutine(self._run(call_id))
        self._running[call_id] = d
        d.addErrback(self._crashed, call_id)
        d.addBoth(self._ended, call_id)

    def arm_transfer(self, call_id: str) -> None:
        """Start the transfer's clock: the LiveVox leg is ended ``transfer_timeout`` from now at the latest."""
        self._transfer_timers[call_id] = self._clock.callLater(
            self._config.transfer_timeout, self._transfer_timed_out, call_id
        )

    def watch_transfer(self, call_id: str) -> Deferred[TransferStatus]:
        """Return a Deferred that fires with how the call's transfer went, just before its LiveVox leg is ended.

        It fires once: with 200 when every post was answered 2xx, with the
        first refusal mapped (:func:`~lvgateway.calls.outcome.transfer_status`)
        otherwise, with 408 when ``transfer_timeout`` ran out first.
        """
        d: Deferred[TransferStatus] = Deferred()
        self._transfer_watches.setdefault(call_id, []).append(d)
        return d

    def _note_transfer_failure(self, call_id: str, status: int | None) -> None:
        self._transfer_failures.setdefault(call_id, transfer_status(status))

    def _settle_transfer(self, call_id: str, fallback: TransferStatus) -> None:
        """Fire the call's transfer watches: with the first failure noted, else ``fallback``."""
        status = self._transfer_failures.pop(call_id, fallback)
        for d in self._transfer_watches.pop(call_id, []):
            try:
                d.callback(status)
            except Exception:
                log.failure("call {call_id}: reporting the transfer failed", call_id=call_id)

    def poke(self) -> None:
        """Retry every waiting wrap-up now instead of at the end of its backoff (for the drain)."""
        for delayed, d in list(self._wakeups.values()):
            if delayed.active():
                delayed.cancel()
                d.callback(None)

    def when_idle(self) -> Deferred[None]:
        """Return a Deferred that fires once no wrap-up is running."""
        if not self._running:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def stop(self) -> Deferred[None]:
        """Cancel every running wrap-up (their records stay in ``wrapup`` for the next start).

        :returns: a Deferred that fires once they have all stopped.
        """
        self._stopping = True
        for timer in self._transfer_timers.values():
            if timer.active():
                timer.cancel()
        self._transfer_timers.clear()
        running = list(self._running.values())
        for d in running:
            d.cancel()
        return gatherResults(running, consumeErrors=True).addBoth(lambda _: None)

    # -- the loop -----------------------------------------------------------------------

    def _crashed(self, failure: Failure, call_id: str) -> None:
        if isinstance(failure.value, CancelledError):
            return
        log.failure("call {call_id}: wrap-up crashed", failure, call_id=call_id)

    def _ended(self, _: object, call_id: str) -> None:
        self._running.pop(call_id, None)
        if not self._running:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _notify(self, call_id: str, step: str, outcome: str) -> None:
        for listener in self._listeners:
            try:
                listener(call_id, step, outcome)
            except Exception:
                log.failure("wrap-up listener failed on {call_id}", call_id=call_id)

    def _counted(self, call_id: str, step: str, outcome: str) -> None:
        self._metrics.step(step, outcome)
        self._notify(call_id, step, outcome)

    async def _run(self, call_id: str) -> None:
        expired_in_a_row = 0
        while True:
            record = self._book.get(call_id)
            if record is None or record.state is not CallState.WRAPUP:
                return
            try:
                await self._steps(record)
                return
            except _DeadError as dead:
                await self._dead(call_id, str(dead))
                return
            except _RetryError as retry:
                record = self._book.require(call_id)
                attempts = record.attempts + 1
                self._counted(call_id, retry.step, "retried")
                started = record.wrapup_started_at or record.ended_at or self._clock.seconds()
                if self._clock.seconds() - started >= self._config.max_age:
                    await self._dead(
                        call_id,
                        f"still failing after max_age ({self._config.max_age:.0f}s): {retry}",
                    )
                    return
                expired_in_a_row = expired_in_a_row + 1 if retry.expired else 0
                if expired_in_a_row == 1:
                    delay = 0.0
                else:
                    delay = self._retry.delay(min(attempts - 1, 32))
                # During a LiveVox outage the outage watch reports once for every call.
                emit = log.debug if in_outage(retry.cause) else log.warn
                emit(
                    "call {call_id}: wrap-up step {step} failed ({error}); attempt {attempts},"
                    " next in {delay:.1f}s",
                    call_id=call_id,
                    step=retry.step,
                    error=str(retry.cause),
                    attempts=attempts,
                    delay=delay,
                )
                await self._book.update(call_id, attempts=attempts, last_error=str(retry))
                if delay > 0:
                    await self._sleep(call_id, delay)

    def _sleep(self, call_id: str, delay: float) -> Deferred[None]:
        """Wait ``delay`` seconds, or less if :meth:`poke` says so; cancellable."""

        def cancel(d: Deferred[None]) -> None:
            if delayed.active():
                delayed.cancel()

        d: Deferred[None] = Deferred(cancel)
        delayed = self._clock.callLater(delay, d.callback, None)
        self._wakeups[call_id] = (delayed, d)

        def forget(result: object) -> object:
            if self._wakeups.get(call_id, (None, None))[1] is d:
                del self._wakeups[call_id]
            return result

        return d.addBoth(forget)

    async def _steps(self, record: CallRecord) -> None:
        """Take every step not yet settled, in order; raise :class:`_RetryError` or :class:`_DeadError`.

        Each step is handed the record as the last one left it, and returns
        it as it leaves it: no step looks the record up again.
        """
        if record.service_id is None or (
            record.call_transaction_id is None and record.attempts == 0
        ):
            record = await self._early_ids(record)
        record = await self._resolve(record)
        record = await self._step_aia(record)
        record = await self._step_contact(record)
        transfer = record.transfer
        d = record.disposition
        number = d.transfer_number if transfer and d is not None else None
        conference_first = self._config.conference_order == "conference_then_term_code"
        if number and conference_first:
            await self._conference(record, number)
        if transfer and self._config.transfer_order == "end_then_term_code":
            self._hang_up(record.call_id, "transfer", transfer_status(200))
        record = await self._step_term_code(record)
        if number and not conference_first:
            await self._conference(record, number)
        if transfer:
            self._hang_up(record.call_id, "transfer", transfer_status(200))
        await self._finish(record)

    async def _conference(self, record: CallRecord, number: str) -> None:
        """Post LiveVox's manual conference to ``number``, once; a failure is noted, not raised."""
        call_id = record.call_id
        if call_id in self._conferenced:
            return
        session = await self._session(record, "conference")
        self._conferenced.add(call_id)
        self._notify(call_id, "conference", "sent")
        try:
            await self._api.manual_conference(session, number)
        except CancelledError:
            raise
        except SessionExpiredError as e:
            # Refused before it was applied: log in again and post it then.
            self._conferenced.discard(call_id)
            self._pool.session_expired(record.agent, session)
            raise _RetryError("conference", e, expired=True) from e
        except Exception as e:
            status = e.status if isinstance(e, LiveVoxError) else None
            self._note_transfer_failure(call_id, status)
            self._notify(call_id, "conference", "failed")
            log.error(
                "call {call_id}: LiveVox's manual conference to {number} failed ({error});"
                " the term code goes on",
                call_id=call_id,
                number=number,
                error=str(e),
            )
            return
        self._notify(call_id, "conference", "done")
        log.info(
            "call {call_id}: conferenced to {number} at LiveVox", call_id=call_id, number=number
        )

    # -- helpers --------------------------------------------------------------------------

    async def _session(self, record: CallRecord, step: str) -> Session:
        try:
            return await self._pool.session_for(record.agent)
        except CancelledError:
            raise
        except Exception as e:
            raise _RetryError(step, f"no LiveVox session for {record.agent}: {e}") from e

    def _failure(
        self, step: str, error: Exception, record: CallRecord, session: Session | None
    ) -> _RetryError | LiveVoxClientError:
        """Sort an error: a :class:`_RetryError` to raise, or the 4xx that failed the step for good."""
        if isinstance(error, SessionExpiredError):
            if session is not None:
                self._pool.session_expired(record.agent, session)
            return _RetryError(step, error, expired=True)
        if isinstance(error, LiveVoxClientError):
            return error
        if not isinstance(error, LiveVoxError):
            log.failure(
                "call {call_id}: unexpected error in wrap-up step {step}",
                Failure(error),  # type: ignore[no-untyped-call]
                call_id=record.call_id,
                step=step,
            )
        return _RetryError(step, error)

    def _retry_for(
        self, step: str, error: Exception, record: CallRecord, session: Session | None
    ) -> _RetryError:
        """Sort an error of a read (status, catalogue), which is retried even on a 4xx."""
        failure = self._failure(step, error, record, session)
        return failure if isinstance(failure, _RetryError) else _RetryError(step, error)

    async def _early_ids(self, record: CallRecord) -> CallRecord:
        """Look up LiveVox's ids once before the AIA, so it can carry the transaction id; failures wait for the term code step."""
        try:
            session = await self._pool.session_for(record.agent)
            return (await self._ids.look(record, session)).record
        except CancelledError:
            raise
        except Exception as e:
            log.info(
                "call {call_id}: early look-up of LiveVox's ids failed ({error}); retried at the term code",
                call_id=record.call_id,
                error=str(e),
            )
            return record

    async def _resolve(self, record: CallRecord) -> CallRecord:
        """Resolve the term code the call asks for, once (its ``lvresult`` goes in the AIA)."""
        call_id = record.call_id
        if record.term_code_id is not None or record.term_code_settled:
            return record
        requested = record.term_code_name or requested_term_code(
            record.disposition, record.transfer, record.end_reason or "", self._config
        )
        service_id = record.service_id
        if service_id is None:
            raise _RetryError("term_code", "the call's service is not known yet")
        try:
            resolved = await self._term_codes.resolve(
                requested, service_id, lambda: self._session(record, "term_code"), call_id
            )
        except TermCodeError as e:
            raise _DeadError("term_code", str(e)) from e
        except (_RetryError, CancelledError):
            raise
        except Exception as e:
            raise self._retry_for("term_code", e, record, None) from e
        return self._note(
            record,
            term_code_name=requested,
            term_code_id=resolved.term_code_id,
            lv_result=resolved.lv_result,
            fallback_used=resolved.fallback,
        )

    def _note(self, record: CallRecord, **changes: Any) -> CallRecord:
        """Change a record without waiting for the commit (the next waited write carries it); return the new version.

        For what a crash may lose at no cost: a step done whose repeat is
        harmless, a step skipped, a resolution made again the same way.
        Whatever must be durable before a request goes out (``sent``) is
        waited for instead.
        """
        call_id = record.call_id
        changed, saved = self._book.revise(call_id, **changes)
        saved.addErrback(
            lambda f: log.failure(
                "call {call_id}: recording {changes} failed",
                f,
                call_id=call_id,
                changes=sorted(changes),
            )
        )
        return changed

    async def _fail_step(
        self, record: CallRecord, step: str, error: BaseException | str
    ) -> CallRecord:
        """Fail a data step for good: log it, count it, and go on to the term code."""
        call_id = record.call_id
        record = await self._book.update(
            call_id, **{step: StepState.FAILED}, last_error=f"{step}: {error}"
        )
        self._counted(call_id, step, "failed")
        log.error(
            "call {call_id}: wrap-up step {step} failed for good: {error}; the term code goes on"
            " and the record becomes a dead letter",
            call_id=call_id,
            step=step,
            error=str(error),
        )
        return record

    # -- the steps ------------------------------------------------------------------------

    def aia_record(self, record: CallRecord) -> AiaRecord:
        """Return the AIA data of a call: LiveVox's ids, the caller, and what the vendor said."""
        d = record.disposition
        next_action = d.next_action if d is not None and d.next_action else None
        if next_action is None:
            transfer = record.transfer or record.term_code_name == self._config.transfer_term_code
            next_action = "transfer" if transfer else "done"
        return AiaRecord(
            transaction_id=record.call_transaction_id,
            session_id=record.call_session_id,
            ani=record.ani,
            account_number=(d.account if d is not None else None) or record.account,
            next_action=next_action,
            call_outcome=d.call_outcome if d is not None else None,
            lvresult=(d.result if d is not None else None) or record.lv_result,
            other=dict(d.other) if d is not None else {},
        )

    async def _step_aia(self, record: CallRecord) -> CallRecord:
        if record.aia in _SETTLED:
            return record
        aia = self._aia
        if aia is None:
            self._counted(record.call_id, "aia", "skipped")
            return self._note(record, aia=StepState.SKIPPED)
        body = self.aia_record(record)
        return await self._send_data(record, "aia", None, lambda: aia.post(body))

    async def _step_contact(self, record: CallRecord) -> CallRecord:
        if record.contact in _SETTLED:
            return record
        d = record.disposition
        if d is None or d.contact is None:
            self._counted(record.call_id, "contact", "skipped")
            return self._note(record, contact=StepState.SKIPPED)
        account = d.account or d.contact.get("account") or record.account
        if not account:
            return await self._fail_step(
                record, "contact", "no account to update: none from LiveVox or the vendor"
            )
        fields = {k: v for k, v in d.contact.items() if k != "account"}
        create = (
            d.create_contact
            if d.create_contact is not None
            else self._config.create_missing_contacts
        )
        session = await self._session(record, "contact")
        unknown_to_livevox = record.account is None
        return await self._send_data(
            record,
            "contact",
            session,
            lambda: self._save_contact(str(account), fields, create, unknown_to_livevox, session),
        )

    async def _send_data(
        self,
        record: CallRecord,
        step: str,
        session: Session | None,
        send: Callable[[], Awaitable[Any]],
    ) -> CallRecord:
        """Take a data step (AIA, contact): ``sent``, the request, then ``done`` or failed for good."""
        call_id = record.call_id
        record = await self._book.update(call_id, **{step: StepState.SENT})
        self._notify(call_id, step, "sent")
        try:
            await send()
        except CancelledError:
            raise
        except Exception as e:
            failure = self._failure(step, e, record, session)
            if isinstance(failure, _RetryError):
                raise failure from e
            return await self._fail_step(record, step, failure)
        self._counted(call_id, step, "done")
        return self._note(record, **{step: StepState.DONE})

    async def _save_contact(
        self,
        account: str,
        fields: dict[str, Any],
        create: bool,
        unknown_to_livevox: bool,
        session: Session,
    ) -> None:
        """Update the contact; create it first when LiveVox did not know the account, or when the update finds none."""
        if create and unknown_to_livevox:
            try:
                await self._api.create_contact({"account": account, **fields}, session)
                return
            except ContactExistsError:
                pass  # it exists after all: the update below carries the vendor's fields
        try:
            await self._api.update_contact(account, fields, session)
        except NotFoundError:
            if not create:
                raise
            try:
                await self._api.create_contact({"account": account, **fields}, session)
            except ContactExistsError:
                return  # created meanwhile (or by an earlier attempt): counts as done

    async def _step_term_code(self, record: CallRecord) -> CallRecord:
        """Save the term code, once: a save whose outcome was lost is checked at LiveVox first."""
        if record.term_code in _SETTLED:
            return record
        call_id = record.call_id
        session = await self._session(record, "term_code")
        was_sent = record.term_code is StepState.SENT
        if was_sent or record.call_transaction_id is None:
            sighting = await self._look(record, session)
            if sighting.closed:
                return await self._closed_at_livevox(sighting, was_sent)
            record = sighting.record
        transaction_id, call_session_id = record.call_transaction_id, record.call_session_id
        if transaction_id is None or call_session_id is None:
            raise _RetryError("ids", "LiveVox's ids of the call are not known yet")
        term_code_id = record.term_code_id
        assert term_code_id is not None
        move = record.move_not_ready
        if move is None:
            move = self._pool.move_to_not_ready_after_call(record.agent, call_close(record))
        d = record.disposition
        record = await self._book.update(call_id, term_code=StepState.SENT, move_not_ready=move)
        self._notify(call_id, "term_code", "sent")
        try:
            await self._api.save_term_code(
                session,
                call_transaction_id=transaction_id,
                call_session_id=call_session_id,
                term_code_id=term_code_id,
                phone_dialed=record.phone_dialed or record.ani,
                move_agent_to_not_ready=move,
                service_id=record.service_id,
                account=(d.account if d is not None else None) or record.account,
            )
        except CancelledError:
            raise
        except Exception as e:
            failure = self._failure("term_code", e, record, session)
            if isinstance(failure, _RetryError):
                raise failure from e
            # An earlier attempt may have closed the call: LiveVox refuses the repeat.
            sighting = await self._look(record, session)
            if sighting.closed:
                return await self._closed_at_livevox(sighting, True)
            await self._book.update(call_id, term_code=StepState.FAILED)
            self._counted(call_id, "term_code", "failed")
            if record.transfer:
                self._note_transfer_failure(call_id, failure.status)
            raise _DeadError("term_code", f"LiveVox refused the term code: {failure}") from e
        log.info(
            "call {call_id}: term code {term_code} ({term_code_id}) saved for {agent},"
            " moveAgentToNotReady={move}",
            call_id=call_id,
            term_code=record.term_code_name,
            term_code_id=record.term_code_id,
            agent=record.agent,
            move=move,
        )
        return self._term_code_done(record, "done")

    async def _look(self, record: CallRecord, session: Session) -> Sighting:
        try:
            return await self._ids.look(record, session)
        except CancelledError:
            raise
        except Exception as e:
            raise self._retry_for("ids", e, record, session) from e

    async def _closed_at_livevox(self, sighting: Sighting, was_sent: bool) -> CallRecord:
        """LiveVox no longer holds the call: a term code sent before landed, or LiveVox closed it itself."""
        state = sighting.line_state
        record = sighting.record
        call_id = record.call_id
        # What LiveVox did with the agent, as its status shows it: not a choice made here.
        move = record.move_not_ready if was_sent else state == "NOTREADY"
        if was_sent:
            record = await self._book.update(call_id, move_not_ready=move)
            log.info(
                "call {call_id}: LiveVox no longer holds the call (agent {agent} {state}):"
                " the term code sent before landed; not sent again",
                call_id=call_id,
                agent=record.agent,
                state=state,
            )
            return self._term_code_done(record, "checked")
        record = await self._book.update(
            call_id,
            term_code=StepState.SKIPPED,
            move_not_ready=move,
            last_error="LiveVox closed the call before the gateway saved a term code",
        )
        self._counted(call_id, "term_code", "skipped")
        log.warn(
            "call {call_id}: LiveVox closed the call before the gateway saved a term code"
            " (agent {agent} {state}); nothing to save",
            call_id=call_id,
            agent=record.agent,
            state=state,
        )
        return record

    def _term_code_done(self, record: CallRecord, outcome: str) -> CallRecord:
        if record.ended_at is not None:
            self._metrics.duration.observe(max(0.0, self._clock.seconds() - record.ended_at))
        self._counted(record.call_id, "term_code", outcome)
        return self._note(record, term_code=StepState.DONE)

    def _transfer_timed_out(self, call_id: str) -> None:
        self._transfer_timers.pop(call_id, None)
        record = self._book.get(call_id)
        if record is not None and record.hangup is StepState.PENDING:
            log.warn(
                "call {call_id}: transfer posts not done within {timeout}s: ending the LiveVox leg",
                call_id=call_id,
                timeout=self._config.transfer_timeout,
            )
            self._hang_up(call_id, "transfer", transfer_status(None))

    def _hang_up(self, call_id: str, reason: str, status: TransferStatus) -> None:
        """End the LiveVox leg of a transfer, once (the step is recorded, the BYE not awaited).

        The transfer's watches hear ``status`` (or the failure noted) first.
        """
        record = self._book.get(call_id)
        if record is None or record.hangup is not StepState.PENDING:
            return
        self._settle_transfer(call_id, status)
        timer = self._transfer_timers.pop(call_id, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._book.update(call_id, hangup=StepState.DONE).addErrback(
            lambda f: log.failure(
                "call {call_id}: recording the hang-up failed", f, call_id=call_id
            )
        )
        self._counted(call_id, "hangup", "done")
        self.end_livevox_leg(call_id, reason)

    def end_livevox_leg(self, call_id: str, reason: str) -> None:
        """Ask the SIP part to end a call's LiveVox leg now; its failure is logged, not awaited.

        :param call_id: the call.
        :param reason: for the ``Reason`` header and the log.
        """
        log.info(
            "call {call_id}: ending the LiveVox leg ({reason})", call_id=call_id, reason=reason
        )
        if self.legs is None:
            log.warn("call {call_id}: no SIP part to end the LiveVox leg", call_id=call_id)
            return
        record = self._book.get(call_id)
        dialog = record.dialogs.get("livevox") if record is not None else None
        try:
            d = self.legs.hang_up_livevox(call_id, reason, dialog)
        except Exception:
            log.failure("call {call_id}: ending the LiveVox leg failed", call_id=call_id)
            return
        d.addErrback(
            lambda f: log.failure(
                "call {call_id}: ending the LiveVox leg failed", f, call_id=call_id
            )
        )

    # -- the end ----------------------------------------------------------------------------

    async def _finish(self, record: CallRecord) -> None:
        call_id = record.call_id
        failed = record.failed_steps()
        if failed:
            await self._dead(call_id, f"step {', '.join(failed)} failed: {record.last_error}")
            return
        saved = self._book.update(call_id, state=CallState.DONE, finished_at=self._clock.seconds())
        moved = bool(record.move_not_ready)
        log.info(
            "call {call_id}: wrap-up done in {seconds:.3f}s after {attempts} failed attempts",
            call_id=call_id,
            seconds=self._clock.seconds() - (record.ended_at or record.accepted_at),
            attempts=record.attempts,
        )
        # The agent is free at LiveVox now: tell the pool before the commit, so
        # that LiveVox's next call for it is not refused meanwhile. A crash
        # before the commit finds the term code sent, and checks it.
        self._conferenced.discard(call_id)
        self._pool.wrapup_done(record.agent, call_id, moved)
        self._notify(call_id, "wrapup", "done")
        await saved

    async def _dead(self, call_id: str, reason: str) -> None:
        record = await self._book.update(
            call_id,
            state=CallState.DEAD,
            finished_at=self._clock.seconds(),
            last_error=reason,
        )
        self._metrics.dead_lettered.inc()
        self._settle_transfer(call_id, transfer_status(None))
        self._conferenced.discard(call_id)
        log.error(
            "call {call_id}: wrap-up is a dead letter ({reason}); agent {agent} is kept out of"
            " service until an operator re-drives or dismisses it (term code {term_code})",
            call_id=call_id,
            reason=reason,
            agent=record.agent,
            term_code=record.term_code.value,
        )
        self._notify(call_id, "wrapup", "dead")
