"""The durable call store: one row per call in SQLite, written off the reactor thread.

The file is ``<state_dir>/calls.sqlite3``, in WAL mode with
``synchronous=FULL`` by default (a commit survives a crash of the process
and of the machine). A lock file beside it (``calls.lock``, ``flock``) keeps a
second gateway from opening the same store.

Every write is the whole record (an upsert): the reactor side keeps the
newest version of each live record and hands it to :meth:`CallStore.save`.
Writes are *group-committed*: all the rows saved while the previous commit
was running go into the next transaction, one row per call, newest version
only. Each :meth:`CallStore.save` Deferred fires once its row is committed,
so a caller that waits for it knows the row survives a crash.

Schema (``PRAGMA user_version`` 2)::

    calls(call_id TEXT PRIMARY KEY, state, agent, dnis, accepted_at, updated_at,
          service_id, ani, sip_call_id, call_session_id, call_transaction_id,
          account, phone_dialed, ids_source, lv_agent_login, connected_at,
          ended_at, end_reason, disposition (JSON), disposition_source,
          transfer, term_code_name, term_code_id, lv_result, fallback_used,
          move_not_ready, aia, contact, term_code, hangup, attempts,
          last_error, wrapup_started_at, finished_at, dialogs (JSON))
    indexes on state and on updated_at

The columns are the fields of :class:`~lvgateway.calls.records.CallRecord`,
in its order. A file of an older version is brought up to date when it is
opened, one step per version (:data:`MIGRATIONS`), in one transaction with
its new version number; a file of a newer version is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import IO, Any, Literal

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from lvgateway.calls.blocking import BlockingRunner
from lvgateway.calls.errors import CallStoreUnavailableError
from lvgateway.calls.records import (
    FINAL_STATES,
    CallRecord,
    CallState,
    Disposition,
    StepState,
)

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CallStore",
    "record_from_row",
    "row_from_record",
]

log = Logger()

SCHEMA_VERSION = 2
FILE_NAME = "calls.sqlite3"
LOCK_NAME = "calls.lock"

_DDL = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    agent TEXT NOT NULL,
    dnis TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    service_id TEXT,
    ani TEXT,
    sip_call_id TEXT,
    call_session_id TEXT,
    call_transaction_id TEXT,
    account TEXT,
    phone_dialed TEXT,
    ids_source TEXT,
    lv_agent_login TEXT,
    connected_at REAL,
    ended_at REAL,
    end_reason TEXT,
    disposition TEXT,
    disposition_source TEXT,
    transfer INTEGER NOT NULL,
    term_code_name TEXT,
    term_code_id TEXT,
    lv_result TEXT,
    fallback_used INTEGER NOT NULL,
    move_not_ready INTEGER,
    aia TEXT NOT NULL,
    contact TEXT NOT NULL,
    term_code TEXT NOT NULL,
    hangup TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    wrapup_started_at REAL,
    finished_at REAL,
    dialogs TEXT
);
CREATE INDEX IF NOT EXISTS calls_by_state ON calls (state);
CREATE INDEX IF NOT EXISTS calls_by_update ON calls (updated_at);
"""

#: What brings a schema of the version before each key to that version.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2: the SIP dialogs of a live call, so a restarted gateway can end its legs with BYE.
    2: ("ALTER TABLE calls ADD COLUMN dialogs TEXT",),
}

#: The columns of ``calls``, in order: the fields of :class:`CallRecord`.
COLUMNS: tuple[str, ...] = tuple(f.name for f in attrs.fields(CallRecord))

_STEP_COLUMNS = frozenset({"aia", "contact", "term_code", "hangup"})
_BOOL_COLUMNS = frozenset({"transfer", "fallback_used", "move_not_ready"})

_UPSERT = (
    f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
    f"ON CONFLICT(call_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "call_id")
)

Synchronous = Literal["FULL", "NORMAL"]


def row_from_record(record: CallRecord) -> tuple[Any, ...]:
    """Return the column values of ``record``, in :data:`COLUMNS` order."""
    values: list[Any] = []
    for name in COLUMNS:
        value = getattr(record, name)
        if isinstance(value, CallState | StepState):
            value = value.value
        elif isinstance(value, Disposition):
            value = json.dumps(value.to_json(), separators=(",", ":"), sort_keys=True)
        elif name == "dialogs":
            value = json.dumps(value, separators=(",", ":"), sort_keys=True) if value else None
        elif isinstance(value, bool):
            value = int(value)
        values.append(value)
    return tuple(values)


def record_from_row(row: Sequence[Any]) -> CallRecord:
    """Rebuild a record from its column values (in :data:`COLUMNS` order)."""
    fields: dict[str, Any] = {}
    for name, value in zip(COLUMNS, row, strict=True):
        if name == "state":
            value = CallState(value)
        elif name in _STEP_COLUMNS:
            value = StepState(value)
        elif name == "disposition":
            value = Disposition.from_stored(json.loads(value)) if value else None
        elif name == "dialogs":
            value = json.loads(value) if value else {}
        elif name in _BOOL_COLUMNS:
            value = None if value is None else bool(value)
        fields[name] = value
    return CallRecord(**fields)


def _has_calls_table(conn: sqlite3.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'calls'")
    return found.fetchone() is not None


class CallStore:
    """The SQLite file of call records, used from the reactor thread through a :class:`BlockingRunner`.

    :param state_dir: the gateway's state directory (``GatewayIdentity.state_dir``).
    :param runner: where the SQLite calls run: a one-thread pool in
        production, inline in unit tests.
    :param synchronous: SQLite's ``synchronous`` in WAL mode: ``FULL`` (a
        commit survives power loss) or ``NORMAL`` (it survives a crash of the
        process, not of the machine).
    """

    def __init__(
        self, state_dir: str, runner: BlockingRunner, synchronous: Synchronous = "FULL"
    ) -> None:
        self.path = os.path.join(state_dir, FILE_NAME)
        self._lock_path = os.path.join(state_dir, LOCK_NAME)
        self._runner = runner
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._pending: dict[str, tuple[Any, ...]] = {}
        self._waiters: list[Deferred[None]] = []
        self._writing = False
        self._idle: list[Deferred[None]] = []
        self.is_open = False
        self._started = False
        #: Commits made, and rows written, since the store opened (for the benchmark).
        self.commits = 0
        self.rows_written = 0

    # -- opening and closing --------------------------------------------------------

    def open(self) -> Deferred[None]:
        """Open (creating if need be) the file and its schema, on the runner's thread.

        :returns: a Deferred that fires once the store is open; it errbacks
            with ``OSError`` when the lock is held by another process, or
            ``sqlite3.Error`` when the file cannot be used.
        """
        self._runner.start()
        self._started = True
        d = self._runner.run(self._open_blocking)

        def opened(found: int) -> None:
            self.is_open = True
            if 0 < found < SCHEMA_VERSION:
                log.info(
                    "call store {path}: schema version {old} brought to {new}",
                    path=self.path,
                    old=found,
                    new=SCHEMA_VERSION,
                )
            log.info("call store {path} open", path=self.path)

        return d.addCallback(opened)

    def _open_blocking(self) -> int:
        """Open the file; return the schema version it had (0 for a new file)."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        lock = open(self._lock_path, "ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            lock.close()
            raise OSError(
                e.errno, f"the call store {self.path} is in use by another process"
            ) from e
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path} has schema version {version}; this gateway knows {SCHEMA_VERSION}"
                )
            if version == 0 and _has_calls_table(conn):
                # Made by a version 1 gateway stopped between its table and its stamp.
                version = 1
            if version == 0:
                conn.executescript(
                    f"BEGIN IMMEDIATE; {_DDL} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
                )
            else:
                self._migrate(conn, version)
        except BaseException:
            conn.close()
            lock.close()
            raise
        self._conn = conn
        self._lock_file = lock
        return int(version)

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        """Bring a file of schema ``version`` up to :data:`SCHEMA_VERSION`, one version per transaction."""
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={target}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> Deferred[None]:
        """Commit what is pending, close the file and release the lock (after an open still running).

        :returns: a Deferred that fires once the file is closed; at once if
            the store was never opened.
        """
        self.is_open = False
        if not self._started:
            return succeed(None)
        self._started = False
        d: Deferred[None] = self.when_written()

        def close(_: object) -> Deferred[None]:
            return self._runner.run(self._close_blocking)

        def stop(result: object) -> object:
            self._runner.stop()
            log.info("call store {path} closed", path=self.path)
            return result

        return d.addCallback(close).addBoth(stop)

    def _close_blocking(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CallStoreUnavailableError("the call store is not open")
        return self._conn

    # -- writing ----------------------------------------------------------------------

    def save(self, record: CallRecord) -> Deferred[None]:
        """Write ``record`` (insert or replace its row).

        :returns: a Deferred that fires once the row is committed, or
            errbacks with the SQLite error, or at once with
            :class:`~lvgateway.calls.errors.CallStoreUnavailableError` when
            the store is not open.
        """
        if not self.is_open:
            return fail(CallStoreUnavailableError("the call store is not open"))
        d: Deferred[None] = Deferred()
        self._pending[record.call_id] = row_from_record(record)
        self._waiters.append(d)
        self._write()
        return d

    def when_written(self) -> Deferred[None]:
        """Return a Deferred that fires once every save asked for so far is committed (or failed)."""
        d: Deferred[None] = Deferred()
        if not self._writing and not self._pending:
            d.callback(None)
        else:
            self._idle.append(d)
        return d

    def _write(self) -> None:
        """Commit pending rows batch after batch until none is left; one batch in flight at a time."""
        if self._writing:
            return
        self._writing = True
        while self._pending:
            rows, waiters = list(self._pending.values()), self._waiters
            self._pending, self._waiters = {}, []
            d = self._runner.run(partial(self._write_blocking, rows))
            d.addBoth(self._written, waiters)
            if not d.called:
                d.addBoth(self._resume)
                return
        self._writing = False
        self._fire_idle()

    def _written(self, result: None | Failure, waiters: list[Deferred[None]]) -> None:
        if isinstance(result, Failure):
            log.failure("call store: a commit of {count} rows failed", result, count=len(waiters))
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    def _resume(self, _: object) -> None:
        self._writing = False
        self._write()

    def _fire_idle(self) -> None:
        idle, self._idle = self._idle, []
        for d in idle:
            d.callback(None)

    def _write_blocking(self, rows: list[tuple[Any, ...]]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_UPSERT, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.commits += 1
        self.rows_written += len(rows)

    # -- reading ----------------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[Any]) -> Deferred[list[CallRecord]]:
        def read() -> list[CallRecord]:
            cursor = self._connection().execute(sql, args)
            return [record_from_row(row) for row in cursor.fetchall()]

        return self._runner.run(read)

    def get(self, call_id: str) -> Deferred[CallRecord | None]:
        """Return the committed record of ``call_id``, or ``None``."""
        d = self._read(f"SELECT {', '.join(COLUMNS)} FROM calls WHERE call_id = ?", (call_id,))
        return d.addCallback(lambda found: found[0] if found else None)

    def query(
        self,
        since: float | None = None,
        states: Sequence[CallState] | None = None,
        limit: int = 100,
    ) -> Deferred[list[CallRecord]]:
        """Return committed records, oldest change first.

        :param since: only records changed at or after this time.
        :param states: only records in these states.
        :param limit: at most this many.
        """
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("updated_at >= ?")
            args.append(since)
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(s.value for s in states)
        sql = f"SELECT {', '.join(COLUMNS)} FROM calls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at, call_id LIMIT ?"
        args.append(limit)
        return self._read(sql, args)

    def unfinished(self) -> Deferred[list[CallRecord]]:
        """Return every record not in a final state (live, in wrap-up, dead), oldest first."""
        finals = [s.value for s in FINAL_STATES]
        return self._read(
            f"SELECT {', '.join(COLUMNS)} FROM calls WHERE state NOT IN (?, ?) "
            "ORDER BY accepted_at, call_id",
            finals,
        )

    def purge(self, finished_before: float) -> Deferred[int]:
        """Delete records finished (``done`` or ``dismissed``) before a time; return how many.

        :param finished_before: the retention cut-off.
        """
        finals = [s.value for s in FINAL_STATES]

        def purge() -> int:
            conn = self._connection()
            cursor = conn.execute(
                "DELETE FROM calls WHERE state IN (?, ?) AND finished_at < ?",
                (*finals, finished_before),
            )
            return int(cursor.rowcount)

        return self._runner.run(purge)

    def run(self, f: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        """Run ``f(connection)`` on the store's thread (for tests and the benchmark)."""
        return self._runner.run(lambda: f(self._connection()))
