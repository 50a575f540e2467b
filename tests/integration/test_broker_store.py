"""The broker's store: one conformance suite for every backend of ``BrokerStore``.

Each test runs against the SQLite backend (plain SQL on the writer, decision 0024) and the
SQLAlchemy backend, both on a SQLite file; the SQLAlchemy backend also on PostgreSQL when
EINMAL_TEST_DATABASE_URL is set; and the in-memory fake the unit tests use
(tests/unit/broker/fakes.py), so the fake answers as the real stores do. Same answers, same
errors for every operation; the two SQLite-file backends must also leave the same rows.
Below them: the SQLite backend's own parts and the writer (einmal/store.py: SqliteWriter).
"""

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.store import (
    BrokerStore,
    ConsentUse,
    IdempotentAnswer,
    PendingTransfer,
    SqlAlchemyBrokerStore,
    SqliteBrokerStore,
    StoredConsent,
    StoredPreview,
    open_store,
)
from broker.store.sqlite import read_pending
from broker.tables import BROKER_TABLES, TRANSFER
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
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


async def _open(kind: str, tmp_path: Path) -> tuple[BrokerStore, AsyncEngine | None]:
    if kind == "fake":
        return FakeBrokerStore(), None
    if kind == "postgresql":
        assert TEST_DATABASE_URL is not None
        reset_database(TEST_DATABASE_URL)
        engine = create_engine(TEST_DATABASE_URL.replace("postgresql://",
                                                         "postgresql+asyncpg://", 1))
    else:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / f'{kind}.db'}")
    store = SqliteBrokerStore(engine) if kind == "sqlite" else SqlAlchemyBrokerStore(engine)
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


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {table.name: conn.execute(
                    f"SELECT * FROM {table.name} ORDER BY 1, 2").fetchall()  # noqa: S608 - our tables
                for table in BROKER_TABLES}


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
    assert len(rows["broker_transfer"]) == 5  # record 2 was refused (c1 used up)
    assert rows["broker_transfer"][0][2] == sqlite_time(_record(1).occurred_at)
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
            assert type(open_store(on_file)) is SqliteBrokerStore
            assert type(open_store(in_memory)) is SqlAlchemyBrokerStore
            assert type(open_store(postgres)) is SqlAlchemyBrokerStore
            with pytest.raises(ValueError, match="SQLite file"):
                SqliteBrokerStore(in_memory)
        finally:
            for engine in (on_file, in_memory, postgres):
                await dispose(engine)

    async def test_the_outbox_read_falls_back_to_the_plain_query(self, tmp_path: Path) -> None:
        """A record holding the separator (never in JSON, but the fallback must hold) does not
        split into one record per seq: the plain query answers instead, with the same rows."""
        path = tmp_path / "sqlite.db"
        store, engine = await _open("sqlite", tmp_path)  # the schema
        assert engine is not None
        await store.aclose()
        await dispose(engine)
        odd = b'{"id":"x\x1e"}'
        with sqlite3.connect(path) as conn:
            conn.executemany("INSERT INTO broker_transfer (id, created_at, record, attempts) "
                             "VALUES (?, ?, ?, 0)", [("a", sqlite_time(T0), b'{"id":"a"}'),
                                                     ("b", sqlite_time(T0), odd),
                                                     ("c", sqlite_time(T0), b'{"id":"c"}')])
            assert read_pending(conn, 10) == [(1, b'{"id":"a"}'), (2, odd), (3, b'{"id":"c"}')]
            assert read_pending(conn, 2) == [(1, b'{"id":"a"}'), (2, odd)]
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
