"""The broker's store: one conformance suite for every backend of ``BrokerStore``.

Each test runs against the SQLite backend (plain SQL on the writer, decision 0024) and the
SQLAlchemy backend, both on a SQLite file; the SQLAlchemy backend also on PostgreSQL when
EINMAL_TEST_DATABASE_URL is set; and the in-memory fake the unit tests use
(tests/unit/broker/fakes.py), so the fake answers as the real stores do. Same answers, same
errors for every operation; the two SQLite-file backends must also leave the same rows.
What is at rest (decision 0031) is checked on the real backends: a pending record sealed, a
delivered one reduced to its protocol entry, rows from before migration 0004 sealed later.
Below them: the SQLite backend's own parts and the writer (einmal/store.py: SqliteWriter).
"""

import asyncio
import sqlite3
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.protocol import OutboxSeal, ProtocolEntry, Pseudonyms
from broker.store import (
    BrokerStore,
    ConsentUse,
    IdempotentAnswer,
    PendingTransfer,
    RetentionCutoffs,
    SqlAlchemyBrokerStore,
    SqliteBrokerStore,
    StoredConsent,
    StoredPreview,
    open_store,
)
from broker.store.sqlite import read_pending
from broker.tables import BROKER_TABLES, BUCKET, TRANSFER
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.keys import private_dir
from einmal.store import (
    DuplicateKeyError,
    StoreError,
    create_engine,
    dispose,
    sqlite_time,
    sqlite_writer,
)
from tests.conftest import TEST_DATABASE_URL, reset_database
from tests.unit.broker.fakes import FakeBrokerStore

CHILD, OTHER = "86095742719", "60478593182"
T0 = datetime(2026, 11, 29, 7, 0, 0, 120, tzinfo=UTC)
DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)
DATABASES = ["sqlite", "sqlalchemy", *(["postgresql"] if TEST_DATABASE_URL else [])]
PSEUDONYMS = Pseudonyms(b"p" * 32)
SEAL = OutboxSeal(key=b"o" * 32, pseudonyms=PSEUDONYMS)


def _record(n: int, *, subject: str = CHILD, at: datetime | None = None) -> TransferRecord:
    return TransferRecord(
        id=str(uuid.UUID(int=n)), occurred_at=at or T0 + timedelta(seconds=n),
        outcome=Outcome.DELIVERED, proof_type="birth", purpose="p", subject=subject,
        service=ServiceRef(id="svc", name="S", authority="A", land="HB"),
        register=RegisterRef(id="r", name="R"), retention_until=T0 + 30 * DAY,
        concerned=(Concerned(idnr=subject, relation="self"),))


def _consent(consent_id: str = "c1", *, citizen_ref: str = "citizen",
             max_uses: int | None = None, granted_at: datetime = T0,
             valid_until: datetime = T0 + DAY) -> StoredConsent:
    return StoredConsent(
        id=consent_id, citizen_ref=citizen_ref, subject_ref="subject",
        subject_masked="86*******19", service_id="svc", proof_types=("income", "birth"),
        purpose="p", granted_at=granted_at, valid_until=valid_until, max_uses=max_uses, uses=0,
        revoked_at=None, preview=True)


def _preview(request_id: str, *, created_at: datetime = T0, ttl: timedelta = 15 * MINUTE,
             citizen_ref: str = "citizen", consent_id: str | None = None,
             ) -> StoredPreview:
    return StoredPreview(
        id=request_id, client_id="svc", citizen_ref=citizen_ref, subject_masked="86*******19",
        proof_type="custody", purpose="p", consent_id=consent_id, state="pending",
        created_at=created_at, expires_at=created_at + ttl, decided_at=None,
        sealed=b"sealed:" + request_id.encode())


def _use(consent_id: str = "c1", at: datetime = T0 + MINUTE) -> ConsentUse:
    return ConsentUse(consent_id=consent_id, now=at)


async def _open(kind: str, tmp_path: Path, seal: OutboxSeal = SEAL,
                ) -> tuple[BrokerStore, AsyncEngine | None]:
    if kind == "fake":
        return FakeBrokerStore(), None
    if kind == "postgresql":
        assert TEST_DATABASE_URL is not None
        reset_database(TEST_DATABASE_URL)
        engine = create_engine(TEST_DATABASE_URL.replace("postgresql://",
                                                         "postgresql+asyncpg://", 1))
    else:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / f'{kind}.db'}")
    store = (SqliteBrokerStore(engine, seal) if kind == "sqlite"
             else SqlAlchemyBrokerStore(engine, seal))
    await store.create_schema()
    return store, engine


@pytest.fixture(name="store", params=[*DATABASES, "fake"])
async def fx_store(request: pytest.FixtureRequest, tmp_path: Path,
                   ) -> AsyncIterator[BrokerStore]:
    store, engine = await _open(request.param, tmp_path)
    try:
        yield store
    finally:
        await store.aclose()
        if engine is not None:
            await dispose(engine)


async def _pending_ids(store: BrokerStore) -> list[str]:
    return [msgspec.json.decode(raw)["id"] for _, raw in await store.pending_transfers(100)]


class TestReplayCache:
    async def test_a_seen_jti_is_a_replay(self, store: BrokerStore) -> None:
        assert await store.remember_jti("svc", "j1", T0 + MINUTE, T0)
        assert not await store.remember_jti("svc", "j1", T0 + MINUTE, T0)
        assert await store.remember_jti("other", "j1", T0 + MINUTE, T0)  # per client

    async def test_an_expired_jti_is_forgotten(self, store: BrokerStore) -> None:
        assert await store.remember_jti("svc", "j1", T0 + MINUTE, T0)
        assert not await store.remember_jti("svc", "j1", T0 + MINUTE, T0 + MINUTE)
        assert await store.remember_jti("svc", "j1", T0 + 3 * MINUTE, T0 + 2 * MINUTE)


class TestConsents:
    async def test_an_unknown_consent_is_none(self, store: BrokerStore) -> None:
        assert await store.consent("nope") is None
        assert await store.revoke_consent("nope", "citizen", T0) is None

    async def test_a_consent_id_is_stored_once(self, store: BrokerStore) -> None:
        await store.add_consent(_consent())
        with pytest.raises(DuplicateKeyError):
            await store.add_consent(_consent())

    async def test_another_citizen_can_neither_see_nor_revoke_it(self,
                                                                 store: BrokerStore) -> None:
        await store.add_consent(_consent())
        assert await store.revoke_consent("c1", "someone-else", T0) is None
        assert await store.consents_of("someone-else") == []
        stored = await store.consent("c1")
        assert stored is not None and stored.revoked_at is None

    async def test_a_consent_reads_back_as_stored(self, store: BrokerStore) -> None:
        await store.add_consent(_consent(max_uses=2))
        stored = await store.consent("c1")
        # proof types come back sorted; times as the same instants, in UTC
        assert stored == msgspec.structs.replace(_consent(max_uses=2),
                                                 proof_types=("birth", "income"))
        assert stored is not None and stored.granted_at.utcoffset() == timedelta(0)

    async def test_a_citizens_consents_come_newest_first(self, store: BrokerStore) -> None:
        await store.add_consent(_consent("old", granted_at=T0))
        await store.add_consent(_consent("new", granted_at=T0 + MINUTE))
        await store.add_consent(_consent("theirs", citizen_ref="other"))
        assert [c.id for c in await store.consents_of("citizen")] == ["new", "old"]

    async def test_revoking_is_idempotent_and_keeps_the_first_time(
            self, store: BrokerStore) -> None:
        await store.add_consent(_consent())
        first = await store.revoke_consent("c1", "citizen", T0 + MINUTE)
        again = await store.revoke_consent("c1", "citizen", T0 + 2 * MINUTE)
        assert first is not None and again is not None
        assert first.revoked_at == again.revoked_at == T0 + MINUTE
        assert await store.consent("c1") == first


class TestIdempotencyKeys:
    async def test_another_body_under_the_same_key_is_a_mismatch(self,
                                                                 store: BrokerStore) -> None:
        assert await store.claim_idempotency("svc", "k", "h1", T0, T0 + DAY) == ("claimed",
                                                                                 None)
        assert await store.claim_idempotency("svc", "k", "h2", T0, T0 + DAY) == ("mismatch",
                                                                                 None)

    async def test_a_key_is_in_flight_until_answered_then_done(self,
                                                               store: BrokerStore) -> None:
        await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY)
        assert await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY) == ("in_flight",
                                                                                None)
        answer = IdempotentAnswer(client_id="svc", key="k", sealed_response=b"answer")
        assert await store.commit_transfer(_record(1), None, answer)
        assert await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY) == ("done",
                                                                                b"answer")
        assert await store.claim_idempotency("other", "k", "h", T0, T0 + DAY) == ("claimed",
                                                                                  None)

    async def test_release_frees_only_an_unanswered_key(self, store: BrokerStore) -> None:
        await store.claim_idempotency("svc", "open", "h", T0, T0 + DAY)
        await store.claim_idempotency("svc", "answered", "h", T0, T0 + DAY)
        await store.commit_transfer(_record(1), None, IdempotentAnswer(
            client_id="svc", key="answered", sealed_response=b"a"))
        await store.release_idempotency("svc", "open")
        await store.release_idempotency("svc", "answered")
        assert (await store.claim_idempotency("svc", "open", "h", T0, T0 + DAY))[0] == "claimed"
        assert (await store.claim_idempotency("svc", "answered", "h", T0, T0 + DAY)
                == ("done", b"a"))

    async def test_an_expired_key_is_forgotten(self, store: BrokerStore) -> None:
        await store.claim_idempotency("svc", "k", "h1", T0, T0 + MINUTE)
        later = T0 + 2 * MINUTE
        assert await store.claim_idempotency("svc", "k", "h2", later, later + DAY) == (
            "claimed", None)


class TestGroupCommit:
    async def test_a_used_up_revoked_or_expired_consent_refuses_and_writes_nothing(
            self, store: BrokerStore) -> None:
        await store.add_consent(_consent("used", max_uses=1))
        await store.add_consent(_consent("revoked"))
        await store.add_consent(_consent("expired", valid_until=T0 + MINUTE))
        await store.revoke_consent("revoked", "citizen", T0)
        assert await store.commit_transfer(_record(1), _use("used"))
        assert not await store.commit_transfer(_record(2), _use("used"))
        assert not await store.commit_transfer(_record(3), _use("revoked"))
        assert not await store.commit_transfer(_record(4), _use("expired", T0 + MINUTE))
        assert not await store.commit_transfer(_record(5), _use("unknown"))
        assert await _pending_ids(store) == [_record(1).id]
        assert {c.id: c.uses for c in await store.consents_of("citizen")} == {
            "used": 1, "revoked": 0, "expired": 0}

    async def test_a_batch_commits_each_item_with_its_consent_use_and_answer(
            self, store: BrokerStore) -> None:
        await store.add_consent(_consent(max_uses=1))
        await store.claim_idempotency("svc", "k1", "h", T0, T0 + DAY)
        await store.claim_idempotency("svc", "k2", "h", T0, T0 + DAY)
        ok = await store.commit_transfers([
            PendingTransfer(_record(1), _use(), IdempotentAnswer(
                client_id="svc", key="k1", sealed_response=b"one")),
            PendingTransfer(_record(2), _use(), IdempotentAnswer(  # the consent is used up
                client_id="svc", key="k2", sealed_response=b"two")),
            PendingTransfer(_record(3, subject=OTHER))])
        assert ok == [True, False, True]
        assert await _pending_ids(store) == [_record(1).id, _record(3).id]
        consent = await store.consent("c1")
        assert consent is not None and consent.uses == 1
        assert await store.claim_idempotency("svc", "k1", "h", T0, T0 + DAY) == ("done", b"one")
        # the refused item's answer was not written: its key is still in flight
        assert await store.claim_idempotency("svc", "k2", "h", T0, T0 + DAY) == ("in_flight",
                                                                                 None)

    async def test_a_duplicate_transfer_id_fails_the_whole_batch(self,
                                                                 store: BrokerStore) -> None:
        await store.add_consent(_consent())
        assert await store.commit_transfer(_record(1))
        with pytest.raises(DuplicateKeyError):
            await store.commit_transfers([PendingTransfer(_record(2), _use()),
                                          PendingTransfer(_record(1))])
        assert await _pending_ids(store) == [_record(1).id]
        consent = await store.consent("c1")
        assert consent is not None and consent.uses == 0  # rolled back with the batch

    @pytest.mark.parametrize("kind", DATABASES)
    async def test_two_processes_batches_on_the_same_consents_do_not_deadlock(
            self, kind: str, tmp_path: Path) -> None:
        """Two processes (two engines) commit batches touching the same consents in opposite
        orders at once: with the row locks taken as the batch lists them, PostgreSQL found a
        deadlock and failed a batch (503s); taken in one order, both wait and go through."""
        store, engine = await _open(kind, tmp_path)
        assert engine is not None
        other_engine = create_engine(engine.url.render_as_string(hide_password=False))
        other = (SqliteBrokerStore(other_engine, SEAL) if kind == "sqlite"
                 else SqlAlchemyBrokerStore(other_engine, SEAL))
        try:
            names = [f"c{n}" for n in range(8)]
            for name in names:
                await store.add_consent(_consent(name))
            for each in (engine, other_engine):  # connected before the race, not during it
                async with each.connect() as conn:
                    await conn.execute(select(1))
            n = 0
            for _ in range(4):
                forward = [PendingTransfer(_record(n + i + 1), _use(name))
                           for i, name in enumerate(names)]
                backward = [PendingTransfer(_record(n + 100 + i + 1), _use(name))
                            for i, name in enumerate(reversed(names))]
                n += 1000
                assert await asyncio.gather(store.commit_transfers(forward),
                                            other.commit_transfers(backward)) == [
                    [True] * len(names), [True] * len(names)]
            consent = await store.consent("c0")
            assert consent is not None and consent.uses == 8
        finally:
            await other.aclose()
            await store.aclose()
            await dispose(other_engine)
            await dispose(engine)

    async def test_concurrent_commits_never_use_a_consent_more_often_than_allowed(
            self, store: BrokerStore) -> None:
        await store.add_consent(_consent(max_uses=3))
        results = await asyncio.gather(*(store.commit_transfer(_record(n), _use())
                                         for n in range(1, 11)))
        assert sorted(results) == [False] * 7 + [True] * 3
        assert len(await _pending_ids(store)) == 3


class TestOutbox:
    async def test_a_failed_send_leaves_the_records_pending(self, store: BrokerStore) -> None:
        await store.commit_transfer(_record(1))

        async def refuse(records: list[bytes]) -> None:
            raise RuntimeError("cockpit down")

        with pytest.raises(RuntimeError, match="cockpit down"):
            await store.deliver_pending(10, refuse)
        assert await _pending_ids(store) == [_record(1).id]
        assert (await store.outbox_status())[0] == 1

    async def test_records_are_sent_oldest_first_in_batches_and_marked(
            self, store: BrokerStore) -> None:
        for n in (1, 2, 3):
            await store.commit_transfer(_record(n))
        sent: list[list[str]] = []

        async def send(records: list[bytes]) -> None:
            sent.append([msgspec.json.decode(r, type=TransferRecord).id for r in records])

        assert await store.deliver_pending(2, send) == 2
        assert await store.deliver_pending(2, send) == 1
        assert await store.deliver_pending(2, send) == 0
        assert sent == [[_record(1).id, _record(2).id], [_record(3).id]]
        assert await store.outbox_status() == (0, None)

    async def test_the_outbox_counts_and_dates_what_is_pending(self,
                                                               store: BrokerStore) -> None:
        assert await store.outbox_status() == (0, None)
        for n in (1, 2, 3):
            await store.commit_transfer(_record(n))
        pending = await store.pending_transfers(10)
        assert [seq for seq, _ in pending] == sorted(seq for seq, _ in pending)
        assert [msgspec.json.decode(raw, type=TransferRecord) for _, raw in pending] == [
            _record(1), _record(2), _record(3)]
        await store.mark_delivered([pending[0][0]], T0 + DAY)
        await store.mark_attempt([pending[1][0]])
        assert await store.outbox_status() == (2, _record(2).occurred_at)
        assert await _pending_ids(store) == [_record(2).id, _record(3).id]


@pytest.fixture(name="db", params=DATABASES)
async def fx_db(request: pytest.FixtureRequest, tmp_path: Path,
                ) -> AsyncIterator[tuple[BrokerStore, AsyncEngine]]:
    """A real backend and its engine: for what is at rest in its tables."""
    store, engine = await _open(request.param, tmp_path)
    assert engine is not None
    try:
        yield store, engine
    finally:
        await store.aclose()
        await dispose(engine)


async def _rows(engine: AsyncEngine) -> dict[str, tuple[bytes | None, bytes | None, bool]]:
    """Each transfer row at rest: {id: (record, protocol, delivered)}."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(TRANSFER.c.id, TRANSFER.c.record, TRANSFER.c.protocol,
                                          TRANSFER.c.delivered_at))).all()
    return {row.id: (None if row.record is None else bytes(row.record),
                     None if row.protocol is None else bytes(row.protocol),
                     row.delivered_at is not None) for row in rows}


def _parent_record(n: int) -> TransferRecord:
    """A delivered birth record naming the child and a parent: two IdNrs."""
    return msgspec.structs.replace(_record(n), concerned=(
        Concerned(idnr=CHILD, relation="self"), Concerned(idnr=OTHER, relation="concerned")))


class TestAtRest:
    """Decision 0031: no IdNr in plain in a transfer row, pending or delivered. Failures
    first."""

    async def test_a_record_moved_to_another_row_does_not_open(
            self, db: tuple[BrokerStore, AsyncEngine]) -> None:
        store, engine = db
        await store.commit_transfer(_record(1))
        await store.commit_transfer(_record(2))
        async with engine.begin() as conn:  # the AAD binds the transfer id: a moved one fails
            second = (await conn.execute(select(TRANSFER.c.record).where(
                TRANSFER.c.id == _record(2).id))).scalar_one()
            await conn.execute(TRANSFER.update().where(TRANSFER.c.id == _record(1).id)
                               .values(record=second))
        sent: list[bytes] = []

        async def send(records: list[bytes]) -> None:
            sent.extend(records)

        with pytest.raises(StoreError, match="does not open"):
            await store.pending_transfers(10)
        with pytest.raises(StoreError, match="does not open"):
            await store.deliver_pending(10, send)
        assert sent == []
        assert (await store.outbox_status())[0] == 2  # nothing was marked delivered

    async def test_a_delivered_row_made_pending_again_has_nothing_to_send(
            self, db: tuple[BrokerStore, AsyncEngine]) -> None:
        """Its record is gone: a StoreError (the outbox stops, its lag shows), not a crash."""
        store, engine = db
        await store.commit_transfer(_record(1))
        await store.mark_delivered([seq for seq, _ in await store.pending_transfers(1)], T0)
        async with engine.begin() as conn:
            await conn.execute(TRANSFER.update().values(delivered_at=None))
        with pytest.raises(StoreError, match="does not open"):
            await store.pending_transfers(10)

    async def test_a_record_sealed_under_another_key_does_not_open(
            self, db: tuple[BrokerStore, AsyncEngine]) -> None:
        store, engine = db
        await store.commit_transfer(_record(1))
        other_key = OutboxSeal(key=b"x" * 32, pseudonyms=PSEUDONYMS)
        other = (SqliteBrokerStore(engine, other_key) if type(store) is SqliteBrokerStore
                 else SqlAlchemyBrokerStore(engine, other_key))
        with pytest.raises(StoreError, match="wrong outbox key"):
            await other.pending_transfers(10)

    async def test_a_row_from_before_0004_that_is_no_record_is_a_store_error(
            self, db: tuple[BrokerStore, AsyncEngine]) -> None:
        store, engine = db
        async with engine.begin() as conn:
            await conn.execute(insert(TRANSFER).values(
                id="x", created_at=T0, record=b"not json", attempts=0))
        with pytest.raises(StoreError, match="before migration 0004"):
            await store.seal_legacy_transfers(10)

    async def test_a_pending_record_is_sealed_and_opens_only_for_delivery(
            self, db: tuple[BrokerStore, AsyncEngine]) -> None:
        store, engine = db
        assert await store.commit_transfers([PendingTransfer(_parent_record(1))]) == [True]
        assert await store.commit_transfer(_parent_record(2))
        rows = await _rows(engine)
        assert len(rows) == 2
        for sealed, protocol, delivered in rows.values():
            assert sealed is not None and protocol is not None and not delivered
            for idnr in (CHILD, OTHER):
                assert idnr.encode() not in sealed
                assert idnr.encode() not in protocol
            assert b"birth" not in sealed  # not even the proof type: all of it is sealed
        assert [msgspec.json.decode(raw, type=TransferRecord)
                for _, raw in await store.pending_transfers(10)] == [_parent_record(1),
                                                                     _parent_record(2)]

    async def test_delivery_keeps_only_the_protocol_entry(
            self, db: tuple[BrokerStore, AsyncEngine]) -> None:
        store, engine = db
        for n in (1, 2, 3):
            await store.commit_transfer(_parent_record(n))
        sent: list[bytes] = []

        async def send(records: list[bytes]) -> None:
            sent.extend(records)

        assert await store.deliver_pending(2, send) == 2  # the batch path
        pending = await store.pending_transfers(10)
        await store.mark_delivered([seq for seq, _ in pending], T0 + DAY)  # the plain marks
        assert [msgspec.json.decode(r, type=TransferRecord) for r in sent] == [
            _parent_record(1), _parent_record(2)]
        rows = await _rows(engine)
        assert len(rows) == 3
        for n in (1, 2, 3):
            record = _parent_record(n)
            sealed, protocol, delivered = rows[record.id]
            assert delivered and sealed is None and protocol is not None
            assert CHILD.encode() not in protocol and OTHER.encode() not in protocol
            entry = msgspec.json.decode(protocol, type=ProtocolEntry)
            assert (entry.id, entry.service, entry.register, entry.proof_type, entry.purpose,
                    entry.occurred_at, entry.outcome, entry.legal_basis, entry.consent_id,
                    entry.data_categories, entry.retention_until) == (
                record.id, record.service, record.register, record.proof_type,
                record.purpose, record.occurred_at, record.outcome.value, record.legal_basis,
                record.consent_id, record.data_categories, record.retention_until)
            assert entry.subject == PSEUDONYMS(CHILD)
            assert [(c.ref, c.relation) for c in entry.concerned] == [
                (PSEUDONYMS(CHILD), "self"), (PSEUDONYMS(OTHER), "concerned")]

    async def test_rows_from_before_0004_are_sealed_later(
            self, db: tuple[BrokerStore, AsyncEngine]) -> None:
        """The migration cannot seal (it has no keys): the broker does, oldest first - a
        delivered row to its protocol entry alone, a pending one to its sealed record."""
        store, engine = db
        plain = {n: msgspec.json.encode(_parent_record(n)) for n in (1, 2, 3)}
        async with engine.begin() as conn:
            await conn.execute(insert(TRANSFER), [
                {"id": _record(n).id, "created_at": _record(n).occurred_at, "record": raw,
                 "delivered_at": T0 + DAY if n < 3 else None, "attempts": 0}
                for n, raw in plain.items()])
        assert await store.seal_legacy_transfers(2) == 2
        assert await store.seal_legacy_transfers(2) == 1
        assert await store.seal_legacy_transfers(2) == 0
        rows = await _rows(engine)
        for n in (1, 2):
            sealed, protocol, delivered = rows[_record(n).id]
            assert delivered and sealed is None and protocol is not None
            assert msgspec.json.decode(protocol, type=ProtocolEntry).subject == PSEUDONYMS(CHILD)
        sealed, protocol, delivered = rows[_record(3).id]
        assert not delivered and sealed is not None and protocol is not None
        assert CHILD.encode() not in sealed
        assert await store.pending_transfers(10) == [(3, plain[3])]  # the same bytes


def _cutoffs(now: datetime, *, keep: timedelta = 30 * DAY) -> RetentionCutoffs:
    return RetentionCutoffs(now=now, protocol_before=now - keep, consents_before=now - keep,
                            previews_before=now - DAY, buckets_before=now.timestamp() - 3600)


class TestRetention:
    async def test_nothing_is_deleted_before_its_time(self, store: BrokerStore) -> None:
        await store.add_consent(_consent(valid_until=T0 + DAY))
        await store.commit_transfer(_record(1))
        await store.mark_delivered([seq for seq, _ in await store.pending_transfers(1)], T0)
        await store.remember_jti("svc", "j", T0 + MINUTE, T0)
        await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY)
        await store.add_preview(_preview("p"))
        await store.finish_preview("p", ["pending"], "refused", T0, None)
        deleted = await store.apply_retention(_cutoffs(T0 + MINUTE))
        assert deleted == dict.fromkeys(["broker_transfer", "broker_consent",
                                         "broker_idempotency", "broker_assertion_jti",
                                         "broker_preview", "broker_bucket"], 0)
        assert await store.consent("c1") is not None
        assert await store.preview("p") is not None
        assert (await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY))[0] == "in_flight"
        assert not await store.remember_jti("svc", "j", T0 + MINUTE, T0)

    async def test_each_table_loses_exactly_what_its_rule_no_longer_keeps(
            self, store: BrokerStore) -> None:
        now = T0 + 100 * DAY  # protocol and ended consents are kept 30 days here (_cutoffs)
        for n in (1, 2, 3, 4):
            await store.commit_transfer(_record(n))
        seqs = [seq for seq, _ in await store.pending_transfers(10)]
        await store.mark_delivered(seqs[:2], now - 31 * DAY)  # past the protocol's time
        await store.mark_delivered(seqs[2:3], now - 29 * DAY)  # within it; seqs[3] pending
        await store.add_consent(_consent("expired-long-ago", valid_until=now - 31 * DAY))
        await store.add_consent(_consent("revoked-long-ago", valid_until=now + DAY))
        await store.revoke_consent("revoked-long-ago", "citizen", now - 31 * DAY)
        await store.add_consent(_consent("expired-lately", valid_until=now - 29 * DAY))
        await store.add_consent(_consent("revoked-lately", valid_until=now + DAY))
        await store.revoke_consent("revoked-lately", "citizen", now - 29 * DAY)
        await store.add_consent(_consent("active", valid_until=now + DAY))
        await store.remember_jti("svc", "old", now - MINUTE, T0)
        await store.remember_jti("svc", "new", now + MINUTE, T0)
        await store.claim_idempotency("svc", "old", "h", T0, now - MINUTE)
        await store.claim_idempotency("svc", "new", "h", T0, now + MINUTE)
        await store.add_preview(_preview("ended-long-ago", ttl=MINUTE))
        await store.finish_preview("ended-long-ago", ["pending"], "expired", T0, None)
        await store.add_preview(_preview("ended-lately", created_at=now - 2 * MINUTE,
                                         ttl=MINUTE))
        await store.finish_preview("ended-lately", ["pending"], "refused", now, None)
        await store.add_preview(_preview("open-but-overdue", ttl=MINUTE))  # the desk ends it

        deleted = await store.apply_retention(_cutoffs(now))

        assert deleted == {"broker_transfer": 2, "broker_consent": 2, "broker_idempotency": 1,
                           "broker_assertion_jti": 1, "broker_preview": 1, "broker_bucket": 0}
        assert await _pending_ids(store) == [_record(4).id]  # an undelivered row stays
        assert (await store.outbox_status())[0] == 1
        assert {c.id for c in await store.consents_of("citizen")} == {
            "expired-lately", "revoked-lately", "active"}
        assert await store.remember_jti("svc", "old", now + MINUTE, now)  # forgotten
        assert not await store.remember_jti("svc", "new", now + MINUTE, now)
        assert (await store.claim_idempotency("svc", "new", "h", now, now + DAY))[0] == (
            "in_flight")
        assert await store.preview("ended-long-ago") is None
        assert await store.preview("ended-lately") is not None
        assert await store.preview("open-but-overdue") is not None
        assert await store.apply_retention(_cutoffs(now)) == dict.fromkeys(deleted, 0)

    async def test_protocol_rows_are_deleted_in_chunks(
            self, db: tuple[BrokerStore, AsyncEngine], monkeypatch: pytest.MonkeyPatch) -> None:
        store, engine = db
        monkeypatch.setattr("broker.store.alchemy.SHRED_CHUNK", 2)
        await store.commit_transfers([PendingTransfer(_record(n)) for n in range(1, 6)])
        await store.mark_delivered([seq for seq, _ in await store.pending_transfers(10)], T0)
        deleted = await store.apply_retention(_cutoffs(T0 + 100 * DAY))
        assert deleted["broker_transfer"] == 5
        assert await _rows(engine) == {}

    async def test_idle_rate_limit_buckets_are_forgotten(
            self, db: tuple[BrokerStore, AsyncEngine]) -> None:
        store, engine = db
        now = T0 + DAY
        async with engine.begin() as conn:
            await conn.execute(insert(BUCKET), [
                {"key": "service:old", "tokens": 1.0, "updated": now.timestamp() - 3601,
                 "allowed": True},
                {"key": "service:new", "tokens": 1.0, "updated": now.timestamp() - 3599,
                 "allowed": True}])
        assert (await store.apply_retention(_cutoffs(now)))["broker_bucket"] == 1
        async with engine.connect() as conn:
            keys = (await conn.execute(select(BUCKET.c.key))).scalars().all()
        assert keys == ["service:new"]


class TestPreviews:
    async def test_accepting_needs_a_pending_preview_in_time(self, store: BrokerStore) -> None:
        await store.add_preview(_preview("late"))
        await store.add_preview(_preview("twice"))
        assert not await store.accept_preview("late", T0 + 15 * MINUTE, T0 + DAY)
        assert not await store.accept_preview("unknown", T0, T0 + DAY)
        assert await store.accept_preview("twice", T0 + MINUTE, T0 + 20 * MINUTE)
        assert not await store.accept_preview("twice", T0 + MINUTE, T0 + 20 * MINUTE)
        accepted = await store.preview("twice")
        assert accepted is not None
        assert (accepted.state, accepted.decided_at, accepted.expires_at) == (
            "accepted", T0 + MINUTE, T0 + 20 * MINUTE)

    async def test_finishing_needs_one_of_the_given_states(self, store: BrokerStore) -> None:
        await store.add_preview(_preview("r1"))
        assert not await store.finish_preview("r1", ["accepted"], "refused", T0, _record(1))
        assert await _pending_ids(store) == []
        assert await store.finish_preview("r1", ["pending", "accepted"], "expired",
                                          T0 + MINUTE, _record(1))
        ended = await store.preview("r1")
        assert ended is not None
        assert (ended.state, ended.sealed, ended.decided_at) == ("expired", None, T0 + MINUTE)
        assert await _pending_ids(store) == [_record(1).id]
        assert not await store.finish_preview("r1", ["pending"], "refused", T0, None)

    async def test_collecting_needs_an_accepted_preview_in_time(self,
                                                                store: BrokerStore) -> None:
        await store.add_preview(_preview("pending"))
        await store.add_preview(_preview("late"))
        await store.accept_preview("late", T0, T0 + 5 * MINUTE)
        assert await store.collect_preview("pending", _record(1), None) == "gone"
        assert await store.collect_preview("late", _record(2, at=T0 + 5 * MINUTE),
                                           None) == "gone"
        assert await store.collect_preview("unknown", _record(3), None) == "gone"
        assert await _pending_ids(store) == []

    async def test_collecting_with_an_unusable_consent_writes_nothing(
            self, store: BrokerStore) -> None:
        await store.add_consent(_consent(max_uses=1))
        assert await store.commit_transfer(_record(1), _use())  # the one use is gone
        await store.add_preview(_preview("r1", consent_id="c1"))
        await store.accept_preview("r1", T0, T0 + DAY)
        assert await store.collect_preview("r1", _record(2), _use()) == "consent"
        row = await store.preview("r1")
        assert row is not None and (row.state, row.sealed) == ("accepted", b"sealed:r1")
        assert await _pending_ids(store) == [_record(1).id]

    async def test_collecting_releases_once_and_destroys_the_content(
            self, store: BrokerStore) -> None:
        await store.add_consent(_consent(max_uses=1))
        await store.add_preview(_preview("r1", consent_id="c1"))
        await store.accept_preview("r1", T0, T0 + DAY)
        assert await store.collect_preview("r1", _record(1), _use()) == "collected"
        assert await store.collect_preview("r1", _record(2), _use()) == "gone"
        row = await store.preview("r1")
        assert row is not None and (row.state, row.sealed) == ("collected", None)
        consent = await store.consent("c1")
        assert consent is not None and consent.uses == 1
        assert await _pending_ids(store) == [_record(1).id]

    async def test_holding_completes_the_idempotency_answer(self, store: BrokerStore) -> None:
        await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY)
        await store.add_preview(_preview("r1"), IdempotentAnswer(
            client_id="svc", key="k", sealed_response=b"202"))
        assert await store.claim_idempotency("svc", "k", "h", T0, T0 + DAY) == ("done", b"202")
        assert await store.preview("r1") == _preview("r1")
        with pytest.raises(DuplicateKeyError):
            await store.add_preview(_preview("r1"))

    async def test_a_citizens_previews_come_newest_first(self, store: BrokerStore) -> None:
        for n in range(3):
            await store.add_preview(_preview(f"r{n}", created_at=T0 + n * MINUTE))
        await store.add_preview(_preview("theirs", citizen_ref="other"))
        assert [p.id for p in await store.previews_of("citizen")] == ["r2", "r1", "r0"]
        assert [p.id for p in await store.previews_of("citizen", limit=2)] == ["r2", "r1"]

    async def test_due_previews_are_the_open_overdue_ones_most_overdue_first(
            self, store: BrokerStore) -> None:
        await store.add_preview(_preview("later", ttl=2 * MINUTE))
        await store.add_preview(_preview("first", ttl=MINUTE))
        await store.add_preview(_preview("accepted", ttl=MINUTE))
        await store.add_preview(_preview("ended", ttl=MINUTE))
        await store.add_preview(_preview("in-time", ttl=DAY))
        await store.accept_preview("accepted", T0, T0 + timedelta(seconds=90))
        await store.finish_preview("ended", ["pending"], "refused", T0, None)
        now = T0 + 3 * MINUTE
        assert [p.id for p in await store.due_previews(now, 10)] == ["first", "accepted",
                                                                     "later"]
        assert [p.id for p in await store.due_previews(now, 1)] == ["first"]

    async def test_purging_destroys_overdue_content_and_forgets_old_previews(
            self, store: BrokerStore) -> None:
        await store.add_preview(_preview("old", ttl=MINUTE))
        await store.add_preview(_preview("overdue", ttl=DAY))
        await store.add_preview(_preview("fresh", ttl=3 * DAY))
        now = T0 + 2 * DAY
        await store.purge_previews(now, forget_before=T0 + 2 * MINUTE)
        assert await store.preview("old") is None
        overdue, fresh = await store.preview("overdue"), await store.preview("fresh")
        assert overdue is not None and overdue.sealed is None
        assert fresh is not None and fresh.sealed == b"sealed:fresh"


# -- same errors: every operation of a store that fails is a StoreError -------------------------
_OPERATIONS: dict[str, Callable[[BrokerStore], Awaitable[Any]]] = {
    "remember_jti": lambda s: s.remember_jti("svc", "j", T0 + DAY, T0),
    "add_consent": lambda s: s.add_consent(_consent()),
    "consent": lambda s: s.consent("c1"),
    "consents_of": lambda s: s.consents_of("citizen"),
    "revoke_consent": lambda s: s.revoke_consent("c1", "citizen", T0),
    "claim_idempotency": lambda s: s.claim_idempotency("svc", "k", "h", T0, T0 + DAY),
    "release_idempotency": lambda s: s.release_idempotency("svc", "k"),
    "commit_transfer": lambda s: s.commit_transfer(_record(1), _use()),
    "commit_transfers": lambda s: s.commit_transfers([PendingTransfer(_record(1))]),
    "deliver_pending": lambda s: s.deliver_pending(10, _ignore),
    "pending_transfers": lambda s: s.pending_transfers(10),
    "mark_delivered": lambda s: s.mark_delivered([1], T0),
    "mark_attempt": lambda s: s.mark_attempt([1]),
    "outbox_status": lambda s: s.outbox_status(),
    "add_preview": lambda s: s.add_preview(_preview("r1")),
    "preview": lambda s: s.preview("r1"),
    "previews_of": lambda s: s.previews_of("citizen"),
    "accept_preview": lambda s: s.accept_preview("r1", T0, T0 + DAY),
    "finish_preview": lambda s: s.finish_preview("r1", ["pending"], "refused", T0, None),
    "collect_preview": lambda s: s.collect_preview("r1", _record(1), None),
    "due_previews": lambda s: s.due_previews(T0, 10),
    "purge_previews": lambda s: s.purge_previews(T0, T0),
    "apply_retention": lambda s: s.apply_retention(_cutoffs(T0)),
    "seal_legacy_transfers": lambda s: s.seal_legacy_transfers(10),
}


async def _ignore(records: list[bytes]) -> None:
    pass


@pytest.mark.parametrize("operation", list(_OPERATIONS))
@pytest.mark.parametrize("kind", DATABASES)
async def test_every_operation_of_a_failing_store_raises_store_error(
        kind: str, operation: str, tmp_path: Path) -> None:
    store, engine = await _open(kind, tmp_path)
    assert engine is not None
    try:
        async with engine.begin() as conn:  # the tables are gone: every statement fails
            for table in BROKER_TABLES:
                await conn.execute(text(f"DROP TABLE {table.name}"))
        with pytest.raises(StoreError) as caught:
            await _OPERATIONS[operation](store)
        assert caught.value.__cause__ is not None  # the driver's error, chained
    finally:
        await store.aclose()
        await dispose(engine)


# -- same rows: the two backends on a SQLite file -------------------------------------------------
async def _scenario(store: BrokerStore) -> None:
    """Every write operation once, at fixed times (the rows are compared byte for byte)."""
    await store.add_consent(_consent("c1", max_uses=1))
    await store.add_consent(_consent("c2", granted_at=T0 + MINUTE))
    await store.remember_jti("svc", "j1", T0 + DAY, T0)
    await store.remember_jti("svc", "j1", T0 + DAY, T0)
    await store.claim_idempotency("svc", "k1", "h", T0, T0 + DAY)
    await store.claim_idempotency("svc", "k2", "h", T0, T0 + DAY)
    await store.claim_idempotency("svc", "k3", "h", T0, T0 + DAY)
    await store.release_idempotency("svc", "k3")
    await store.commit_transfers([
        PendingTransfer(_record(1), _use("c1"), IdempotentAnswer(
            client_id="svc", key="k1", sealed_response=b"one")),
        PendingTransfer(_record(2), _use("c1")),
        PendingTransfer(_record(3, subject=OTHER))])
    await store.commit_transfer(_record(4))
    await store.add_preview(_preview("p1", consent_id="c2"), IdempotentAnswer(
        client_id="svc", key="k2", sealed_response=b"202"))
    await store.add_preview(_preview("p2", created_at=T0 + MINUTE))
    await store.accept_preview("p1", T0 + MINUTE, T0 + 30 * MINUTE)
    await store.collect_preview("p1", _record(5), _use("c2"))
    await store.finish_preview("p2", ["pending"], "refused", T0 + 2 * MINUTE, _record(6))
    pending = await store.pending_transfers(10)
    await store.mark_delivered([seq for seq, _ in pending[:2]], T0 + DAY)
    await store.mark_attempt([pending[2][0]])
    await store.revoke_consent("c2", "citizen", T0 + 3 * MINUTE)
    await store.purge_previews(T0 + 3 * MINUTE, T0 - DAY)
    await store.add_consent(_consent("c3", valid_until=T0 + MINUTE))
    await store.apply_retention(RetentionCutoffs(
        now=T0 + 2 * MINUTE, protocol_before=T0 + 2 * DAY, consents_before=T0 + 2 * MINUTE,
        previews_before=T0 + DAY, buckets_before=T0.timestamp()))


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every broker table's rows; a sealed record opened (its nonce is random)."""
    with sqlite3.connect(path) as conn:
        dump = {table.name: conn.execute(
                    f"SELECT * FROM {table.name} ORDER BY 1, 2").fetchall()  # noqa: S608 - our tables
                for table in BROKER_TABLES}
        dump["broker_transfer"] = [
            (seq, transfer_id, created_at,
             None if record is None else SEAL.open(transfer_id, record),
             protocol, delivered_at, attempts)
            for seq, transfer_id, created_at, record, protocol, delivered_at, attempts
            in conn.execute("SELECT seq, id, created_at, record, protocol, delivered_at, "
                            "attempts FROM broker_transfer ORDER BY seq")]
    return dump


async def test_both_sqlite_file_backends_leave_the_same_rows(tmp_path: Path) -> None:
    dumps = {}
    for kind in ("sqlite", "sqlalchemy"):
        store, engine = await _open(kind, tmp_path)
        assert engine is not None
        try:
            await _scenario(store)
        finally:
            await store.aclose()
            await dispose(engine)
        dumps[kind] = _dump(tmp_path / f"{kind}.db")
    assert dumps["sqlite"] == dumps["sqlalchemy"]
    rows = dumps["sqlite"]
    # record 2 was refused (c1 used up); the two delivered (1 and 3) are past the retention
    assert [row[1] for row in rows["broker_transfer"]] == [_record(n).id for n in (4, 5, 6)]
    assert rows["broker_transfer"][0][2] == sqlite_time(_record(4).occurred_at)
    assert [row[0] for row in rows["broker_consent"]] == ["c1", "c2"]  # c3 ended long ago
    assert [r[:3] for r in rows["broker_idempotency"]] == [("svc", "k1", "h"),
                                                            ("svc", "k2", "h")]


# -- the SQLite backend's own parts ----------------------------------------------------------------
class TestTheSqliteBackend:
    async def test_open_store_gives_a_file_the_writer_and_anything_else_sqlalchemy(
            self, tmp_path: Path) -> None:
        on_file = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
        in_memory = create_engine("sqlite+aiosqlite:///:memory:")
        postgres = create_engine("postgresql+asyncpg://u@127.0.0.1/x")
        try:
            assert type(open_store(on_file, SEAL)) is SqliteBrokerStore
            assert type(open_store(in_memory, SEAL)) is SqlAlchemyBrokerStore
            assert type(open_store(postgres, SEAL)) is SqlAlchemyBrokerStore
            with pytest.raises(ValueError, match="SQLite file"):
                SqliteBrokerStore(in_memory, SEAL)
        finally:
            for engine in (on_file, in_memory, postgres):
                await dispose(engine)

    async def test_the_outbox_read_carries_any_bytes_and_falls_back_to_the_plain_query(
            self, tmp_path: Path) -> None:
        """Sealed records are binary (NUL, the old separator RS, commas, bytes no UTF-8 holds):
        the one-row read carries them as hex, byte for byte. An id holding the id separator
        (never in a UUID, but the fallback must hold) does not split into one id per seq: the
        plain query answers instead, with the same rows."""
        path = tmp_path / "sqlite.db"
        store, engine = await _open("sqlite", tmp_path)  # the schema
        assert engine is not None
        await store.aclose()
        await dispose(engine)
        odd = bytes(range(256))
        rows = [(1, "a", b"\x00\x1e,"), (2, "b", odd), (3, "c", b"")]
        with sqlite3.connect(path) as conn:
            conn.executemany("INSERT INTO broker_transfer (id, created_at, record, attempts) "
                             "VALUES (?, ?, ?, 0)",
                             [(i, sqlite_time(T0), r) for _, i, r in rows])
            assert read_pending(conn, 10) == rows
            assert read_pending(conn, 2) == rows[:2]
            conn.execute("UPDATE broker_transfer SET id = 'x,y' WHERE seq = 2")
            assert read_pending(conn, 10) == [rows[0], (2, "x,y", odd), rows[2]]
            conn.execute("UPDATE broker_transfer SET delivered_at = ?", (sqlite_time(T0),))
            assert read_pending(conn, 10) == []

    async def test_rows_written_by_the_writer_read_back_through_sqlalchemy(
            self, tmp_path: Path) -> None:
        store, engine = await _open("sqlite", tmp_path)
        assert engine is not None
        try:
            record = _record(7)
            assert await store.commit_transfer(record)
            async with engine.connect() as conn:
                row = (await conn.execute(select(TRANSFER.c.id, TRANSFER.c.created_at))).one()
            assert row.id == record.id
            assert row.created_at.replace(tzinfo=UTC) == record.occurred_at
        finally:
            await store.aclose()
            await dispose(engine)


# -- the writer (einmal/store.py: SqliteWriter, GroupCommit) ---------------------------------------
class TestOwnerOnlyFiles:
    """einmal/store.py: create_engine makes a SQLite file and its folders owner-only."""

    async def test_a_new_store_is_0600_in_0700_folders_and_so_are_its_wal_and_shm(
            self, tmp_path: Path) -> None:
        path = tmp_path / "new" / "deeper" / "broker.db"
        store, engine = await _open_at(path)
        try:
            assert await store.commit_transfer(_record(1))  # the writer's connection too
            files = {p.name: _mode(p) for p in path.parent.iterdir()}
            assert files == {"broker.db": 0o600, "broker.db-wal": 0o600,
                             "broker.db-shm": 0o600}
            assert _mode(path.parent) == _mode(path.parent.parent) == 0o700
        finally:
            await store.aclose()
            await dispose(engine)

    async def test_an_existing_store_of_ours_loses_group_and_other_permissions(
            self, tmp_path: Path) -> None:
        path = tmp_path / "broker.db"
        store, engine = await _open_at(path)
        await store.commit_transfer(_record(1))
        await store.aclose()
        await dispose(engine)
        path.chmod(0o644)  # as an older version left it
        tmp_path.chmod(0o755)
        store, engine = await _open_at(path)
        try:
            assert _mode(path) == 0o600
            assert _mode(tmp_path) == 0o755  # a folder that exists is not ours to change
            assert await _pending_ids(store) == [_record(1).id]
        finally:
            await store.aclose()
            await dispose(engine)


    def test_the_data_dir_is_tightened_but_a_shared_sticky_folder_never(
            self, tmp_path: Path) -> None:
        """einmal.keys.private_dir as the server calls it for its data and keys dirs."""
        data_dir, shared = tmp_path / "data", tmp_path / "shared"
        data_dir.mkdir(mode=0o755)
        shared.mkdir()
        data_dir.chmod(0o755)
        shared.chmod(0o1777)  # like /tmp
        private_dir(data_dir)
        private_dir(shared)
        private_dir(data_dir / "keys")
        assert _mode(data_dir) == _mode(data_dir / "keys") == 0o700
        assert _mode(shared) == 0o1777


async def _open_at(path: Path) -> tuple[BrokerStore, AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    store = SqliteBrokerStore(engine, SEAL)
    await store.create_schema()
    return store, engine


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestTheWriter:
    def test_only_a_sqlite_file_gets_a_writer(self) -> None:
        assert sqlite_writer(create_engine("sqlite+aiosqlite:///:memory:")) is None
        assert sqlite_writer(create_engine("postgresql+asyncpg://u@127.0.0.1/x")) is None

    async def test_an_error_rolls_the_whole_transaction_back(self, tmp_path: Path) -> None:
        store, engine = await _open("sqlite", tmp_path)
        assert engine is not None
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
            assert await store.commit_transfer(_record(8))  # the writer is usable afterwards
        finally:
            await store.aclose()
            await dispose(engine)

    async def test_a_writer_waits_off_the_loop_for_another_process_holding_the_write_lock(
            self, tmp_path: Path) -> None:
        store, engine = await _open("sqlite", tmp_path)
        assert engine is not None
        other = sqlite3.connect(tmp_path / "sqlite.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # e.g. an `einmal` command writing meanwhile
            commit = asyncio.ensure_future(store.commit_transfer(_record(10)))
            ticks = 0
            while ticks < 20:  # the event loop keeps running while the writer waits
                await asyncio.sleep(0.01)
                ticks += 1
            assert not commit.done()
            other.execute("COMMIT")
            assert await asyncio.wait_for(commit, 10)
            assert await _pending_ids(store) == [_record(10).id]
        finally:
            other.close()
            await store.aclose()
            await dispose(engine)

    async def test_a_cancelled_caller_does_not_let_the_next_transaction_overlap_its_commit(
            self, tmp_path: Path) -> None:
        store, engine = await _open("sqlite", tmp_path)
        assert engine is not None
        try:
            first = asyncio.ensure_future(store.commit_transfer(_record(11)))
            await asyncio.sleep(0)  # queued; the group commit is under way
            first.cancel()
            assert await store.commit_transfer(_record(12))
            # the cancelled caller's record may or may not have been committed - never half
            assert _record(12).id in await _pending_ids(store)
        finally:
            await store.aclose()
            await dispose(engine)
