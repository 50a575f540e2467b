"""The SQLite writer's hand-off to its thread (einmal/store.py: SqliteWriter, _OneThread): the
``COMMIT`` runs on a thread of its own, and whatever becomes of the caller, the write lock is
held until the commit is over, ``then`` runs after it, the connection is never left in a
transaction, and ``aclose`` ends the thread. The broker's and the protocol's tests cover the
writer's statements (tests/integration/test_broker_store.py, tests/unit/connectors)."""

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import pytest

from einmal.store import SqliteWriter, _OneThread, create_engine, dispose, sqlite_writer

CREATE = "CREATE TABLE t (n INTEGER)"


def _rows(path: Path) -> list[int]:
    """What another connection reads: only what is committed."""
    with closing(sqlite3.connect(path)) as db:
        return [n for (n,) in db.execute("SELECT n FROM t ORDER BY n")]


def _insert(n: int) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (n,)).rowcount


async def _until(event: threading.Event) -> None:
    for _ in range(1000):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer thread never got there")


@pytest.fixture(name="path")
def fx_path(tmp_path: Path) -> Path:
    return tmp_path / "w.db"


@pytest.fixture(name="writer")
async def fx_writer(path: Path) -> AsyncIterator[SqliteWriter]:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    found = sqlite_writer(engine)
    assert found is not None
    await found.run(lambda conn: conn.execute(CREATE))
    yield found
    await dispose(engine)


@pytest.fixture(name="gate")
def fx_gate(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The commit waits on the thread for ``gate`` (returned first); ``in_commit`` is set when
    it has got there."""
    gate, in_commit = threading.Event(), threading.Event()
    commit = SqliteWriter._commit

    def held_commit(conn: sqlite3.Connection) -> None:
        in_commit.set()
        gate.wait(10)
        commit(conn)

    monkeypatch.setattr(SqliteWriter, "_commit", staticmethod(held_commit))
    return gate, in_commit


async def test_a_caller_cancelled_mid_commit_keeps_the_lock_until_its_row_is_durable(
        writer: SqliteWriter, path: Path, gate: tuple[threading.Event, threading.Event]) -> None:
    release, in_commit = gate
    done: list[int] = []
    first = asyncio.ensure_future(writer.run(_insert(1), then=done.append))
    await _until(in_commit)
    assert threading.current_thread().name != "einmal-sqlite"
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.ensure_future(writer.run(_insert(2)))
    await asyncio.sleep(0.05)
    # the first commit is not over: the next transaction waits, nothing is visible yet
    assert not second.done()
    assert done == []
    assert _rows(path) == []
    release.set()
    assert await asyncio.wait_for(second, 10) == 1
    assert done == [1]  # ``then`` ran after the commit, though its caller was gone
    assert _rows(path) == [1, 2]


async def test_run_returns_only_once_the_commit_is_durable(
        writer: SqliteWriter, path: Path, gate: tuple[threading.Event, threading.Event]) -> None:
    release, in_commit = gate
    pending = asyncio.ensure_future(writer.run(_insert(1)))
    await _until(in_commit)
    await asyncio.sleep(0.05)
    assert not pending.done()
    release.set()
    assert await asyncio.wait_for(pending, 10) == 1
    assert _rows(path) == [1]


async def test_a_caller_cancelled_while_begin_waits_for_another_process_leaves_no_transaction(
        writer: SqliteWriter, path: Path) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # e.g. an `einmal` command writing meanwhile
        first = asyncio.ensure_future(writer.run(_insert(1)))
        await asyncio.sleep(0.05)  # BEGIN waits on the writer thread
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        other.execute("COMMIT")
        # the thread's BEGIN goes through after the caller left: rolled back, and the next
        # transaction waits for that instead of meeting an open transaction
        assert await asyncio.wait_for(writer.run(_insert(2)), 10) == 1
        assert _rows(path) == [2]
        other.execute("PRAGMA busy_timeout=0")
        other.execute("BEGIN IMMEDIATE")  # the writer holds no write lock on the file
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_aclose_waits_for_the_commit_in_flight_then_ends_the_thread(
        path: Path, gate: tuple[threading.Event, threading.Event]) -> None:
    release, in_commit = gate
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    writer = sqlite_writer(engine)
    assert writer is not None
    before = set(threading.enumerate())
    release.set()
    await writer.run(lambda conn: conn.execute(CREATE))
    mine = [t for t in set(threading.enumerate()) - before if t.name.startswith("einmal-sqlite")]
    assert len(mine) == 1
    release.clear()
    in_commit.clear()
    pending = asyncio.ensure_future(writer.run(_insert(1)))
    await _until(in_commit)
    shutting = asyncio.ensure_future(dispose(engine))
    await asyncio.sleep(0.05)
    assert not shutting.done()
    release.set()
    assert await asyncio.wait_for(pending, 10) == 1
    await asyncio.wait_for(shutting, 10)
    assert not mine[0].is_alive()
    assert _rows(path) == [1]


def test_a_loop_closed_while_a_job_runs_does_not_end_the_thread() -> None:
    thread = _OneThread("einmal-test")
    gate = threading.Event()
    told: list[BaseException | None] = []
    loop = asyncio.new_event_loop()

    async def give() -> None:
        thread.call(told.append, gate.wait, 10)

    loop.run_until_complete(give())
    loop.close()
    gate.set()  # the job ends; its loop is gone (call_soon_threadsafe: RuntimeError)

    async def next_job() -> list[BaseException | None]:
        future = asyncio.get_running_loop().create_future()
        thread.call(future.set_result, lambda: None)
        return [await asyncio.wait_for(future, 10)]

    assert asyncio.run(next_job()) == [None]  # the thread went on to the next job
    assert told == []
    thread.stop()
