"""The cockpit store backends for tests: each test picks one by constructing it.

``sqlite`` is the SQLite writer's fast path on a file; ``sqlalchemy`` the SQLAlchemy store on a
SQLite file; ``postgresql`` the SQLAlchemy store on EINMAL_TEST_DATABASE_URL (only when set).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit.store import CockpitStore, SqlAlchemyCockpitStore, SqliteCockpitStore
from einmal.store import create_engine, dispose
from tests.conftest import TEST_DATABASE_URL, reset_database

__all__ = ["BACKENDS", "open_backend"]

BACKENDS = ["sqlite", "sqlalchemy", *(["postgresql"] if TEST_DATABASE_URL else [])]


@asynccontextmanager
async def open_backend(backend: str, folder: Path, *, migrate: bool = True,
                       ) -> AsyncIterator[tuple[CockpitStore, AsyncEngine]]:
    """A fresh, empty (migrated) store of the backend and its engine."""
    if backend == "postgresql":
        assert TEST_DATABASE_URL is not None
        reset_database(TEST_DATABASE_URL)
        engine = create_engine(TEST_DATABASE_URL.replace("postgresql://",
                                                         "postgresql+asyncpg://", 1))
    else:
        engine = create_engine(f"sqlite+aiosqlite:///{folder / f'cockpit-{backend}.db'}")
    store: CockpitStore = (SqliteCockpitStore(engine) if backend == "sqlite"
                           else SqlAlchemyCockpitStore(engine))
    try:
        if migrate:
            await store.create_schema()
        yield store, engine
    finally:
        await dispose(engine)
