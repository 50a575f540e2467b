"""Two sequencers on one store never fork the tree (the state-row lock)."""

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from cockpit.log import TransferLog
from cockpit.service import CockpitService
from cockpit.tables import CheckpointRow, EntryRow
from cockpit.vault import CitizenVault
from einmal_client import tlog
from einmal.domain.transfer import Outcome, ServiceRef, TransferRecord
from einmal.keys import load_or_create_signing_key
from einmal.store import create_engine
from tests.conftest import reset_database


def _record(n: int) -> TransferRecord:
    return TransferRecord(
        id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), outcome=Outcome.REFUSED,
        proof_type="birth", purpose="p", subject="86095742719", error_type="consent-required",
        service=ServiceRef(id=f"s{n % 3}", name="S", authority="A", land="HB"))


async def test_concurrent_sequencers_build_one_tree(tmp_path: Path) -> None:
    url = os.environ.get("EINMAL_TEST_DATABASE_URL")
    if url:
        reset_database(url)
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cockpit.db'}"
    key = load_or_create_signing_key(tmp_path, "cockpit-log")
    engines = [create_engine(url), create_engine(url)]
    try:
        service = CockpitService(engine=engines[0], pseudonym_key=b"k" * 32,
                                 vault=CitizenVault(b"m" * 32))
        await service.create_schema()
        logs = [TransferLog(engine=e, key=key, origin="test/log", batch_size=7) for e in engines]
        async with engines[0].begin() as conn:
            await logs[0].initialise(conn)
        total = 0
        for round_ in range(4):  # ingest while both sequencers race
            await service.ingest([_record(round_ * 25 + i) for i in range(25)])
            total += 25
            while sum(await asyncio.gather(*(log.integrate() for log in logs))):
                pass
        async with engines[0].connect() as conn:
            rows = (await conn.execute(select(EntryRow.__table__.c.log_index,
                                              EntryRow.__table__.c.leaf_hash)
                                       .order_by(EntryRow.__table__.c.log_index))).all()
            checkpoints = (await conn.execute(select(CheckpointRow.__table__.c.tree_size,
                                                     CheckpointRow.__table__.c.root)
                                              .order_by(CheckpointRow.__table__.c.tree_size))
                           ).all()
        assert [r.log_index for r in rows] == list(range(total))
        hashes = [r.leaf_hash for r in rows]
        for size, root in checkpoints:
            assert tlog.mth(hashes[:size]) == root  # every checkpoint is a prefix: no fork
        assert checkpoints[-1].tree_size == total
    finally:
        for engine in engines:
            await engine.dispose()
