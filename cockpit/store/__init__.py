"""The cockpit's store: one interface (``CockpitStore``), two backends, chosen once here."""

from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit.store.alchemy import SqlAlchemyCockpitStore
from cockpit.store.base import (
    CitizenKeys,
    CockpitStore,
    EntryStore,
    FeedRow,
    LogLine,
    LogStore,
    NewEntry,
    Sign,
)
from cockpit.store.sqlite import SqliteCockpitStore
from einmal.store import sqlite_writer

__all__ = ["CitizenKeys", "CockpitStore", "EntryStore", "FeedRow", "LogLine", "LogStore",
           "NewEntry", "Sign", "SqlAlchemyCockpitStore", "SqliteCockpitStore", "open_store"]


def open_store(engine: AsyncEngine, *, read_engine: AsyncEngine | None = None) -> CockpitStore:
    """The backend for ``engine``, chosen once at start-up: a SQLite file gets the writer's
    fast path (``SqliteCockpitStore``), anything else SQLAlchemy (PostgreSQL; SQLite in
    memory)."""
    if sqlite_writer(engine) is not None:
        return SqliteCockpitStore(engine, read_engine=read_engine)
    return SqlAlchemyCockpitStore(engine, read_engine=read_engine)
