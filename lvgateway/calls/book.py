"""The reactor side of the call store: the newest version of every unsettled record, written through.

Every change to a call goes through :meth:`CallBook.update`, on the reactor
thread: it makes the new record at once (so the next change builds on it,
whoever makes it) and hands it to the store, whose Deferred fires once the
row is committed. Records stay here while they are live, in wrap-up, or dead
letters; a record that reaches ``done`` or ``dismissed`` leaves once that
version is committed, and is read from the store after that.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from lvgateway.calls.errors import UnknownCallError
from lvgateway.calls.records import FINAL_STATES, CallRecord, CallState
from lvgateway.calls.store import CallStore

__all__ = ["CallBook"]


class CallBook:
    """The unsettled call records, newest versions, kept in step with the :class:`CallStore`.

    :param store: where every version is written.
    :param clock: stamps ``updated_at``.
    """

    def __init__(self, store: CallStore, clock: IReactorTime) -> None:
        self.store = store
        self._clock = clock
        self._records: dict[str, CallRecord] = {}

    def get(self, call_id: str) -> CallRecord | None:
        """Return the newest version of an unsettled record, or ``None``."""
        return self._records.get(call_id)

    def require(self, call_id: str) -> CallRecord:
        """Return the newest version of an unsettled record.

        :raises UnknownCallError: when it is not here.
        """
        record = self._records.get(call_id)
        if record is None:
            raise UnknownCallError(call_id)
        return record

    def records(self, state: CallState | None = None) -> list[CallRecord]:
        """Return the unsettled records (only those in ``state``, if given), oldest first."""
        found = [r for r in self._records.values() if state is None or r.state is state]
        return sorted(found, key=lambda r: (r.accepted_at, r.call_id))

    def count(self, state: CallState) -> int:
        """Return how many records are in ``state``."""
        return sum(1 for r in self._records.values() if r.state is state)

    def load(self, record: CallRecord) -> None:
        """Take in a record read from the store (at start-up), without writing it."""
        if record.state not in FINAL_STATES:
            self._records[record.call_id] = record

    def add(self, record: CallRecord) -> Deferred[CallRecord]:
        """Keep and write a new record; forget it again if it cannot be written.

        :returns: a Deferred of the record, fired once it is committed.
        """
        self._records[record.call_id] = record

        def not_written(failure: Failure) -> Failure:
            if self._records.get(record.call_id) is record:
                del self._records[record.call_id]
            return failure

        return self._save(record).addErrback(not_written)

    def update(self, call_id: str, **changes: Any) -> Deferred[CallRecord]:
        """Change a record now and write the new version.

        :param call_id: the call.
        :param changes: fields of :class:`CallRecord`; ``updated_at`` is set to now.
        :returns: a Deferred of the new version, fired once it is committed.
        :raises UnknownCallError: when the record is not here.
        """
        return self.revise(call_id, **changes)[1]

    def revise(self, call_id: str, **changes: Any) -> tuple[CallRecord, Deferred[CallRecord]]:
        """Change a record now; return the new version and the Deferred of its commit.

        For a caller that goes on with the new version at once, and waits
        for the commit only where it must (see :meth:`update`).
        """
        record = attrs.evolve(self.require(call_id), updated_at=self._clock.seconds(), **changes)
        self._records[call_id] = record
        return record, self._save(record)

    def _save(self, record: CallRecord) -> Deferred[CallRecord]:
        d = self.store.save(record)

        def saved(_: None) -> CallRecord:
            if record.state in FINAL_STATES and self._records.get(record.call_id) is record:
                del self._records[record.call_id]
            return record

        return d.addCallback(saved)
