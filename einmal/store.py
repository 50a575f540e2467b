"""Database engines: SQLite (WAL, durable commits) by default, PostgreSQL for scale-out.

Errors of the driver are translated at the repository boundary into ``StoreError``.
"""

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["StoreError", "create_engine", "writer"]

_WRITE_LOCKS: "weakref.WeakKeyDictionary[Any, asyncio.Lock]" = weakref.WeakKeyDictionary()


class StoreError(Exception):
    """The store could not be read or written. Nothing may be released."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # NOTE: synchronous=FULL: a committed transfer record survives power loss (no log, no proof).
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000",
                   "foreign_keys=ON"):
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


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 10},
                                     pool_reset_on_return=None)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


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
    lock = _WRITE_LOCKS.get(engine.sync_engine)
    if lock is None:
        lock = _WRITE_LOCKS[engine.sync_engine] = asyncio.Lock()
    async with lock:
        yield
