"""The SQLite writer thread (einmal/store.py, decision 0024): the hot write transactions written
as plain SQL must leave exactly the rows the SQLAlchemy statements leave (those run on
PostgreSQL), commit durably, and roll back and fail closed on an error.

The cockpit's transactions are tested here; the broker's store and the writer itself in
tests/integration/test_broker_store.py."""

import base64
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cockpit.log import TransferLog
from cockpit.service import CockpitService
from cockpit.vault import CitizenVault
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.keys import SigningKey
from einmal.store import create_engine, dispose, sqlite_time
from einmal_client import tlog

CHILD, PARENT, OTHER = "86095742719", "81709656328", "60478593182"
T0 = datetime(2026, 11, 29, 7, 0, 0, 120, tzinfo=UTC)


def _record(subject: str, n: int, *, proof_type: str = "birth",
            parents: tuple[str, ...] = ()) -> TransferRecord:
    return TransferRecord(
        id=str(uuid.UUID(int=n)), occurred_at=T0 + timedelta(seconds=n),
        outcome=Outcome.DELIVERED, proof_type=proof_type, purpose="p", subject=subject,
        service=ServiceRef(id="s", name="S", authority="A", land="HB"),
        register=RegisterRef(id="r", name="R"), retention_until=T0 + timedelta(days=30),
        concerned=(Concerned(idnr=subject, relation="self"),
                   *(Concerned(idnr=p, relation="concerned") for p in parents)))


def _batch() -> list[TransferRecord]:
    records = [_record(CHILD, 1), _record(CHILD, 2, parents=(PARENT,)),
               _record(OTHER, 3, proof_type="income"), _record(CHILD, 4)]
    return [*records, records[1]]  # a duplicate in the batch


def _rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


async def _cockpit(path: Path, *, fast: bool) -> tuple[CockpitService, TransferLog, Any]:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    service = CockpitService(engine=engine, pseudonym_key=b"k" * 32,
                             vault=CitizenVault(b"m" * 32), clock=lambda: T0)
    await service.create_schema()
    log = TransferLog(engine=engine, key=SigningKey(kid="log-test", private_key=Ed25519PrivateKey.generate()), origin="test/log")
    async with engine.begin() as conn:
        await log.initialise(conn)
    if not fast:  # the SQLAlchemy statements, as on PostgreSQL
        service._sqlite = None
        log._sqlite = None
    else:
        assert service._sqlite is not None and log._sqlite is not None
    return service, log, engine


async def test_cockpit_ingest_and_integrate_leave_the_same_rows_on_both_paths(
        tmp_path: Path) -> None:
    results = {}
    for fast in (True, False):
        path = tmp_path / f"cockpit-{fast}.db"
        service, log, engine = await _cockpit(path, fast=fast)
        try:
            first = await service.ingest(_batch())
            again = await service.ingest([_record(CHILD, 1), _record(PARENT, 5)])
            integrated = await log.integrate()
            more = await service.ingest([_record(OTHER, 6)])
            integrated += await log.integrate()
            size, note = await log.checkpoint()
            feed = await service.transfers_of(PARENT)
        finally:
            await dispose(engine)
        results[fast] = {
            "counts": (first, again, integrated, size),
            "entries": _rows(path, "SELECT seq, id, occurred_at, received_at, subject_ref, leaf, "
                                   "leaf_hash, log_index, service_id, register_id "
                                   "FROM cockpit_entry ORDER BY seq"),
            "index": _rows(path, "SELECT * FROM cockpit_citizen_entry "
                                 "ORDER BY citizen_ref, transfer_id"),
            "relations": _rows(path, "SELECT * FROM cockpit_relation ORDER BY 1, 2"),
            "keys": len(_rows(path, "SELECT * FROM cockpit_citizen_key")),
            "nodes": _rows(path, "SELECT * FROM cockpit_tree_node ORDER BY level, idx"),
            "leaf_hashes": [r[0] for r in _rows(path, "SELECT leaf_hash FROM cockpit_entry "
                                                      "ORDER BY log_index")],
            "state": _rows(path, "SELECT tree_size FROM cockpit_log_state"),
            # the signed note: origin, size, root (the signature differs: a key per run)
            "root": note.split("\n")[:3],
            "feed": [(i.id, i.relation) for i in feed["items"]],
            "more": more,
        }
    fast, slow = results[True], results[False]
    assert fast["counts"] == slow["counts"] == (
        {"accepted": 4, "duplicates": 1}, {"accepted": 1, "duplicates": 1}, 6, 6)
    for part in ("entries", "index", "relations", "keys", "nodes", "state", "root", "feed"):
        assert fast[part] == slow[part], part
    # the times were written in SQLAlchemy's format and read back as the same instants
    assert fast["entries"][0][2] == sqlite_time(T0 + timedelta(seconds=1))
    # the root is the RFC 6962 tree hash of the leaves in log order
    assert fast["root"][2] == base64.b64encode(tlog.mth(fast["leaf_hashes"])).decode()
    # the parent sees their own record, and the birth and the child's later record as the
    # child's - not the child's record from before the birth named them
    ids = {n: str(uuid.UUID(int=n)) for n in range(1, 7)}
    assert set(fast["feed"]) == {(ids[5], "self"), (ids[4], "child"), (ids[2], "child")}


async def test_integration_numbers_entries_in_order_across_a_gap_in_seq(tmp_path: Path) -> None:
    path = tmp_path / "cockpit.db"
    service, log, engine = await _cockpit(path, fast=True)
    try:
        await service.ingest([_record(CHILD, 1), _record(CHILD, 2)])
        with sqlite3.connect(path) as conn:  # a row far ahead: the pending seqs have a gap
            conn.execute("INSERT INTO cockpit_entry (seq, id, occurred_at, received_at, "
                         "subject_ref, leaf_hash, service_id) VALUES (100, 'gap', ?, ?, 'x', ?, "
                         "'s')", (sqlite_time(T0), sqlite_time(T0), b"\x01" * 32))
        await service.ingest([_record(OTHER, 3)])
        assert await log.integrate() == 4
        await service.ingest([_record(OTHER, 4), _record(OTHER, 5)])  # no gap: one UPDATE
        assert await log.integrate() == 2
        size, note = await log.checkpoint()
    finally:
        await dispose(engine)
    rows = _rows(path, "SELECT seq, log_index, leaf_hash FROM cockpit_entry ORDER BY seq")
    assert [index for _, index, _ in rows] == list(range(6))
    assert size == 6
    assert note.split("\n")[2] == base64.b64encode(tlog.mth([h for _, _, h in rows])).decode()
