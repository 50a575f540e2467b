"""Batched ingest (cockpit/service.py): the same readers as record-by-record, duplicates counted."""

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cockpit.service import CockpitService
from cockpit.tables import CitizenEntryRow, EntryRow
from cockpit.vault import CitizenVault
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.store import create_engine
from tests.conftest import reset_database

CHILD, PARENT, OTHER = "86095742719", "81709656328", "60478593182"


def _record(subject: str, *, proof_type: str = "income", parents: tuple[str, ...] = (),
            outcome: Outcome = Outcome.DELIVERED) -> TransferRecord:
    return TransferRecord(
        id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), outcome=outcome,
        proof_type=proof_type, purpose="p", subject=subject,
        service=ServiceRef(id="s", name="S", authority="A", land="HB"),
        register=RegisterRef(id="r", name="R") if outcome is Outcome.DELIVERED else None,
        error_type=None if outcome is Outcome.DELIVERED else "consent-required",
        concerned=(Concerned(idnr=subject, relation="self"),
                   *(Concerned(idnr=p, relation="concerned") for p in parents)))


async def _service(tmp_path: Path) -> tuple[CockpitService, Any]:
    url = os.environ.get("EINMAL_TEST_DATABASE_URL")
    if url:
        reset_database(url)
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cockpit.db'}"
    engine = create_engine(url)
    service = CockpitService(engine=engine, pseudonym_key=b"k" * 32,
                             vault=CitizenVault(b"m" * 32))
    await service.create_schema()
    return service, engine


async def _readers(engine: Any) -> dict[str, set[tuple[str, str]]]:
    index = CitizenEntryRow.__table__  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(index.c.transfer_id, index.c.citizen_ref,
                                          index.c.relation))).all()
    out: dict[str, set[tuple[str, str]]] = {}
    for transfer_id, ref, relation in rows:
        out.setdefault(transfer_id, set()).add((ref, relation))
    return out


async def test_a_relation_applies_to_its_record_and_later_ones_in_the_batch(
        tmp_path: Path) -> None:
    service, engine = await _service(tmp_path)
    try:
        before = _record(CHILD)                                  # no relation known yet
        birth = _record(CHILD, proof_type="birth", parents=(PARENT,))
        after = _record(CHILD)                                   # the relation is known now
        other = _record(OTHER)
        result = await service.ingest([before, birth, after, other, birth])
        assert result == {"accepted": 4, "duplicates": 1}
        readers = await _readers(engine)
        child, parent = service.pseudonym(CHILD), service.pseudonym(PARENT)
        assert readers[before.id] == {(child, "self")}
        assert readers[birth.id] == {(child, "self"), (parent, "child")}
        assert readers[after.id] == {(child, "self"), (parent, "child")}
        assert readers[other.id] == {(service.pseudonym(OTHER), "self")}

        # a second batch: known relation from the store; repeats are duplicates
        later = _record(CHILD)
        refused = _record(OTHER, proof_type="birth", parents=(PARENT,),
                          outcome=Outcome.REFUSED)  # a refusal teaches no relation
        result = await service.ingest([before, later, refused])
        assert result == {"accepted": 2, "duplicates": 1}
        readers = await _readers(engine)
        assert readers[later.id] == {(child, "self"), (parent, "child")}
        assert readers[refused.id] == {(service.pseudonym(OTHER), "self"),
                                       (parent, "concerned")}
        async with engine.connect() as conn:
            count = len((await conn.execute(select(EntryRow.__table__.c.id))).all())  # type: ignore[attr-defined]
        assert count == 6
    finally:
        await engine.dispose()
