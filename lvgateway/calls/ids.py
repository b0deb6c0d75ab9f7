"""Finding a call's LiveVox ids, and whether LiveVox still holds the call, from the agent's status.

The guide's sample INVITE carries LiveVox's callSessionId (``Session-ID``)
but not its callTransactionId, which the term code save needs. So the store
asks ``POST /callControl/agent/status`` for the agent's lines, finds the call
by its callSessionId, and keeps the transaction id, account and number
dialled: at acceptance (in the background, a few tries), and again in the
wrap-up if still unknown.

The reads at acceptance also confirm the call (:meth:`IdFinder.confirm`):
headers can be forged, so every call is matched in the status by the
INVITE's ``Session-ID`` even when it names a transaction id. A call the
agent's status still does not show once LiveVox has had ``confirm_within``
to list it was not routed by LiveVox, and is ended; a read that fails or
says nothing never ends a call.

The same answer tells the wrap-up whether LiveVox has closed the call, which
is how a term code whose answer was lost is known to have landed. docs/livevox-api.md
allows two readings of a closed call's line: the call gone from it, or the
last call still shown on a line that is READY or NOT READY again. Both count
as closed; only a line INCALL or WRAPUP (or another state of a call still in
progress) with this call on it means LiveVox still holds the call.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from lvgateway.agents.interfaces import IAgentPool
from lvgateway.calls.book import CallBook
from lvgateway.calls.metrics import CallMetrics
from lvgateway.calls.records import CallRecord
from lvgateway.livevox.client import as_epoch_millis
from lvgateway.livevox.errors import SessionExpiredError, in_outage
from lvgateway.livevox.interfaces import ILiveVoxAgentAPI
from lvgateway.livevox.parsing import (
    FREE_LINE_STATES,
    AgentStatus,
    CallDetails,
    LineStatus,
    Session,
)

__all__ = [
    "IdFinder",
    "Sighting",
    "Verdict",
    "confirm_schedule",
    "line_holding",
    "match_call",
]

log = Logger()


def match_call(record: CallRecord, status: AgentStatus) -> CallDetails | None:
    """Return the record's call among the agent's lines, if it is there.

    Matched on callSessionId (as LiveVox's guide does); on the transaction id
    when the INVITE gave no ``Session-ID``; and, when the record knows
    neither, the agent's one call in progress if it has exactly one.

    :param record: the call record.
    :param status: the agent's status.
    """
    if record.call_session_id:
        return status.find_call(record.call_session_id)
    calls = status.calls()
    if record.call_transaction_id:
        return next((c for c in calls if c.call_transaction_id == record.call_transaction_id), None)
    # Knowing neither id, only a call in progress can be this one: a free
    # line may still show the agent's last call.
    busy = [
        line.call
        for line in status.lines
        if line.call is not None and (line.state or "").upper() not in FREE_LINE_STATES
    ]
    return busy[0] if len(busy) == 1 else None


class Verdict(enum.Enum):
    """What the agent's status said of a newly accepted call."""

    CONFIRMED = "confirmed"  # LiveVox shows the call on the agent: it routed it
    NOT_ROUTED = "not_routed"  # the deciding read shows the agent without the call
    UNKNOWN = "unknown"  # the reads failed or said nothing: the call stands
    GONE = "gone"  # the call ended before a verdict


def confirm_schedule(within: float, polls: int) -> list[float]:
    """Return when to read the status, in seconds after acceptance: at once, then doubling to ``within``.

    :param within: when the last, deciding read is made.
    :param polls: how many reads (at least 2).
    """
    return [0.0] + [within / 2 ** (polls - 2 - i) for i in range(polls - 1)]


def line_holding(status: AgentStatus, call: CallDetails) -> LineStatus | None:
    """Return the agent's line that shows ``call``."""
    return next((line for line in status.lines if line.call is call), None)


@attrs.frozen
class Sighting:
    """What the agent's status showed of a call.

    :param status: the whole status.
    :param call: the call, when it is on one of the agent's lines.
    :param record: the call's record with what the status filled in.
    """

    status: AgentStatus
    call: CallDetails | None
    record: CallRecord

    @property
    def line_state(self) -> str | None:
        """The state of the line showing the call, else of the agent's main line."""
        line = line_holding(self.status, self.call) if self.call is not None else None
        return line.state if line is not None else self.status.state

    @property
    def closed(self) -> bool:
        """Whether LiveVox no longer holds the call: its term code is saved.

        True when LiveVox listed the agent's lines and the call is on none of
        them, or is on a line that is READY or NOT READY again (a closed call
        may still show as the line's last one). False when the status said
        nothing (``unchanged``), or the call's line is INCALL, WRAPUP or any
        other state of a call in progress.
        """
        if self.status.unchanged:
            return False
        if self.call is None:
            return True
        return (self.line_state or "").upper() in FREE_LINE_STATES


def _changes(record: CallRecord, call: CallDetails) -> dict[str, Any]:
    """Return the fields of ``record`` that ``call`` fills in (never overwriting what is known)."""
    changes: dict[str, Any] = {}
    if record.call_transaction_id is None and call.call_transaction_id:
        changes["call_transaction_id"] = call.call_transaction_id
        changes["ids_source"] = "status"
    if record.call_session_id is None and call.call_session_id:
        changes["call_session_id"] = call.call_session_id
    if record.account is None and call.account_number:
        changes["account"] = call.account_number
    if record.phone_dialed is None and call.phone_number:
        changes["phone_dialed"] = call.phone_number
    if record.service_id is None and call.service_id:
        changes["service_id"] = call.service_id
    return changes


class IdFinder:
    """Reads the agent's status for a call's ids, and keeps what it finds on the record.

    :param book: the records.
    :param api: LiveVox (``agent_status``).
    :param pool: the agent pool, for sessions.
    :param clock: the clock the tries at acceptance are spaced on.
    :param metrics: counts the ``ids`` step.
    """

    def __init__(
        self,
        book: CallBook,
        api: ILiveVoxAgentAPI,
        pool: IAgentPool,
        clock: IReactorTime,
        metrics: CallMetrics,
    ) -> None:
        self._book = book
        self._api = api
        self._pool = pool
        self._clock = clock
        self._metrics = metrics

    async def look(
        self, record: CallRecord, session: Session, since: float | None = None
    ) -> Sighting:
        """Read the agent's status once; keep the call's ids if it is there.

        :param record: the call's record.
        :param session: the agent's session.
        :param since: ask only for changes after this time (epoch seconds,
            sent as ``stateChangedAfter``); ``None`` for the whole status.
        :raises LiveVoxError: when LiveVox does not answer.
        """
        after = as_epoch_millis(since) if since is not None else None
        status = await self._api.agent_status(session, after)
        call_id = record.call_id
        call = match_call(record, status)
        if call is not None:
            changes = _changes(record, call)
            if changes:
                record = await self._book.update(call_id, **changes)
                if "call_transaction_id" in changes:
                    self._metrics.step("ids", "done")
                    log.info(
                        "call {call_id}: LiveVox transaction {transaction} found on {agent}'s status",
                        call_id=call_id,
                        transaction=changes["call_transaction_id"],
                        agent=record.agent,
                    )
        return Sighting(status, call, record)

    async def confirm(self, call_id: str, within: float, polls: int) -> Verdict:
        """Confirm a newly accepted call in its agent's status, keeping the ids found.

        Reads the status on :func:`confirm_schedule`; the first read that
        shows the call confirms it. Only the last read, made ``within``
        seconds after acceptance without ``stateChangedAfter``, can say the
        call was not routed: the agent listed with no such call. A failed or
        empty read says nothing, so an outage never ends a real call. Never
        raises (but for cancellation).

        :param call_id: the call.
        :param within: how long LiveVox may take to show a routed call.
        :param polls: the most reads to make.
        """
        started = self._clock.seconds()
        verdict = Verdict.UNKNOWN
        schedule = confirm_schedule(within, polls)
        for n, at in enumerate(schedule):
            delay = started + at - self._clock.seconds()
            if delay > 0:
                await deferLater(self._clock, delay, lambda: None)
            record = self._book.get(call_id)
            if record is None or not record.is_live:
                return Verdict.GONE
            last = n == len(schedule) - 1
            ready = self._pool.ready_since(record.agent)
            # "just before the agent's last READY" (docs/design.md): the call came
            # after it. The deciding read asks for the whole status.
            since = ready - 1.0 if ready and not last else None
            session: Session | None = None
            try:
                session = await self._pool.session_for(record.agent)
                sighting = await self.look(record, session, since)
            except CancelledError:
                raise
            except SessionExpiredError:
                if session is not None:
                    self._pool.session_expired(record.agent, session)
                verdict = Verdict.UNKNOWN
                continue
            except Exception as e:
                emit = log.debug if in_outage(e) else log.warn  # the outage watch reports
                emit(
                    "call {call_id}: agent status for {agent} failed: {error}",
                    call_id=call_id,
                    agent=record.agent,
                    error=str(e),
                )
                verdict = Verdict.UNKNOWN
                continue
            if sighting.call is not None:
                return Verdict.CONFIRMED
            verdict = Verdict.UNKNOWN if sighting.status.unchanged else Verdict.NOT_ROUTED
        if verdict is Verdict.UNKNOWN:
            self._metrics.step("ids", "retried")
            log.info(
                "call {call_id}: LiveVox's status did not confirm the call; it stands,"
                " and the wrap-up asks again for its ids",
                call_id=call_id,
            )
        return verdict
