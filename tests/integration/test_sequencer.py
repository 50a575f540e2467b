"""Two sequencers on one store never fork the tree (the state-row lock), on every backend."""

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cockpit.log import TransferLog
from cockpit.service import CockpitService
from cockpit.store import SqlAlchemyCockpitStore, SqliteCockpitStore
from cockpit.tables import CHECKPOINT, ENTRY
from cockpit.vault import CitizenVault
from einmal.domain.transfer import Outcome, ServiceRef, TransferRecord
from einmal.keys import load_or_create_signing_key
from einmal.store import create_engine, dispose
from einmal_client import tlog
from tests.integration.cockpit_stores import BACKENDS, open_backend


def _record(n: int) -> TransferRecord:
    return TransferRecord(
        id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), outcome=Outcome.REFUSED,
        proof_type="birth", purpose="p", subject="86095742719", error_type="consent-required",
        service=ServiceRef(id=f"s{n % 3}", name="S", authority="A", land="HB"))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_concurrent_sequencers_build_one_tree(tmp_path: Path, backend: str) -> None:
    key = load_or_create_signing_key(tmp_path, "cockpit-log")
    async with open_backend(backend, tmp_path) as (store, engine):
        # a second engine on the same database: a second process's sequencer
        other_engine = create_engine(engine.url.render_as_string(hide_password=False))
        other = (SqliteCockpitStore(other_engine) if isinstance(store, SqliteCockpitStore)
                 else SqlAlchemyCockpitStore(other_engine))
        try:
            service = CockpitService(store=store, pseudonym_key=b"k" * 32,
                                     vault=CitizenVault(b"m" * 32))
            logs = [TransferLog(store=s, key=key, origin="test/log", batch_size=7)
                    for s in (store, other)]
            await logs[0].initialise()
            await logs[1].initialise()  # once only: the second finds the state row
            total = 0
            for round_ in range(4):  # ingest while both sequencers race
                await service.ingest([_record(round_ * 25 + i) for i in range(25)])
                total += 25
                while sum(await asyncio.gather(*(log.integrate() for log in logs))):
                    pass
            async with engine.connect() as conn:
                rows = (await conn.execute(select(ENTRY.c.log_index, ENTRY.c.leaf_hash)
                                           .order_by(ENTRY.c.log_index))).all()
                checkpoints = (await conn.execute(select(CHECKPOINT.c.tree_size,
                                                         CHECKPOINT.c.root)
                                                  .order_by(CHECKPOINT.c.tree_size))).all()
        finally:
            await dispose(other_engine)
    assert [r.log_index for r in rows] == list(range(total))
    hashes = [r.leaf_hash for r in rows]
    for size, root in checkpoints:
        assert tlog.mth(hashes[:size]) == root  # every checkpoint is a prefix: no fork
    assert checkpoints[0].tree_size == 0  # the empty checkpoint, once
    assert checkpoints[-1].tree_size == total
