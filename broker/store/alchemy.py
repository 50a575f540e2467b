"""The broker's store in SQLAlchemy Core: every operation, on PostgreSQL or SQLite.

On PostgreSQL each transfer record commits in its own transaction (commits run side by side)
and the outbox batch is locked ``FOR UPDATE SKIP LOCKED`` while it is sent, so several broker
processes share the outbox. On SQLite (one writer at a time) concurrent commits share one
transaction (``einmal.store.GroupCommit``) and no lock is held during a send.

``SqliteBrokerStore`` (broker/store/sqlite.py) is this store with the hot write transactions
moved to plain SQL; the rows <-> values mapping below serves both, and so does the outbox's
sealing (``OutboxSeal``): a record is sealed in the encode step of its commit and opened only
to be delivered (broker/protocol.py).
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.protocol import OutboxSeal, SealError
from broker.store.base import (
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
from broker.tables import (
    BROKER_TABLES,
    BUCKET,
    CONSENT,
    IDEMPOTENCY,
    JTI,
    PREVIEW,
    SUBJECT,
    TRANSFER,
    as_utc,
)
from einmal.domain.transfer import TransferRecord
from einmal.migrate import ensure_schema
from einmal.store import DuplicateKeyError, GroupCommit, StoreError, transaction

__all__ = ["GROUP_COMMIT_MAX", "SHRED_CHUNK", "SOURCE_TOKENS", "SqlAlchemyBrokerStore",
           "consent_from_row", "open_record", "preview_from_row"]

log = structlog.get_logger()

#: Most records in one group commit.
GROUP_COMMIT_MAX = 256
#: Most transfer rows deleted per transaction (a short hold of SQLite's one write lock).
SHRED_CHUNK = 5000
_INSERT_TRANSFER = insert(TRANSFER)  # built once; rows given per call
_INSERT_SUBJECT = insert(SUBJECT)
#: the client id under which the cockpit's source request token ids are remembered (the
#: assertion replay table; a service id cannot hold a colon: no collision)
SOURCE_TOKENS = "dsc:cockpit"
_OPEN = ("pending", "accepted")
_decode_record = msgspec.json.Decoder(TransferRecord).decode


def consent_from_row(m: Mapping[Any, Any]) -> StoredConsent:
    return StoredConsent(
        id=m["id"], citizen_ref=m["citizen_ref"], subject_ref=m["subject_ref"],
        subject_masked=m["subject_masked"], service_id=m["service_id"],
        proof_types=tuple(m["proof_types"].split(",")), purpose=m["purpose"],
        granted_at=as_utc(m["granted_at"]), valid_until=as_utc(m["valid_until"]),
        max_uses=m["max_uses"], uses=m["uses"],
        revoked_at=as_utc(m["revoked_at"]) if m["revoked_at"] else None,
        preview=bool(m["preview"]))


def _consent_row(consent: StoredConsent) -> dict[str, Any]:
    values = msgspec.structs.asdict(consent)
    values["proof_types"] = ",".join(sorted(consent.proof_types))
    return values


def preview_from_row(m: Mapping[Any, Any]) -> StoredPreview:
    return StoredPreview(
        id=m["id"], client_id=m["client_id"], citizen_ref=m["citizen_ref"],
        subject_masked=m["subject_masked"], proof_type=m["proof_type"], purpose=m["purpose"],
        consent_id=m["consent_id"], state=m["state"], created_at=as_utc(m["created_at"]),
        expires_at=as_utc(m["expires_at"]),
        decided_at=as_utc(m["decided_at"]) if m["decided_at"] else None,
        sealed=bytes(m["sealed"]) if m["sealed"] is not None else None)


def _transfer_rows(seal: OutboxSeal, record: TransferRecord,
                   ) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The transfer row of ``record`` and its protocol subject rows."""
    sealed = seal.seal_transfer(record)
    return ({"id": record.id, "created_at": record.occurred_at, "record": sealed.sealed,
             "protocol": sealed.protocol},
            [{"ref": ref, "transfer_id": record.id, "relation": relation}
             for ref, relation in sealed.subjects])


async def _insert_transfer(conn: AsyncConnection, seal: OutboxSeal,
                           record: TransferRecord) -> None:
    row, subjects = _transfer_rows(seal, record)
    await conn.execute(_INSERT_TRANSFER, [row])
    await conn.execute(_INSERT_SUBJECT, subjects)


def open_record(seal: OutboxSeal, transfer_id: str, sealed: bytes | None) -> bytes:
    """A pending record's JSON, for delivery; one that does not open (or is gone) is a
    ``StoreError`` (the outbox stops there and the readiness check reports its lag: fail
    closed)."""
    try:
        return seal.open(transfer_id, bytes(sealed or b""))
    except SealError as exc:
        log.error("outbox.record_unreadable", transfer_id=transfer_id)
        msg = f"a pending transfer record does not open ({transfer_id}): wrong outbox key?"
        raise StoreError(msg) from exc


def _usable(use: ConsentUse) -> ColumnElement[bool]:
    """The consent of ``use`` can give one more use (= sqlite.py: _USE_CONSENT)."""
    return and_(CONSENT.c.id == use.consent_id, CONSENT.c.revoked_at.is_(None),
                CONSENT.c.valid_until > use.now,
                or_(CONSENT.c.max_uses.is_(None), CONSENT.c.uses < CONSENT.c.max_uses))


class _ConsentGone(Exception):
    """Roll the collection back: its consent is no longer usable."""


class SqlAlchemyBrokerStore:
    """``BrokerStore`` (broker/store/base.py) in SQLAlchemy Core."""

    def __init__(self, engine: AsyncEngine, seal: OutboxSeal) -> None:
        self._engine = engine
        self._seal = seal
        # Concurrent commits share one transaction on every database: on SQLite (one writer)
        # one fsync for all; on PostgreSQL one transaction's round trips and one WAL flush
        # instead of one each - on PostgreSQL (bench cpg1/cpg2, 64 connections, interleaved)
        # 633-643 -> 990-1,122 proofs/s with one worker, 710-739 -> 1,060-1,115 with two;
        # broker+cockpit 1,750-2,215 -> 790-936 CPU-us per proof (decision 0042). Row
        # locks are taken in one order in every batch (commit_transfers), so two processes'
        # batches cannot deadlock.
        self._group: GroupCommit[PendingTransfer, bool] = GroupCommit(
            self.commit_transfers, max_batch=GROUP_COMMIT_MAX)
        self._lock_outbox = engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def _tx(self, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        async with transaction(self._engine, write=write) as conn:
            yield conn

    async def create_schema(self) -> None:
        await ensure_schema(self._engine, "broker", [t.name for t in BROKER_TABLES])

    async def aclose(self) -> None:
        await self._group.aclose()

    # -- client assertion replay cache -------------------------------------------------------
    async def remember_jti(self, client_id: str, jti: str, expires_at: datetime,
                           now: datetime) -> bool:
        try:
            async with self._tx() as conn:
                await conn.execute(delete(JTI).where(JTI.c.expires_at < now))
                await conn.execute(insert(JTI).values(client_id=client_id, jti=jti,
                                                      expires_at=expires_at))
        except DuplicateKeyError:
            return False
        return True

    # -- consents ------------------------------------------------------------------------------
    async def add_consent(self, consent: StoredConsent) -> None:
        async with self._tx() as conn:
            await conn.execute(insert(CONSENT).values(**_consent_row(consent)))

    async def consent(self, consent_id: str) -> StoredConsent | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(CONSENT).where(CONSENT.c.id == consent_id))).first()
        return consent_from_row(row._mapping) if row else None

    async def consents_of(self, citizen_ref: str) -> list[StoredConsent]:
        query = (select(CONSENT).where(CONSENT.c.citizen_ref == citizen_ref)
                 .order_by(CONSENT.c.granted_at.desc()))
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [consent_from_row(row._mapping) for row in rows]

    async def revoke_consent(self, consent_id: str, citizen_ref: str, now: datetime,
                             ) -> StoredConsent | None:
        mine = (CONSENT.c.id == consent_id) & (CONSENT.c.citizen_ref == citizen_ref)
        async with self._tx() as conn:
            await conn.execute(update(CONSENT).where(mine, CONSENT.c.revoked_at.is_(None))
                               .values(revoked_at=now))
            row = (await conn.execute(select(CONSENT).where(mine))).first()
        return consent_from_row(row._mapping) if row else None

    # -- Idempotency-Key -----------------------------------------------------------------------
    async def claim_idempotency(self, client_id: str, key: str, request_hash: str,
                                now: datetime, expires_at: datetime,
                                ) -> tuple[ClaimState, bytes | None]:
        async with self._tx() as conn:
            await conn.execute(delete(IDEMPOTENCY).where(IDEMPOTENCY.c.expires_at < now))
            row = (await conn.execute(select(IDEMPOTENCY).where(
                IDEMPOTENCY.c.client_id == client_id, IDEMPOTENCY.c.key == key))).first()
            if row is None:
                try:
                    async with conn.begin_nested():
                        await conn.execute(insert(IDEMPOTENCY).values(
                            client_id=client_id, key=key, request_hash=request_hash,
                            state="in_flight", expires_at=expires_at))
                except IntegrityError:  # claimed by a concurrent request (another process)
                    return "in_flight", None
                return "claimed", None
        m = row._mapping
        if m["request_hash"] != request_hash:
            return "mismatch", None
        return ("done", bytes(m["response"])) if m["state"] == "done" else ("in_flight", None)

    async def release_idempotency(self, client_id: str, key: str) -> None:
        async with self._tx() as conn:
            await conn.execute(delete(IDEMPOTENCY).where(IDEMPOTENCY.c.client_id == client_id,
                                                         IDEMPOTENCY.c.key == key,
                                                         IDEMPOTENCY.c.state == "in_flight"))

    @staticmethod
    async def _answer(conn: AsyncConnection, answer: IdempotentAnswer) -> None:
        await conn.execute(update(IDEMPOTENCY).where(
            IDEMPOTENCY.c.client_id == answer.client_id, IDEMPOTENCY.c.key == answer.key)
            .values(state="done", response=answer.sealed_response))

    # -- transfer records ----------------------------------------------------------------------
    def commit_transfer(self, record: TransferRecord, use: ConsentUse | None = None,
                        answer: IdempotentAnswer | None = None) -> Awaitable[bool]:
        return self._group.submit(PendingTransfer(record, use, answer))

    async def commit_transfers(self, items: Sequence[PendingTransfer]) -> list[bool]:
        rows: list[dict[str, Any]] = []
        subjects: list[dict[str, str]] = []
        async with self._tx() as conn:
            # The rows other transactions may lock too - consents, then Idempotency-Key
            # claims - are updated in one order (by key; items of one consent in their own
            # order): two processes' batches on PostgreSQL wait for each other, never deadlock.
            results = [True] * len(items)
            uses = sorted(((item.use.consent_id, i, item.use) for i, item in enumerate(items)
                           if item.use is not None), key=lambda u: (u[0], u[1]))
            for _, i, use in uses:
                results[i] = await self._use_consent(conn, use)
            answers = sorted((item.answer for item, ok in zip(items, results, strict=True)
                              if ok and item.answer is not None),
                             key=lambda a: (a.client_id, a.key))
            for answer in answers:
                await self._answer(conn, answer)
            for item, ok in zip(items, results, strict=True):
                if ok:
                    row, refs = _transfer_rows(self._seal, item.record)
                    rows.append(row)
                    subjects.extend(refs)
            if rows:
                # One executemany for the batch (one driver round trip instead of one per
                # record: docs/benchmarks.md), inside the same transaction as the consent uses.
                await conn.execute(_INSERT_TRANSFER, rows)
                await conn.execute(_INSERT_SUBJECT, subjects)
        return results

    @staticmethod
    async def _use_consent(conn: AsyncConnection, use: ConsentUse) -> bool:
        result = await conn.execute(update(CONSENT).where(_usable(use))
                                    .values(uses=CONSENT.c.uses + 1))
        return result.rowcount == 1

    # -- the outbox ----------------------------------------------------------------------------
    async def deliver_pending(self, limit: int,
                              send: Callable[[list[bytes]], Awaitable[None]]) -> int:
        if self._lock_outbox:
            return await self._deliver_locked(limit, send)
        rows = await self.pending_transfers(limit)
        if not rows:
            return 0
        seqs = [seq for seq, _ in rows]
        try:
            await send([record for _, record in rows])
        except Exception:
            await self.mark_attempt(seqs)
            raise
        await self.mark_delivered(seqs, datetime.now(UTC))
        return len(rows)

    async def _deliver_locked(self, limit: int,
                              send: Callable[[list[bytes]], Awaitable[None]]) -> int:
        """PostgreSQL: the batch stays locked (``FOR UPDATE SKIP LOCKED``) while it is sent, so
        another broker process takes the next records instead; a failed send rolls back."""
        async with self._tx() as conn:
            rows = (await conn.execute(
                self._pending(limit).with_for_update(skip_locked=True))).all()
            if rows:
                await send([open_record(self._seal, row.id, row.record) for row in rows])
                await conn.execute(update(TRANSFER)
                                   .where(TRANSFER.c.seq.in_([row.seq for row in rows]))
                                   .values(delivered_at=datetime.now(UTC), record=None))
        return len(rows)

    @staticmethod
    def _pending(limit: int) -> Select[int, str, bytes]:
        return (select(TRANSFER.c.seq, TRANSFER.c.id, TRANSFER.c.record)
                .where(TRANSFER.c.delivered_at.is_(None))
                .order_by(TRANSFER.c.seq).limit(limit))

    async def pending_transfers(self, limit: int) -> list[tuple[int, bytes]]:
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(self._pending(limit))).all()
        return [(row.seq, open_record(self._seal, row.id, row.record)) for row in rows]

    async def mark_delivered(self, seqs: Sequence[int], now: datetime) -> None:
        async with self._tx() as conn:
            await conn.execute(update(TRANSFER).where(TRANSFER.c.seq.in_(seqs))
                               .values(delivered_at=now, record=None))

    async def mark_attempt(self, seqs: Sequence[int]) -> None:
        async with self._tx() as conn:
            await conn.execute(update(TRANSFER).where(TRANSFER.c.seq.in_(seqs))
                               .values(attempts=TRANSFER.c.attempts + 1))

    async def outbox_status(self) -> tuple[int, datetime | None]:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(func.count(), func.min(TRANSFER.c.created_at))
                                      .where(TRANSFER.c.delivered_at.is_(None)))).one()
        return int(row[0]), as_utc(row[1]) if row[1] else None

    # -- the source interface (broker/source.py) ----------------------------------------------
    def _protocol_of(self, ref: str, since: datetime) -> Select[str, str, bytes]:
        return (select(SUBJECT.c.relation, TRANSFER.c.id, TRANSFER.c.protocol)
                .join(TRANSFER, TRANSFER.c.id == SUBJECT.c.transfer_id)
                .where(SUBJECT.c.ref == ref, TRANSFER.c.created_at >= since,
                       TRANSFER.c.protocol.is_not(None)))

    async def protocol_of(self, ref: str, *, since: datetime, limit: int = 1000,
                          ) -> list[ProtocolHit]:
        query = (self._protocol_of(ref, since)
                 .order_by(TRANSFER.c.created_at.desc(), TRANSFER.c.id).limit(limit))
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [ProtocolHit(relation=row.relation, protocol=bytes(row.protocol))
                for row in rows]

    async def protocol_entry_of(self, ref: str, transfer_id: str, *, since: datetime,
                                ) -> ProtocolHit | None:
        query = self._protocol_of(ref, since).where(TRANSFER.c.id == transfer_id)
        async with self._tx(write=False) as conn:
            row = (await conn.execute(query)).first()
        return (None if row is None
                else ProtocolHit(relation=row.relation, protocol=bytes(row.protocol)))

    async def use_source_token(self, token_id: str, expires_at: datetime,
                               now: datetime) -> bool:
        return await self.remember_jti(SOURCE_TOKENS, token_id, expires_at, now)

    # -- previews ------------------------------------------------------------------------------
    async def add_preview(self, preview: StoredPreview,
                          answer: IdempotentAnswer | None = None) -> None:
        async with self._tx() as conn:
            await conn.execute(insert(PREVIEW).values(**msgspec.structs.asdict(preview)))
            if answer is not None:
                await self._answer(conn, answer)

    async def preview(self, request_id: str) -> StoredPreview | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(PREVIEW).where(PREVIEW.c.id == request_id))).first()
        return preview_from_row(row._mapping) if row else None

    async def previews_of(self, citizen_ref: str, limit: int = 200) -> list[StoredPreview]:
        query = (select(PREVIEW).where(PREVIEW.c.citizen_ref == citizen_ref)
                 .order_by(PREVIEW.c.created_at.desc()).limit(limit))
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [preview_from_row(row._mapping) for row in rows]

    async def accept_preview(self, request_id: str, now: datetime, expires_at: datetime,
                             ) -> bool:
        async with self._tx() as conn:
            result = await conn.execute(
                update(PREVIEW).where(PREVIEW.c.id == request_id, PREVIEW.c.state == "pending",
                                      PREVIEW.c.expires_at > now)
                .values(state="accepted", decided_at=now, expires_at=expires_at))
        return result.rowcount == 1

    async def finish_preview(self, request_id: str, from_states: Sequence[str], state: str,
                             now: datetime, record: TransferRecord | None) -> bool:
        async with self._tx() as conn:
            result = await conn.execute(
                update(PREVIEW).where(PREVIEW.c.id == request_id,
                                      PREVIEW.c.state.in_(list(from_states)))
                .values(state=state, sealed=None, decided_at=now))
            if result.rowcount != 1:
                return False
            if record is not None:
                await _insert_transfer(conn, self._seal, record)
        return True

    async def collect_preview(self, request_id: str, record: TransferRecord,
                              use: ConsentUse | None) -> CollectResult:
        try:
            async with self._tx() as conn:
                result = await conn.execute(
                    update(PREVIEW).where(PREVIEW.c.id == request_id,
                                          PREVIEW.c.state == "accepted",
                                          PREVIEW.c.expires_at > record.occurred_at)
                    .values(state="collected", sealed=None))
                if result.rowcount != 1:
                    return "gone"
                if use is not None and not await self._use_consent(conn, use):
                    raise _ConsentGone
                await _insert_transfer(conn, self._seal, record)
        except _ConsentGone:
            return "consent"
        return "collected"

    async def due_previews(self, now: datetime, limit: int) -> list[StoredPreview]:
        query = (select(PREVIEW).where(PREVIEW.c.state.in_(_OPEN), PREVIEW.c.expires_at <= now)
                 .order_by(PREVIEW.c.expires_at).limit(limit))
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [preview_from_row(row._mapping) for row in rows]

    async def purge_previews(self, now: datetime, forget_before: datetime) -> None:
        async with self._tx() as conn:
            await conn.execute(update(PREVIEW).where(PREVIEW.c.expires_at <= now,
                                                     PREVIEW.c.sealed.is_not(None))
                               .values(sealed=None))
            await conn.execute(delete(PREVIEW).where(PREVIEW.c.expires_at < forget_before))

    # -- retention ---------------------------------------------------------------------------
    async def apply_retention(self, cutoffs: RetentionCutoffs) -> dict[str, int]:
        deleted = {TRANSFER.name: await self._shred_protocol(cutoffs.protocol_before)}
        ended = or_(CONSENT.c.revoked_at < cutoffs.consents_before,
                    CONSENT.c.valid_until < cutoffs.consents_before)
        for table, statement in (
                (CONSENT, delete(CONSENT).where(ended)),
                (IDEMPOTENCY, delete(IDEMPOTENCY).where(IDEMPOTENCY.c.expires_at < cutoffs.now)),
                (JTI, delete(JTI).where(JTI.c.expires_at < cutoffs.now)),
                (PREVIEW, delete(PREVIEW).where(PREVIEW.c.state.not_in(_OPEN),
                                                PREVIEW.c.expires_at < cutoffs.previews_before)),
                (BUCKET, delete(BUCKET).where(BUCKET.c.updated < cutoffs.buckets_before))):
            deleted[table.name] = await self._delete(statement)
        return deleted

    async def _delete(self, statement: Delete) -> int:
        async with self._tx() as conn:
            return int((await conn.execute(statement)).rowcount)

    async def _shred_protocol(self, before: datetime) -> int:
        """Delivered rows delivered before ``before``, oldest first, in chunks (the
        ``delivered_at`` index finds them; a pending row is never deleted)."""
        chunk = (select(TRANSFER.c.seq, TRANSFER.c.id).where(TRANSFER.c.delivered_at < before)
                 .order_by(TRANSFER.c.delivered_at).limit(SHRED_CHUNK))
        total = 0
        while True:
            async with self._tx() as conn:  # the entries and their subject rows together
                rows = (await conn.execute(chunk)).all()
                if rows:
                    await conn.execute(delete(SUBJECT).where(
                        SUBJECT.c.transfer_id.in_([row.id for row in rows])))
                    await conn.execute(delete(TRANSFER).where(
                        TRANSFER.c.seq.in_([row.seq for row in rows])))
            total += len(rows)
            if len(rows) < SHRED_CHUNK:
                return total

    async def seal_legacy_transfers(self, limit: int) -> int:
        query = (select(TRANSFER.c.seq, TRANSFER.c.id, TRANSFER.c.record,
                        TRANSFER.c.delivered_at)
                 .where(TRANSFER.c.protocol.is_(None)).order_by(TRANSFER.c.seq).limit(limit))
        if self._lock_outbox:  # several broker processes may start at once
            query = query.with_for_update(skip_locked=True)
        async with self._tx() as conn:
            rows = (await conn.execute(query)).all()
            for row in rows:
                plain = bytes(row.record)
                try:
                    record = _decode_record(plain)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    msg = f"a transfer row from before migration 0004 is no record ({row.id})"
                    raise StoreError(msg) from exc
                protocol, refs = self._seal.entry(record)
                sealed = None if row.delivered_at else self._seal.seal_json(row.id, plain)
                await conn.execute(update(TRANSFER).where(TRANSFER.c.seq == row.seq,
                                                          TRANSFER.c.protocol.is_(None))
                                   .values(record=sealed, protocol=protocol))
                await conn.execute(_INSERT_SUBJECT, [
                    {"ref": ref, "transfer_id": row.id, "relation": relation}
                    for ref, relation in refs])
        return len(rows)
