"""The SQLite call store: schema, round trips, group commit, queries, retention, the lock, and the real thread."""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from lvgateway.calls.blocking import InlineRunner, ThreadPoolRunner
from lvgateway.calls.records import CallRecord, CallState, Disposition, StepState
from lvgateway.calls.store import (
    _DDL,
    COLUMNS,
    SCHEMA_VERSION,
    CallStore,
    record_from_row,
    row_from_record,
)
from lvgateway.livevox.testing import failure_of, result_of

T = TypeVar("T")


def record(call_id: str = "c1", **changes: Any) -> CallRecord:
    """A record with every kind of field set."""
    base = CallRecord(
        call_id=call_id,
        state=CallState.WRAPUP,
        agent="AIVA1",
        dnis="+18990000001",
        accepted_at=100.0,
        updated_at=110.0,
        service_id="1234567",
        ani="+19195550100",
        call_session_id="U1@10.0.0.1",
        call_transaction_id="147516594361",
        ended_at=105.0,
        end_reason="caller_hangup",
        disposition=Disposition(term_code="done", other={2: "x"}, contact={"city": "Cary"}),
        transfer=True,
        fallback_used=False,
        move_not_ready=None,
        aia=StepState.DONE,
        term_code=StepState.SENT,
        hangup=StepState.PENDING,
    )
    return attrs.evolve(base, **changes)


class HeldRunner:
    """Runs nothing until told: for watching the store group its commits."""

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def run(self, f: Callable[[], T]) -> Deferred[T]:
        """Queue ``f``."""
        d: Deferred[T] = Deferred()
        self.queue.append((f, d))
        return d

    def step(self) -> None:
        """Run the oldest queued function."""
        f, d = self.queue.pop(0)
        try:
            d.callback(f())
        except Exception as e:
            d.errback(e)


@pytest.fixture
def store(tmp_path: Path) -> CallStore:
    """An open store on an inline runner."""
    s = CallStore(str(tmp_path), InlineRunner())
    result_of(s.open())
    return s


def test_columns_are_the_record_fields(store: CallStore) -> None:
    """The table has exactly one column per CallRecord field, in order."""
    info = result_of(store.run(lambda c: c.execute("PRAGMA table_info(calls)").fetchall()))
    assert tuple(row[1] for row in info) == COLUMNS
    assert COLUMNS == tuple(f.name for f in attrs.fields(CallRecord))


def test_wal_and_schema_version(store: CallStore) -> None:
    """The store runs in WAL mode with synchronous FULL and stamps its schema version."""
    mode = result_of(store.run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]))
    sync = result_of(store.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]))
    version = result_of(store.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0]))
    assert (mode, sync, version) == ("wal", 2, SCHEMA_VERSION)


def test_round_trip(store: CallStore) -> None:
    """A record saved reads back equal, disposition and step states included."""
    r = record()
    assert record_from_row(row_from_record(r)) == r
    result_of(store.save(r))
    assert result_of(store.get("c1")) == r
    assert result_of(store.get("nope")) is None


#: A leg's dialog as the SIP part writes it: opaque JSON to the store.
DIALOG = {
    "call_id": "5e1c1a6f@10.0.0.9",
    "local_tag": "a1b2",
    "remote_tag": "telstage-1",
    "local_uri": "<sip:+18990000001@10.0.0.5:5070>",
    "remote_uri": "<sip:+19192109237@10.0.0.9>",
    "remote_target": "sip:lv@10.0.0.9:5060",
    "route_set": ["<sip:10.0.0.1;lr>"],
    "local_cseq": 4117826,
    "next_hop_host": "10.0.0.1",
    "next_hop_port": 5060,
    "next_hop_transport": "udp",
}


def test_dialogs_round_trip(store: CallStore) -> None:
    """A live record's dialogs read back equal; a record without any keeps none (NULL in its column)."""
    live = record("live", state=CallState.CONNECTED, dialogs={"livevox": DIALOG, "vendor": DIALOG})
    result_of(store.save(live))
    result_of(store.save(record("none")))
    assert result_of(store.get("live")) == live
    assert result_of(store.get("none")).dialogs == {}
    raw = result_of(
        store.run(
            lambda c: c.execute("SELECT call_id, dialogs FROM calls ORDER BY call_id").fetchall()
        )
    )
    assert raw[0][0] == "live" and json.loads(raw[0][1])["vendor"]["local_cseq"] == 4117826
    assert raw[1] == ("none", None)
    assert record("x", dialogs={"livevox": DIALOG}).to_json()["dialogs"] == ["livevox"]


def version_1_file(tmp_path: Path, call_id: str = "old", stamp: int = 1) -> None:
    """Write a calls file as a schema version 1 gateway left it: no dialogs column, one live call."""
    ddl = _DDL.replace(",\n    dialogs TEXT", "")
    assert "dialogs" not in ddl
    old_columns = [c for c in COLUMNS if c != "dialogs"]
    row = row_from_record(record(call_id, state=CallState.CONNECTED))[: len(old_columns)]
    with sqlite3.connect(tmp_path / "calls.sqlite3") as db:
        db.executescript(ddl)
        db.execute(
            f"INSERT INTO calls ({', '.join(old_columns)}) VALUES ({', '.join('?' for _ in row)})",
            row,
        )
        db.execute(f"PRAGMA user_version={stamp}")
    db.close()


@pytest.mark.parametrize("stamp", [1, 0], ids=["version-1", "version-1-unstamped"])
def test_a_version_1_file_gains_the_dialogs_column(tmp_path: Path, stamp: int) -> None:
    """Opening a file of the last schema adds the column and the version, keeps its rows, and saves dialogs."""
    version_1_file(tmp_path, stamp=stamp)
    s = CallStore(str(tmp_path), InlineRunner())
    result_of(s.open())
    version = result_of(s.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0]))
    info = result_of(s.run(lambda c: c.execute("PRAGMA table_info(calls)").fetchall()))
    assert version == SCHEMA_VERSION
    assert tuple(row[1] for row in info) == COLUMNS
    old = result_of(s.get("old"))
    assert old == record("old", state=CallState.CONNECTED)
    assert old.dialogs == {}
    result_of(s.save(attrs.evolve(old, dialogs={"livevox": DIALOG})))
    result_of(s.close())
    again = CallStore(str(tmp_path), InlineRunner())
    result_of(again.open())
    assert result_of(again.get("old")).dialogs == {"livevox": DIALOG}
    result_of(again.close())


def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file stamped with a version this gateway does not know is not opened, and says why."""
    with sqlite3.connect(tmp_path / "calls.sqlite3") as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    error = failure_of(CallStore(str(tmp_path), InlineRunner()).open())
    assert isinstance(error, sqlite3.DatabaseError)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(error)


def test_save_replaces_the_row(store: CallStore) -> None:
    """Saving a newer version of a record replaces its row."""
    result_of(store.save(record()))
    result_of(store.save(record(state=CallState.DONE, term_code=StepState.DONE)))
    got = result_of(store.get("c1"))
    assert got.state is CallState.DONE and got.term_code is StepState.DONE
    assert (
        result_of(store.run(lambda c: c.execute("SELECT count(*) FROM calls").fetchone()[0])) == 1
    )


def test_saves_made_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    """Rows saved while a commit runs go together into the next, newest version only."""
    runner = HeldRunner()
    s = CallStore(str(tmp_path), runner)
    opened = s.open()
    runner.step()
    result_of(opened)
    first = s.save(record("a"))
    later = [
        s.save(record("b")),
        s.save(record("c")),
        s.save(record("b", state=CallState.DONE)),
    ]
    assert len(runner.queue) == 1
    runner.step()
    assert first.called and not any(d.called for d in later)
    assert len(runner.queue) == 1
    runner.step()
    assert all(d.called for d in later)
    assert (s.commits, s.rows_written) == (2, 3)
    got = s.get("b")
    runner.step()
    assert result_of(got).state is CallState.DONE


def test_a_failed_commit_fails_its_saves(tmp_path: Path) -> None:
    """When SQLite refuses a commit, every save in it errbacks; later saves still work."""
    s = CallStore(str(tmp_path), InlineRunner())
    result_of(s.open())
    trigger = (
        "CREATE TRIGGER no BEFORE INSERT ON calls"
        " WHEN NEW.call_id = 'bad' BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    result_of(s.run(lambda c: c.execute(trigger)))
    assert isinstance(failure_of(s.save(record("bad"))), sqlite3.IntegrityError)
    result_of(s.save(record("good")))
    assert result_of(s.get("good")) is not None


def test_query_by_since_and_state(store: CallStore) -> None:
    """Records are filtered by last change and state, oldest change first, up to a limit."""
    for n, (state, updated) in enumerate(
        [(CallState.DONE, 10.0), (CallState.DEAD, 20.0), (CallState.DONE, 30.0)]
    ):
        result_of(store.save(record(f"c{n}", state=state, updated_at=updated)))
    assert [r.call_id for r in result_of(store.query())] == ["c0", "c1", "c2"]
    assert [r.call_id for r in result_of(store.query(since=20.0))] == ["c1", "c2"]
    assert [r.call_id for r in result_of(store.query(states=[CallState.DONE]))] == ["c0", "c2"]
    assert [r.call_id for r in result_of(store.query(limit=1))] == ["c0"]
    assert [r.call_id for r in result_of(store.unfinished())] == ["c1"]


def test_purge_deletes_only_finished_records_past_retention(store: CallStore) -> None:
    """Retention deletes done and dismissed records finished before the cut-off; dead letters stay."""
    result_of(store.save(record("old", state=CallState.DONE, finished_at=10.0)))
    result_of(store.save(record("gone", state=CallState.DISMISSED, finished_at=11.0)))
    result_of(store.save(record("new", state=CallState.DONE, finished_at=100.0)))
    result_of(store.save(record("dead", state=CallState.DEAD, finished_at=10.0)))
    assert result_of(store.purge(50.0)) == 2
    assert [r.call_id for r in result_of(store.query())] == ["dead", "new"]


def test_a_second_store_on_the_same_directory_is_refused(store: CallStore, tmp_path: Path) -> None:
    """Two gateways cannot share one state directory: the second open fails, naming the file."""
    error = failure_of(CallStore(str(tmp_path), InlineRunner()).open())
    assert isinstance(error, OSError) and "in use by another process" in str(error)
    result_of(store.close())
    other = CallStore(str(tmp_path), InlineRunner())
    result_of(other.open())
    result_of(other.close())


def test_records_survive_a_reopen(tmp_path: Path) -> None:
    """What was committed is there after the store is closed and opened again."""
    s = CallStore(str(tmp_path), InlineRunner())
    result_of(s.open())
    result_of(s.save(record()))
    result_of(s.close())
    assert not s.is_open
    again = CallStore(str(tmp_path), InlineRunner())
    result_of(again.open())
    assert result_of(again.get("c1")) == record()


def test_a_closed_store_refuses_saves(tmp_path: Path) -> None:
    """A save after close errbacks instead of writing."""
    s = CallStore(str(tmp_path), InlineRunner())
    result_of(s.open())
    result_of(s.close())
    assert type(failure_of(s.save(record()))).__name__ == "CallStoreUnavailableError"


def test_inline_runner_returns_fired_deferreds() -> None:
    """The inline runner runs at once, result or exception."""
    runner = InlineRunner()
    assert result_of(runner.run(lambda: 3)) == 3
    assert isinstance(failure_of(runner.run(lambda: 1 / 0)), ZeroDivisionError)
    assert runner.calls == 2


@pytest_twisted.ensureDeferred
async def test_the_store_on_its_own_thread(tmp_path: Path) -> None:
    """With the one-thread pool, SQLite runs off the reactor thread and results come back on it."""
    import threading

    main = threading.get_ident()
    s = CallStore(str(tmp_path), ThreadPoolRunner(reactor))  # type: ignore[arg-type]
    await s.open()
    where = await s.run(lambda c: threading.get_ident())
    assert where != main
    saves = [s.save(record(f"c{n}")) for n in range(50)]
    for d in saves:
        await d
    assert len(await s.query(limit=100)) == 50
    assert s.commits < 50
    await s.close()
