"""The broker's store: one interface, two backends (broker/store/base.py has the overview)."""

from sqlalchemy.ext.asyncio import AsyncEngine

from broker.store.alchemy import SqlAlchemyBrokerStore
from broker.store.base import (
    BrokerStore,
    ClaimState,
    CollectResult,
    ConsentUse,
    IdempotentAnswer,
    PendingTransfer,
    StoredConsent,
    StoredPreview,
)
from broker.store.sqlite import SqliteBrokerStore
from einmal.store import sqlite_writer

__all__ = ["BrokerStore", "ClaimState", "CollectResult", "ConsentUse", "IdempotentAnswer",
           "PendingTransfer", "SqlAlchemyBrokerStore", "SqliteBrokerStore", "StoredConsent",
           "StoredPreview", "open_store"]


def open_store(engine: AsyncEngine) -> BrokerStore:
    """The backend for ``engine``, chosen once at start-up: a SQLite file gets the fast path
    on its writer (decision 0024); PostgreSQL (and SQLite in memory) the SQLAlchemy store."""
    if sqlite_writer(engine) is not None:
        return SqliteBrokerStore(engine)
    return SqlAlchemyBrokerStore(engine)
