"""The SQLite writer thread (einmal/store.py, decision 0024): the hot write transactions written
as plain SQL must leave exactly the rows the SQLAlchemy statements leave (those run on
PostgreSQL), commit durably, and roll back and fail closed on an error."""

import base64
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text

from broker.repository import BrokerRepository, ConsentUse, IdempotentAnswer, StoredConsent
from broker.tables import TransferRow
from cockpit.log import TransferLog
from cockpit.service import CockpitService
from cockpit.vault import CitizenVault
from einmal_client import tlog
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.keys import SigningKey
from einmal.store import StoreError, create_engine, dispose, sqlite_time, sqlite_writer

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


async def _broker(path: Path, *, fast: bool) -> tuple[BrokerRepository, Any]:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    repo = BrokerRepository(engine)
    await repo.create_schema()
    if not fast:
        repo._sqlite = None
    return repo, engine


async def test_broker_group_commit_and_delivery_marks_agree_on_both_paths(
        tmp_path: Path) -> None:
    results = {}
    for fast in (True, False):
        path = tmp_path / f"broker-{fast}.db"
        repo, engine = await _broker(path, fast=fast)
        try:
            consent = StoredConsent(
                id="c1", citizen_ref="p", subject_ref="s", subject_masked="***", service_id="svc",
                proof_types=("birth",), purpose="p", granted_at=T0,
                valid_until=T0 + timedelta(days=1), max_uses=1, uses=0, revoked_at=None)
            await repo.add_consent(consent)
            await repo.claim_idempotency("svc", "key-1", "h", T0, T0 + timedelta(days=1))
            use = ConsentUse(consent_id="c1", now=T0 + timedelta(minutes=1))
            answer = IdempotentAnswer(client_id="svc", key="key-1", sealed_response=b"sealed")
            ok = await repo._commit_batch([
                (_record(CHILD, 1), use, answer), (_record(CHILD, 2), use, None),
                (_record(OTHER, 3), None, None)])
            pending = await repo.pending_transfers(10)
            await repo.mark_delivered([pending[0][0]], T0 + timedelta(hours=1))
            status = await repo.outbox_status()
            stored = await repo.consent("c1")
        finally:
            await dispose(engine)
        results[fast] = {
            "ok": ok, "status": status, "uses": stored.uses if stored else None,
            "transfers": _rows(path, "SELECT seq, id, created_at, record, delivered_at, attempts "
                                     "FROM broker_transfer ORDER BY seq"),
            "idempotency": _rows(path, "SELECT client_id, key, state, response "
                                       "FROM broker_idempotency"),
        }
    fast, slow = results[True], results[False]
    # the consent allowed one use: the second record of the batch is refused, nothing written
    assert fast["ok"] == slow["ok"] == [True, False, True]
    assert fast["uses"] == slow["uses"] == 1
    assert fast["status"] == slow["status"]
    assert fast["status"][0] == 1  # one of the two records still pending
    assert fast["transfers"] == slow["transfers"]
    assert fast["idempotency"] == slow["idempotency"] == [("svc", "key-1", "done", b"sealed")]


async def test_rows_written_by_the_writer_read_back_through_sqlalchemy(tmp_path: Path) -> None:
    repo, engine = await _broker(tmp_path / "broker.db", fast=True)
    try:
        record = _record(CHILD, 7)
        assert await repo.commit_transfer(record)
        transfer = TransferRow.__table__  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            row = (await conn.execute(select(transfer.c.id, transfer.c.created_at))).one()
        assert row.id == record.id
        assert row.created_at.replace(tzinfo=UTC) == record.occurred_at
    finally:
        await dispose(engine)


async def test_an_error_rolls_the_whole_transaction_back(tmp_path: Path) -> None:
    repo, engine = await _broker(tmp_path / "broker.db", fast=True)
    writer = sqlite_writer(engine)
    assert writer is not None
    try:
        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO broker_transfer (id, created_at, record, attempts) "
                         "VALUES ('x', ?, x'00', 0)", (sqlite_time(T0),))
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await writer.run(half_then_fail)
        # a driver error is a StoreError (the broker answers 503, releases nothing)
        with pytest.raises(StoreError):
            await writer.run(lambda conn: conn.execute("INSERT INTO no_such_table VALUES (1)"))
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM broker_transfer"))).scalar()
        assert count == 0
        # the writer is still usable afterwards
        assert await repo.commit_transfer(_record(CHILD, 8))
    finally:
        await dispose(engine)


async def test_a_failing_disk_is_a_store_error_for_the_proof_path(tmp_path: Path) -> None:
    repo, engine = await _broker(tmp_path / "broker.db", fast=True)
    try:
        async with engine.begin() as conn:  # the table is gone: every insert fails
            await conn.execute(text("DROP TABLE broker_transfer"))
        with pytest.raises(StoreError):
            await repo.commit_transfer(_record(CHILD, 9))
    finally:
        await dispose(engine)


def test_only_a_sqlite_file_gets_a_writer() -> None:
    assert sqlite_writer(create_engine("sqlite+aiosqlite:///:memory:")) is None
    assert sqlite_writer(create_engine("postgresql+asyncpg://u@127.0.0.1/x")) is None


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


async def test_a_writer_waits_off_the_loop_for_another_process_holding_the_write_lock(
        tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "broker.db"
    repo, engine = await _broker(path, fast=True)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # e.g. an `einmal` command writing meanwhile
        commit = asyncio.create_task(repo.commit_transfer(_record(CHILD, 10)))
        ticks = 0
        while ticks < 20:  # the event loop keeps running while the writer waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not commit.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(commit, 10)
        assert len(_rows(path, "SELECT id FROM broker_transfer")) == 1
    finally:
        other.close()
        await dispose(engine)


async def test_a_cancelled_caller_does_not_let_the_next_transaction_overlap_its_commit(
        tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "broker.db"
    repo, engine = await _broker(path, fast=True)
    try:
        first = asyncio.create_task(repo.commit_transfer(_record(CHILD, 11)))
        await asyncio.sleep(0)  # queued; the group commit is under way
        first.cancel()
        second = await repo.commit_transfer(_record(CHILD, 12))
        assert second
        rows = _rows(path, "SELECT id FROM broker_transfer ORDER BY seq")
        # the cancelled caller's record may or may not have been committed - never half
        assert str(uuid.UUID(int=12)) in {r[0] for r in rows}
    finally:
        await dispose(engine)
