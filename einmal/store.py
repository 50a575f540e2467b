"""Database engines: SQLite (WAL, durable commits) by default, PostgreSQL for scale-out; and the
machinery every component's store is built from.

* ``create_engine`` / ``dispose``: the engines (SQLite pragmas, PostgreSQL pool: kept
  connections, closed ones replaced, idle ones pinged); a SQLite file and its folder are
  owner-only (0600, 0700), and so are its -wal and -shm files.
* ``transaction``: one SQLAlchemy transaction, writes serialised on SQLite (``writer``).
* ``SqliteWriter``: the hot write transactions on SQLite in plain SQL (decision 0024).
* ``GroupCommit``: concurrent writes committed together, one transaction for a batch.

Errors (the driver's error always chained, ``raise ... from exc``):

* StoreError          the store could not be read or written: nothing may be released
  x DuplicateKeyError a unique key already exists (a replayed id, a concurrent claim)
"""

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import event, make_url
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import IntegrityError, InvalidatePoolError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from einmal.keys import private_dir

__all__ = ["PING_IDLE_S", "POOL_SIZE", "DuplicateKeyError", "GroupCommit", "SqliteWriter",
           "StoreError", "create_engine", "dispose", "insert_rows", "private_sqlite_file",
           "sqlite_time", "sqlite_writer", "store_error", "transaction", "writer"]

_WRITE_LOCKS: "weakref.WeakKeyDictionary[Any, asyncio.Lock]" = weakref.WeakKeyDictionary()
_WRITERS: "weakref.WeakKeyDictionary[Any, SqliteWriter]" = weakref.WeakKeyDictionary()
# NOTE: secure_delete: what a statement deletes or overwrites (a delivered record, a shredded
# entry, a dropped table's pages) is zeroed in the file, not left in free space (decision 0031).
_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000", "foreign_keys=ON",
            "secure_delete=ON")
T = TypeVar("T")
R = TypeVar("R")


class StoreError(Exception):
    """The store could not be read or written. Nothing may be released."""


class DuplicateKeyError(StoreError):
    """A row with this unique key exists already. A store that expects it (a replay cache)
    catches it; anywhere else it is a store failure like any other."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # NOTE: synchronous=FULL: a committed transfer record survives power loss (no log, no proof).
    for pragma in _PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
    """Reset on return to the pool: roll back only if a transaction is still open.

    SQLAlchemy's default rolls back unconditionally, which on aiosqlite is one more thread
    hand-over (worker thread, loop wake-up) per transaction - one in five on the proof path's
    commit, where ``engine.begin()`` has already committed. A connection returned with an open
    transaction (an error, a forgotten commit) is still rolled back."""
    inner = getattr(dbapi_connection, "driver_connection", None)
    if inner is None or getattr(inner, "in_transaction", True):
        dbapi_connection.rollback()


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None in memory (or a ``file:`` URI)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _owner_only(path: Path) -> None:
    """A file of ours loses any group and other permissions."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(found.st_mode)
    if mode & 0o077 and found.st_uid == os.getuid():
        path.chmod(mode & 0o700)


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file ``path`` empty and owner-only (0600) before SQLite opens it, in
    an owner-only folder (einmal.keys.private_dir): SQLite creates the -wal and -shm files with
    the database file's permissions. An existing file (and its -wal, -shm) of ours loses any
    group and other permissions (a store from an older version); an existing folder is left as
    it is (it may be anyone's: the data dir is made private where the server starts)."""
    private_dir(path.parent, tighten=False)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        for found in (path, path.with_name(f"{path.name}-wal"),
                      path.with_name(f"{path.name}-shm")):
            _owner_only(found)


#: PostgreSQL: connections one process keeps per engine (all of them: none is closed on
#: return), at most. See create_engine.
POOL_SIZE = 20
#: PostgreSQL: a connection back in the pool for longer than this is pinged before it is handed
#: out again; one returned moments ago is not (HikariCP's ``aliveBypassWindowMs``, 500 ms).
PING_IDLE_S = 1.0


def _mark_returned(_dbapi_connection: Any, record: Any) -> None:
    record.info["returned"] = time.monotonic()


def _check_on_checkout(dialect: Dialect) -> Callable[[Any, Any, Any], None]:
    """A pool ``checkout`` listener: a connection the driver knows to be closed (the database
    restarted or ended it: the server's goodbye and EOF have arrived) is not handed out, at no
    cost; one that sat idle for ``PING_IDLE_S`` is pinged (a connection dropped silently). Either
    way, if it is dead every pooled connection from before is replaced, as ``pool_pre_ping``
    does."""
    dbapi_error = dialect.loaded_dbapi.Error

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        is_closed = getattr(getattr(dbapi_connection, "driver_connection", None),
                            "is_closed", None)  # asyncpg's Connection.is_closed()
        if is_closed is not None and is_closed():
            raise InvalidatePoolError  # the pool reconnects and hands out a fresh connection
        returned = record.info.get("returned")  # None: fresh from connect
        if returned is None or time.monotonic() - returned < PING_IDLE_S:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dbapi_error as exc:
            if not dialect.is_disconnect(exc, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            raise InvalidatePoolError

    return checkout


def create_engine(url: str) -> AsyncEngine:
    """The engine of one component's store.

    PostgreSQL (measured: ``python -m bench.pool_bench``, docs/benchmarks.md): the pool keeps
    up to ``POOL_SIZE`` connections and closes none on return (an overflow connection closed
    and reopened under load cost 1.7 ms of CPU per connect here, plus a backend process on the
    server); LIFO, so a quiet process reuses the same few. No ``pool_pre_ping`` (a round trip on
    every checkout: +100 us of CPU here and +30 us in the backend); instead
    (``_check_on_checkout``) a connection the driver knows to be closed - after a database
    restart, once the client has read the server's goodbye - is replaced without a round trip,
    and one idle for ``PING_IDLE_S`` is pinged; one in use moments ago is not. A statement that
    meets a connection dying under it fails (a ``StoreError``: 503, nothing released), as with
    pre-ping, and SQLAlchemy then replaces every pooled connection from before (a disconnect
    invalidates the pool).
    With ``einmal serve --workers N`` each worker has its own pools: up to N x ``POOL_SIZE``
    connections per component (size ``max_connections`` or a pooler for it).
    """
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if path is not None:
            # NOTE: the stores hold consents and (sealed) records: nobody else may read them
            private_sqlite_file(path)
        engine = create_async_engine(url, connect_args={"timeout": 10},
                                     pool_reset_on_return=None)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
        return engine
    engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=0, pool_use_lifo=True)
    event.listen(engine.sync_engine.pool, "checkin", _mark_returned)
    event.listen(engine.sync_engine.pool, "checkout", _check_on_checkout(engine.dialect))
    return engine


@contextlib.asynccontextmanager
async def writer(engine: AsyncEngine) -> AsyncIterator[None]:
    """Serialise write transactions on SQLite within the process.

    SQLite has one writer at a time; without this, concurrent writers meet in SQLite's busy
    handler, which sleeps in steps of up to 100 ms (the p99 stalls seen in bench/). PostgreSQL
    needs no such lock.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    async with _write_lock(engine):
        yield


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine, *, write: bool = True,
                      ) -> AsyncIterator[AsyncConnection]:
    """One transaction on ``engine``, committed when the block ends without an error.

    ``write``: hold the process's write lock on SQLite (``writer``) for the transaction. The
    driver's errors become ``StoreError`` (a unique-key violation: ``DuplicateKeyError``);
    any other exception rolls back and propagates unchanged."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            if write:
                await stack.enter_async_context(writer(engine))
            yield await stack.enter_async_context(engine.begin())
    except IntegrityError as exc:
        msg = f"duplicate key: {type(exc.orig).__name__}"
        raise DuplicateKeyError(msg) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise store_error(exc) from exc


def _write_lock(engine: AsyncEngine) -> asyncio.Lock:
    lock = _WRITE_LOCKS.get(engine.sync_engine)
    if lock is None:
        lock = _WRITE_LOCKS[engine.sync_engine] = asyncio.Lock()
    return lock


def sqlite_time(value: datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores it (UTC, microseconds, no zone), so
    rows written by ``SqliteWriter`` read back like any other (``as_utc`` on the way out).
    A naive value is taken as UTC already (as SQLAlchemy does)."""
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


#: Parameters per statement: SQLite before 3.32 allows at most 999.
_MAX_PARAMS = 999


def insert_rows(conn: sqlite3.Connection, head: str, rows: list[tuple[Any, ...]],
                tail: str = "") -> None:
    """``INSERT`` many rows with one statement per chunk: ``head`` up to ``VALUES``, then
    ``(?, ...), (?, ...)``, then ``tail`` (e.g. ``ON CONFLICT DO NOTHING``).

    ``executemany`` steps SQLite once per row, and the sqlite3 module gives the GIL back around
    every step, and whichever thread wants it back from a busy event loop pays a wait and a
    context switch per row (decision 0024). One statement per chunk is one step."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, _MAX_PARAMS // width)
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        conn.execute(f"{head} VALUES {', '.join([one] * len(chunk))} {tail}",
                     [value for row in chunk for value in row])


#: What a job on a ``_OneThread`` reports back to the event loop: None, or what ``fn`` raised.
_Done = Callable[[BaseException | None], object]


class _OneThread:
    """Jobs run one after another, in the order given, on one daemon thread of their own
    (started with the first job); each job's outcome goes back to its event loop in one
    ``call_soon_threadsafe``.

    A job is a tuple in a ``queue.SimpleQueue`` (C): no work item, no ``concurrent.futures``
    future chained to an asyncio one, no idle-thread semaphore - which is what
    ``run_in_executor`` on a ``ThreadPoolExecutor`` costs per job (``submit`` alone was 8 % of
    the register simulators' CPU under load). With ``SqliteWriter.run`` also done without
    ``asyncio.shield`` and a done-callback: ~30 CPU-us less per one-row transaction, 9-13 %
    less per protocol record one at a time, ~5 % at 16 together. Jobs given to the thread are
    never cancelled: ``done`` runs whatever became of the caller. A loop closed meanwhile gets
    nothing (and the thread goes on).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def call(self, done: _Done, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the thread, then ``done(error)`` on the running event loop
        (``error`` None: ``fn`` returned; its return value is dropped)."""
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._start()
        self._jobs.put((loop, done, fn, args))

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._main, name=self._name, daemon=True)
                thread.start()
                self._thread = thread

    def _main(self) -> None:
        get = self._jobs.get
        while (job := get()) is not None:
            _one_job(*job)
            del job  # nothing of the last job stays alive while the thread waits

    def stop(self) -> None:
        """End the thread once the jobs given before are done (joins it); a later ``call``
        starts a new one."""
        with self._starting:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()


def _one_job(loop: asyncio.AbstractEventLoop, done: _Done, fn: Callable[..., object],
             args: tuple[Any, ...]) -> None:  # on a _OneThread
    error: BaseException | None = None
    try:
        fn(*args)
    except BaseException as exc:  # handed to the loop: the thread goes on
        error = exc
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(done, error)


def _settle(future: "asyncio.Future[None]", error: BaseException | None) -> None:
    if future.cancelled():  # its caller is gone
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class SqliteWriter:
    """The hot write transactions on SQLite, in plain SQL on a ``sqlite3`` connection of their
    own (same pragmas, so commits stay durable: ``synchronous=FULL``), with the durable part on
    a thread of its own (``_OneThread``).

    Through SQLAlchemy's async adapter a write transaction costs a thread hand-over per
    statement (begin, cursor, execute, close, commit) and SQLAlchemy's per-row parameter
    processing (docs/benchmarks.md, decision 0024). Here ``run`` executes the transaction's
    statements directly on the event loop - plain tuples, no I/O wait: in WAL mode they only
    touch the page cache - and hands the ``COMMIT`` (WAL write and fsync, during which the
    sqlite3 module releases the GIL) to the writer thread: one hand-over per transaction, and
    no thread waiting for the GIL between statements. The caller writes plain SQL against the
    same tables; datetimes go in as ``sqlite_time``. Write transactions of the process stay
    serialised: ``run`` holds the same per-engine lock as ``writer`` until its commit is over,
    even if the caller is cancelled meanwhile (cancelled while its ``BEGIN`` waits on the thread
    for another process: until that is over and rolled back). PostgreSQL has no such writer:
    the repositories keep their SQLAlchemy statements there.
    """

    def __init__(self, engine: AsyncEngine, path: str) -> None:
        self._engine = engine
        self._path = path
        self._thread = _OneThread("einmal-sqlite")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=10, isolation_level=None,
                                   check_same_thread=False)
            for pragma in _PRAGMAS:
                conn.execute(f"PRAGMA {pragma}")
            conn.execute("PRAGMA busy_timeout=0")  # never wait on the event loop (see run)
            self._conn = conn
        return self._conn

    def _off_loop(self, fn: Callable[..., object], *args: Any) -> "asyncio.Future[None]":
        """``fn(*args)`` on the writer thread; the future is done when it is."""
        future = asyncio.get_running_loop().create_future()
        self._thread.call(functools.partial(_settle, future), fn, *args)
        return future

    @staticmethod
    def _begin_waiting(conn: sqlite3.Connection) -> None:  # on the writer thread
        conn.execute("PRAGMA busy_timeout=10000")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:  # on the writer thread
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    async def run(self, work: Callable[[sqlite3.Connection], T],
                  then: Callable[[T], None] | None = None) -> T:
        """Run ``work(connection)`` in one transaction; committed (durably) when this returns.
        ``then(result)`` runs on the event loop after the commit, still holding the write lock
        (e.g. to cache what the transaction created before anyone can delete it). A driver
        error becomes ``StoreError``; any other exception rolls back and propagates."""
        lock = _write_lock(self._engine)
        await lock.acquire()
        waiting = False
        try:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                # another process writes (e.g. an `einmal` command): wait for it off the loop
                waiting = True
                await self._off_loop(self._begin_waiting, conn)
                waiting = False
            commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def committed(error: BaseException | None) -> None:
                # on the loop when the commit is over, whatever became of the caller: only
                # then may the next transaction start on this connection
                try:
                    if error is None and then is not None:
                        then(result)
                finally:
                    lock.release()
                    _settle(commit, error)

            try:
                result = work(conn)
                self._thread.call(committed, self._commit, conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            if waiting:  # cancelled while BEGIN waits on the thread: once over, roll back
                self._thread.call(lambda _: lock.release(), self._rollback, conn)
            else:
                lock.release()
            if isinstance(exc, sqlite3.Error | OSError):
                raise store_error(exc) from exc
            raise
        try:
            await commit  # cancelled with the caller: the commit goes on, then ``committed``
        except (sqlite3.Error, OSError) as exc:
            raise store_error(exc) from exc
        return result

    @staticmethod
    def _commit(conn: sqlite3.Connection) -> None:  # on the writer thread
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _close(self) -> None:  # on the writer thread
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        """Close the connection (on the writer thread, after the last commit) and end the
        thread."""
        async with writer(self._engine):  # after the last commit
            if self._conn is not None:
                await self._off_loop(self._close)
        self._thread.stop()


def store_error(exc: BaseException) -> StoreError:
    """The ``StoreError`` for a driver's error (chain it: ``raise store_error(exc) from exc``):
    a unique-key violation is a ``DuplicateKeyError``."""
    if isinstance(exc, sqlite3.IntegrityError):
        return DuplicateKeyError(f"duplicate key: {type(exc).__name__}")
    if isinstance(exc, OSError):
        return StoreError(f"store unreachable: {type(exc).__name__}")
    return StoreError(f"store failed: {type(exc).__name__}")


class GroupCommit(Generic[T, R]):
    """Concurrent writes committed together: every item waiting when a transaction starts goes
    into it (up to ``max_batch``) - one transaction and one fsync for all of them instead of one
    each. Made for SQLite, which has one writer at a time (the durable commit was the proof
    path's bottleneck: docs/benchmarks.md, decision 0022); on PostgreSQL it saves each
    transaction's round trips (decision 0042) - there ``commit`` must take its row locks in one
    order, as batches of several processes meet.

    ``commit(items)`` writes one batch in one transaction and returns one result per item, in
    order; if it raises, every item of that batch gets the exception. No item waits for a
    timer: the first one starts a committer task, which takes what has queued meanwhile."""

    def __init__(self, commit: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *,
                 max_batch: int = 256, name: str = "einmal-commit") -> None:
        self._commit = commit
        self._max = max_batch
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._committer: asyncio.Task[None] | None = None

    def submit(self, item: T) -> "asyncio.Future[R]":
        """Queue ``item``: the future's result is its commit's result, set once durable.
        (A future, not a coroutine: nothing more is allocated per item.)"""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._run(), name=self._name)
        return future

    async def _run(self) -> None:
        while self._queue:  # no await between this check and returning: no lost waiter
            batch, self._queue = self._queue[:self._max], self._queue[self._max:]
            try:
                results = await self._commit([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # its caller may have been cancelled meanwhile
                    future.set_result(result)

    async def aclose(self) -> None:
        """Let queued commits finish (graceful shutdown)."""
        if self._committer is not None and not self._committer.done():
            await self._committer


def sqlite_writer(engine: AsyncEngine) -> SqliteWriter | None:
    """The engine's ``SqliteWriter`` (one per engine), or None: not SQLite, or in memory."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    found = _WRITERS.get(engine.sync_engine)
    if found is None:
        found = _WRITERS[engine.sync_engine] = SqliteWriter(engine, path)
    return found


async def dispose(engine: AsyncEngine) -> None:
    """Close the engine's ``SqliteWriter`` (if it has one) and dispose its pool."""
    found = _WRITERS.pop(engine.sync_engine, None)
    if found is not None:
        await found.aclose()
    await engine.dispose()
