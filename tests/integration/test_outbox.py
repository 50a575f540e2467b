"""Several broker processes share the outbox (PostgreSQL: FOR UPDATE SKIP LOCKED)."""

import asyncio
import os
import uuid
from datetime import UTC, datetime

import pytest

from broker.protocol import OutboxSeal, Pseudonyms
from broker.store import SqlAlchemyBrokerStore
from einmal.domain.transfer import Outcome, ServiceRef, TransferRecord
from einmal.store import create_engine
from tests.conftest import reset_database

PG = os.environ.get("EINMAL_TEST_DATABASE_URL")


@pytest.mark.skipif(not PG, reason="needs PostgreSQL (EINMAL_TEST_DATABASE_URL); "
                    "the embedded SQLite default runs one broker process")
async def test_two_brokers_never_send_the_same_record_at_the_same_time() -> None:
    assert PG is not None
    reset_database(PG)
    url = PG.replace("postgresql://", "postgresql+asyncpg://", 1)
    engines = [create_engine(url), create_engine(url)]
    seal = OutboxSeal(key=b"o" * 32, pseudonyms=Pseudonyms(b"p" * 32))  # the processes share keys
    repos = [SqlAlchemyBrokerStore(e, seal) for e in engines]
    await repos[0].create_schema()
    ids = []
    for n in range(60):
        record = TransferRecord(id=str(uuid.uuid4()), occurred_at=datetime.now(UTC),
                                outcome=Outcome.REFUSED, proof_type="birth", purpose="p",
                                subject="86095742719",
                                service=ServiceRef(id=f"s{n}", name="S", authority="A", land="HB"))
        ids.append(record.id)
        assert await repos[n % 2].commit_transfer(record)
    sent: list[bytes] = []

    async def slow_send(records: list[bytes]) -> None:
        await asyncio.sleep(0.05)  # hold the lock while the other broker tries
        sent.extend(records)

    async def drain(repo: SqlAlchemyBrokerStore) -> None:
        while await repo.deliver_pending(7, slow_send):
            pass

    try:
        await asyncio.gather(drain(repos[0]), drain(repos[1]))
        assert len(sent) == len(ids)  # every record exactly once
        assert (await repos[0].outbox_status())[0] == 0
    finally:
        for engine in engines:
            await engine.dispose()
