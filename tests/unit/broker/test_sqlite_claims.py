"""Idempotency-Key claims on the SQLite backend share a transaction when they come together:
each answered as it would be alone, in order (the conformance suite covers one at a time)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.protocol import OutboxSeal, Pseudonyms
from broker.store import SqliteBrokerStore
from broker.store.alchemy import SqlAlchemyBrokerStore
from broker.store.base import BrokerStore, IdempotentAnswer, PendingTransfer
from einmal.domain.transfer import Outcome, ServiceRef, TransferRecord
from einmal.store import create_engine, dispose

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SEAL = OutboxSeal(key=b"o" * 32, pseudonyms=Pseudonyms(b"p" * 32))


@pytest.fixture(name="open_store")
async def fx_open_store(tmp_path: Path) -> AsyncIterator[object]:
    opened: list[tuple[BrokerStore, object]] = []

    async def open_store(kind: type[SqlAlchemyBrokerStore]) -> BrokerStore:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / kind.__name__}.db")
        store = kind(engine, SEAL)
        await store.create_schema()
        opened.append((store, engine))
        return store

    yield open_store
    for store, engine in opened:
        await store.aclose()
        await dispose(engine)  # type: ignore[arg-type]  # an AsyncEngine


async def _together(store: BrokerStore) -> list[object]:
    await store.claim_idempotency("svc", "old", "h", T0 - 2 * DAY, T0 - DAY)
    await store.claim_idempotency("svc", "answered", "h", T0, T0 + DAY)
    record = TransferRecord(id="t-1", occurred_at=T0, outcome=Outcome.DELIVERED,
                            proof_type="birth", purpose="p", subject="86095742719",
                            service=ServiceRef(id="svc", name="S", authority="A", land="HB"))
    await store.commit_transfers([PendingTransfer(record, None, IdempotentAnswer(
        client_id="svc", key="answered", sealed_response=b"first answer"))])
    return list(await asyncio.gather(
        store.claim_idempotency("svc", "k", "h1", T0, T0 + DAY),
        store.claim_idempotency("svc", "k", "h1", T0, T0 + DAY),
        store.claim_idempotency("svc", "k", "h2", T0, T0 + DAY),
        store.claim_idempotency("other", "k", "h2", T0, T0 + DAY),
        store.claim_idempotency("svc", "old", "h9", T0, T0 + DAY),
        store.claim_idempotency("svc", "answered", "h", T0, T0 + DAY)))


async def test_claims_that_come_together_are_answered_as_one_by_one(open_store: Any) -> None:
    batched = await _together(await open_store(SqliteBrokerStore))
    alone = await _together(await open_store(SqlAlchemyBrokerStore))
    assert batched == alone == [("claimed", None), ("in_flight", None), ("mismatch", None),
                                ("claimed", None), ("claimed", None), ("done", b"first answer")]


async def test_a_released_claim_can_be_claimed_again(open_store: Any) -> None:
    store = await open_store(SqliteBrokerStore)
    assert await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY) == ("claimed", None)
    await store.release_idempotency("svc", "k")
    assert await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY) == ("claimed", None)
