"""The broker's store: one interface, two backends (broker/store/base.py has the overview)."""

from sqlalchemy.ext.asyncio import AsyncEngine

from broker.protocol import OutboxSeal
from broker.store.alchemy import SqlAlchemyBrokerStore
from broker.store.base import (
    BrokerStore,
    ClaimState,
    CollectResult,
    ConsentUse,
    IdempotentAnswer,
    PendingTransfer,
    ProtocolHit,
    RetentionCutoffs,
    StoredConsent,
    StoredPreview,
)
from broker.store.sqlite import SqliteBrokerStore
from einmal.store import sqlite_writer

__all__ = ["BrokerStore", "ClaimState", "CollectResult", "ConsentUse", "IdempotentAnswer",
           "PendingTransfer", "ProtocolHit", "RetentionCutoffs", "SqlAlchemyBrokerStore",
           "SqliteBrokerStore", "StoredConsent", "StoredPreview", "open_store"]


def open_store(engine: AsyncEngine, seal: OutboxSeal) -> BrokerStore:
    """The backend for ``engine``, chosen once at start-up: a SQLite file gets the fast path
    on its writer (decision 0024); PostgreSQL (and SQLite in memory) the SQLAlchemy store.
    ``seal`` seals the outbox's records and writes their protocol entries (decision 0031)."""
    if sqlite_writer(engine) is not None:
        return SqliteBrokerStore(engine, seal)
    return SqlAlchemyBrokerStore(engine, seal)
