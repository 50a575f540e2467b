"""Database engines: SQLite (WAL, durable commits) by default, PostgreSQL for scale-out.

Errors of the driver are translated at the repository boundary into ``StoreError``.
"""

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["StoreError", "create_engine"]


class StoreError(Exception):
    """The store could not be read or written. Nothing may be released."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # NOTE: synchronous=FULL: a committed transfer record survives power loss (no log, no proof).
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
