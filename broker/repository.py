"""Broker persistence: consents, transfer records (outbox) and the assertion replay cache.

Translates every SQLAlchemy error into ``StoreError`` (``raise ... from exc``).
"""

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from broker.tables import (
    BROKER_TABLES,
    AssertionJtiRow,
    ConsentRow,
    IdempotencyRow,
    PreviewRow,
    TransferRow,
    as_utc,
)
from einmal.domain.transfer import TransferRecord
from einmal.store import StoreError, insert_rows, sqlite_time, sqlite_writer, writer

__all__ = ["BrokerRepository", "ConsentUse", "IdempotentAnswer", "StoredConsent",
           "StoredPreview"]

_consent = ConsentRow.__table__  # type: ignore[attr-defined]
_transfer = TransferRow.__table__  # type: ignore[attr-defined]
_jti = AssertionJtiRow.__table__  # type: ignore[attr-defined]
_idem = IdempotencyRow.__table__  # type: ignore[attr-defined]
_preview = PreviewRow.__table__  # type: ignore[attr-defined]
_encode = msgspec.json.Encoder().encode
GROUP_COMMIT_MAX = 256
_INSERT_TRANSFER = insert(_transfer)  # built once; rows given per call
_Pending = tuple[TransferRecord, "ConsentUse | None", "IdempotentAnswer | None"]

# The group commit's statements on SQLite's writer (einmal/store.py: SqliteWriter):
# the same as the SQLAlchemy statements of _commit_batch / _use_consent below.
_SQLITE_USE_CONSENT = (
    "UPDATE broker_consent SET uses = uses + 1 WHERE id = ? AND revoked_at IS NULL "
    "AND valid_until > ? AND (max_uses IS NULL OR uses < max_uses)")
_SQLITE_ANSWER = ("UPDATE broker_idempotency SET state = 'done', response = ? "
                  "WHERE client_id = ? AND key = ?")
_SQLITE_INSERT_TRANSFER = "INSERT INTO broker_transfer (id, created_at, record, attempts)"


class StoredConsent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    citizen_ref: str
    subject_ref: str
    subject_masked: str
    service_id: str
    proof_types: tuple[str, ...]
    purpose: str
    granted_at: datetime
    valid_until: datetime
    max_uses: int | None
    uses: int
    revoked_at: datetime | None
    preview: bool = False


class StoredPreview(msgspec.Struct, frozen=True, kw_only=True):
    """A held proof (broker/previews.py); ``sealed`` is None once destroyed."""

    id: str
    client_id: str
    citizen_ref: str
    subject_masked: str
    proof_type: str
    purpose: str
    consent_id: str | None
    state: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    sealed: bytes | None


class _Abort(Exception):
    pass


class IdempotentAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """Complete an Idempotency-Key claim in the same transaction as the transfer record."""

    client_id: str
    key: str
    sealed_response: bytes


class ConsentUse(msgspec.Struct, frozen=True, kw_only=True):
    """Consume one use of a consent in the same transaction as the transfer record."""

    consent_id: str
    now: datetime


def _to_consent(row: object) -> StoredConsent:
    m = row._mapping  # type: ignore[attr-defined]
    return StoredConsent(
        id=m["id"], citizen_ref=m["citizen_ref"], subject_ref=m["subject_ref"],
        subject_masked=m["subject_masked"], service_id=m["service_id"],
        proof_types=tuple(m["proof_types"].split(",")), purpose=m["purpose"],
        granted_at=as_utc(m["granted_at"]), valid_until=as_utc(m["valid_until"]),
        max_uses=m["max_uses"], uses=m["uses"],
        revoked_at=as_utc(m["revoked_at"]) if m["revoked_at"] else None,
        preview=bool(m["preview"]),
    )


def _to_preview(row: object) -> StoredPreview:
    m = row._mapping  # type: ignore[attr-defined]
    return StoredPreview(
        id=m["id"], client_id=m["client_id"], citizen_ref=m["citizen_ref"],
        subject_masked=m["subject_masked"], proof_type=m["proof_type"], purpose=m["purpose"],
        consent_id=m["consent_id"], state=m["state"], created_at=as_utc(m["created_at"]),
        expires_at=as_utc(m["expires_at"]),
        decided_at=as_utc(m["decided_at"]) if m["decided_at"] else None,
        sealed=bytes(m["sealed"]) if m["sealed"] is not None else None,
    )


class BrokerRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: list[tuple[tuple[Any, Any, Any], asyncio.Future[bool]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._sqlite = sqlite_writer(engine)

    @asynccontextmanager
    async def _tx(self, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if write:
                    await stack.enter_async_context(writer(self._engine))
                conn = await stack.enter_async_context(self._engine.begin())
                yield conn
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            msg = f"broker store failed: {type(exc).__name__}"
            raise StoreError(msg) from exc
        except OSError as exc:
            msg = f"broker store unreachable: {type(exc).__name__}"
            raise StoreError(msg) from exc

    async def create_schema(self) -> None:
        """Migrate a fresh database; refuse one that is behind (``einmal db upgrade``)."""
        from einmal.migrate import ensure_schema

        await ensure_schema(self._engine, "broker", [t.name for t in BROKER_TABLES])

    # -- client assertion replay cache -------------------------------------------------
    async def remember_jti(self, client_id: str, jti: str, expires_at: datetime,
                           now: datetime) -> bool:
        """True if the ``jti`` is new; False if it was seen before (replay)."""
        try:
            async with self._tx() as conn:
                await conn.execute(delete(_jti).where(_jti.c.expires_at < now))
                await conn.execute(insert(_jti).values(client_id=client_id, jti=jti,
                                                       expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    # -- consents --------------------------------------------------------------------------
    async def add_consent(self, consent: StoredConsent) -> None:
        values = msgspec.structs.asdict(consent)
        values["proof_types"] = ",".join(sorted(consent.proof_types))
        async with self._tx() as conn:
            await conn.execute(insert(_consent).values(**values))

    async def consent(self, consent_id: str) -> StoredConsent | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(_consent).where(_consent.c.id == consent_id))).first()
        return _to_consent(row) if row else None

    async def consents_of(self, citizen_ref: str) -> list[StoredConsent]:
        query = (select(_consent).where(_consent.c.citizen_ref == citizen_ref)
                 .order_by(_consent.c.granted_at.desc()))
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [_to_consent(row) for row in rows]

    async def revoke_consent(self, consent_id: str, citizen_ref: str, now: datetime,
                             ) -> StoredConsent | None:
        """Revoke (idempotent). Committed before this returns: requests that start later see it."""
        async with self._tx() as conn:
            await conn.execute(
                update(_consent)
                .where(_consent.c.id == consent_id, _consent.c.citizen_ref == citizen_ref,
                       _consent.c.revoked_at.is_(None))
                .values(revoked_at=now))
            row = (await conn.execute(select(_consent).where(
                _consent.c.id == consent_id, _consent.c.citizen_ref == citizen_ref))).first()
        return _to_consent(row) if row else None

    # -- transfer records --------------------------------------------------------------------
    async def commit_transfer(self, record: TransferRecord, use: ConsentUse | None = None,
                              answer: IdempotentAnswer | None = None) -> bool:
        """Commit the transfer record durably, consuming one consent use atomically.

        Returns False (and writes nothing for this record) if the consent is no longer usable
        at commit time (revoked, expired or used up meanwhile): the caller then records a
        refusal instead. Returns only after the record is durable.

        On SQLite, concurrent calls are committed together (group commit): one transaction and
        one fsync for every record waiting at that moment, instead of one each - the durable
        commit was the proof path's bottleneck (docs/benchmarks.md).
        """
        item = (record, use, answer)
        if self._engine.dialect.name != "sqlite":
            return (await self._commit_batch([item]))[0]
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop(), name="einmal-commit")
        return await future

    async def _commit_loop(self) -> None:
        while self._queue:  # no await between this check and returning: no lost waiter
            batch, self._queue = self._queue[:GROUP_COMMIT_MAX], self._queue[GROUP_COMMIT_MAX:]
            try:
                results = await self._commit_batch([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), ok in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(ok)

    async def _commit_batch(self, items: list[_Pending]) -> list[bool]:
        if self._sqlite is not None:
            rows = [(record.id, sqlite_time(record.occurred_at), _encode(record))
                    for record, _, _ in items]
            return await self._sqlite.run(lambda conn: _commit_batch_sqlite(conn, items, rows))
        results: list[bool] = []
        rows: list[dict[str, Any]] = []
        async with self._tx() as conn:
            for record, use, answer in items:
                if use is not None and not await self._use_consent(conn, use):
                    results.append(False)
                    continue
                rows.append({"id": record.id, "created_at": record.occurred_at,
                             "record": _encode(record)})
                if answer is not None:
                    await conn.execute(update(_idem).where(
                        _idem.c.client_id == answer.client_id, _idem.c.key == answer.key)
                        .values(state="done", response=answer.sealed_response))
                results.append(True)
            if rows:
                # One executemany for the batch (one driver round trip instead of one per
                # record: docs/benchmarks.md), inside the same transaction as the consent uses.
                await conn.execute(_INSERT_TRANSFER, rows)
        return results

    @staticmethod
    async def _use_consent(conn: AsyncConnection, use: ConsentUse) -> bool:  # = _SQLITE_USE_CONSENT
        result = await conn.execute(
            update(_consent)
            .where(_consent.c.id == use.consent_id,
                   _consent.c.revoked_at.is_(None),
                   _consent.c.valid_until > use.now,
                   or_(_consent.c.max_uses.is_(None),
                       _consent.c.uses < _consent.c.max_uses))
            .values(uses=_consent.c.uses + 1))
        return result.rowcount == 1

    async def aclose(self) -> None:
        """Let queued commits finish (graceful shutdown)."""
        if self._committer is not None and not self._committer.done():
            await self._committer

    # -- previews (broker/previews.py) -------------------------------------------------------
    async def add_preview(self, preview: StoredPreview,
                          answer: IdempotentAnswer | None = None) -> None:
        """Hold a proof; complete an Idempotency-Key claim (the 202 answer) atomically."""
        async with self._tx() as conn:
            await conn.execute(insert(_preview).values(**msgspec.structs.asdict(preview)))
            if answer is not None:
                await conn.execute(update(_idem).where(
                    _idem.c.client_id == answer.client_id, _idem.c.key == answer.key)
                    .values(state="done", response=answer.sealed_response))

    async def preview(self, request_id: str) -> StoredPreview | None:
        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(_preview).where(_preview.c.id == request_id))).first()
        return _to_preview(row) if row else None

    async def previews_of(self, citizen_ref: str, limit: int = 200) -> list[StoredPreview]:
        query = (select(_preview).where(_preview.c.citizen_ref == citizen_ref)
                 .order_by(_preview.c.created_at.desc()).limit(limit))
        async with self._tx(write=False) as conn:
            return [_to_preview(row) for row in (await conn.execute(query)).all()]

    async def accept_preview(self, request_id: str, now: datetime, expires_at: datetime,
                             ) -> bool:
        async with self._tx() as conn:
            result = await conn.execute(
                update(_preview).where(_preview.c.id == request_id,
                                       _preview.c.state == "pending",
                                       _preview.c.expires_at > now)
                .values(state="accepted", decided_at=now, expires_at=expires_at))
        return result.rowcount == 1

    async def finish_preview(self, request_id: str, from_states: Sequence[str], state: str,
                             now: datetime, record: TransferRecord | None) -> bool:
        """End an open preview: destroy its content and write its transfer record, atomically.
        False if it was no longer in ``from_states`` (someone else ended it)."""
        async with self._tx() as conn:
            result = await conn.execute(
                update(_preview).where(_preview.c.id == request_id,
                                       _preview.c.state.in_(list(from_states)))
                .values(state=state, sealed=None, decided_at=now))
            if result.rowcount != 1:
                return False
            if record is not None:
                await conn.execute(insert(_transfer).values(
                    id=record.id, created_at=record.occurred_at, record=_encode(record)))
        return True

    async def collect_preview(self, request_id: str, record: TransferRecord,
                              use: ConsentUse | None) -> str:
        """Release an accepted preview: in one transaction mark it collected, destroy the
        content, consume the consent use and write the transfer record.

        "collected"; "gone" if it was not accepted any more (nothing written); "consent" if the
        consent is no longer usable (nothing written)."""
        try:
            async with self._tx() as conn:
                result = await conn.execute(
                    update(_preview).where(_preview.c.id == request_id,
                                           _preview.c.state == "accepted",
                                           _preview.c.expires_at > record.occurred_at)
                    .values(state="collected", sealed=None))
                if result.rowcount != 1:
                    return "gone"
                if use is not None and not await self._use_consent(conn, use):
                    raise _Abort
                await conn.execute(insert(_transfer).values(
                    id=record.id, created_at=record.occurred_at, record=_encode(record)))
        except _Abort:
            return "consent"
        return "collected"

    async def due_previews(self, now: datetime, limit: int) -> list[StoredPreview]:
        query = (select(_preview).where(_preview.c.state.in_(["pending", "accepted"]),
                                        _preview.c.expires_at <= now)
                 .order_by(_preview.c.expires_at).limit(limit))
        async with self._tx(write=False) as conn:
            return [_to_preview(row) for row in (await conn.execute(query)).all()]

    async def purge_previews(self, now: datetime, forget_before: datetime) -> None:
        """Backstop: no sealed content past its expiry, whatever the state; rows that ended
        before ``forget_before`` are deleted."""
        async with self._tx() as conn:
            await conn.execute(update(_preview).where(_preview.c.expires_at <= now,
                                                      _preview.c.sealed.is_not(None))
                               .values(sealed=None))
            await conn.execute(delete(_preview).where(_preview.c.expires_at < forget_before))

    # -- Idempotency-Key ----------------------------------------------------------------------
    async def claim_idempotency(self, client_id: str, key: str, request_hash: str,
                                now: datetime, expires_at: datetime,
                                ) -> tuple[str, bytes | None]:
        """("claimed", None) for a new key; ("done", sealed) for a finished one;
        ("in_flight", None) while the first is running; ("mismatch", None) for another body."""
        async with self._tx() as conn:
            await conn.execute(delete(_idem).where(_idem.c.expires_at < now))
            row = (await conn.execute(select(_idem).where(
                _idem.c.client_id == client_id, _idem.c.key == key))).first()
            if row is None:
                try:
                    async with conn.begin_nested():
                        await conn.execute(insert(_idem).values(
                            client_id=client_id, key=key, request_hash=request_hash,
                            state="in_flight", expires_at=expires_at))
                except IntegrityError:
                    return "in_flight", None
                return "claimed", None
        m = row._mapping
        if m["request_hash"] != request_hash:
            return "mismatch", None
        return (m["state"], m["response"]) if m["state"] == "done" else ("in_flight", None)

    async def release_idempotency(self, client_id: str, key: str) -> None:
        """The first request failed before releasing anything: a retry may run again."""
        async with self._tx() as conn:
            await conn.execute(delete(_idem).where(_idem.c.client_id == client_id,
                                                   _idem.c.key == key,
                                                   _idem.c.state == "in_flight"))

    async def deliver_pending(self, limit: int,
                              send: Callable[[list[bytes]], Awaitable[None]]) -> int:
        """Send one batch of undelivered records with ``send`` and mark them delivered.

        On PostgreSQL the batch is locked ``FOR UPDATE SKIP LOCKED`` for the duration of the
        send, so several broker processes share the outbox without sending a record twice at
        the same time; a failed send rolls back and the records stay pending. On SQLite (one
        process) no write lock is held during the send.
        """
        query = (select(_transfer.c.seq, _transfer.c.record)
                 .where(_transfer.c.delivered_at.is_(None))
                 .order_by(_transfer.c.seq).limit(limit))
        if self._engine.dialect.name == "postgresql":
            async with self._tx() as conn:
                rows = (await conn.execute(query.with_for_update(skip_locked=True))).all()
                if rows:
                    await send([row.record for row in rows])
                    await conn.execute(update(_transfer)
                                       .where(_transfer.c.seq.in_([r.seq for r in rows]))
                                       .values(delivered_at=datetime.now(UTC)))
            return len(rows)
        if self._sqlite is not None:  # on the SQLite writer (decision 0024)
            rows = await self._sqlite.run(lambda conn: _pending_sqlite(conn, limit))
        else:
            async with self._tx(write=False) as conn:
                rows = [tuple(row) for row in (await conn.execute(query)).all()]
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

    async def pending_transfers(self, limit: int) -> Sequence[tuple[int, bytes]]:
        query = (select(_transfer.c.seq, _transfer.c.record)
                 .where(_transfer.c.delivered_at.is_(None))
                 .order_by(_transfer.c.seq).limit(limit))
        async with self._tx(write=False) as conn:
            return [(row.seq, row.record) for row in (await conn.execute(query)).all()]

    async def mark_delivered(self, seqs: Sequence[int], now: datetime) -> None:
        if self._sqlite is not None:
            params = (sqlite_time(now), msgspec.json.encode(list(seqs)))
            await self._sqlite.run(lambda conn: conn.execute(
                "UPDATE broker_transfer SET delivered_at = ? "
                "WHERE seq IN (SELECT value FROM json_each(?))", params))
            return
        async with self._tx() as conn:
            await conn.execute(update(_transfer).where(_transfer.c.seq.in_(seqs))
                               .values(delivered_at=now))

    async def mark_attempt(self, seqs: Sequence[int]) -> None:
        async with self._tx() as conn:
            await conn.execute(update(_transfer).where(_transfer.c.seq.in_(seqs))
                               .values(attempts=_transfer.c.attempts + 1))

    async def outbox_status(self) -> tuple[int, datetime | None]:
        """(undelivered records, creation time of the oldest)."""
        from sqlalchemy import func

        async with self._tx(write=False) as conn:
            row = (await conn.execute(select(func.count(), func.min(_transfer.c.created_at))
                                      .where(_transfer.c.delivered_at.is_(None)))).one()
        return int(row[0]), as_utc(row[1]) if row[1] else None

    async def transfer_count(self) -> int:
        from sqlalchemy import func

        async with self._tx() as conn:
            return int((await conn.execute(select(func.count()).select_from(_transfer))).scalar_one())


def _commit_batch_sqlite(conn: sqlite3.Connection, items: list[_Pending],
                         encoded: list[tuple[str, str, bytes]]) -> list[bool]:
    """``_commit_batch`` on the SQLite writer: one transaction, one insert.
    ``encoded`` holds each item's row (id, created_at, record)."""
    results: list[bool] = []
    rows: list[tuple[str, str, bytes]] = []
    for (_, use, answer), row in zip(items, encoded, strict=True):
        if use is not None and conn.execute(
                _SQLITE_USE_CONSENT, (use.consent_id, sqlite_time(use.now))).rowcount != 1:
            results.append(False)
            continue
        rows.append(row)
        if answer is not None:
            conn.execute(_SQLITE_ANSWER, (answer.sealed_response, answer.client_id, answer.key))
        results.append(True)
    if rows:
        insert_rows(conn, _SQLITE_INSERT_TRANSFER, [(*row, 0) for row in rows])
    return results


_SQLITE_PENDING = ("SELECT seq, record FROM broker_transfer WHERE delivered_at IS NULL "
                   "ORDER BY seq LIMIT ?")
# The same rows as ONE result row: fetching N rows steps SQLite N times, and the sqlite3 module
# gives the GIL back around every step (a wait and a context switch each on a busy loop). A
# record is JSON, which never holds a raw control character, so ASCII RS separates them.
_SQLITE_PENDING_ONE_ROW = (
    "SELECT json_group_array(seq), group_concat(CAST(record AS TEXT), char(30)) "
    f"FROM ({_SQLITE_PENDING})")


def _pending_sqlite(conn: sqlite3.Connection, limit: int) -> list[tuple[int, bytes]]:
    """The first ``limit`` undelivered records in ``seq`` order, read as one row; the plain
    query if the aggregate does not come back in order (SQLite does not promise it)."""
    seqs_json, joined = conn.execute(_SQLITE_PENDING_ONE_ROW, (limit,)).fetchone()
    seqs = msgspec.json.decode(seqs_json) if seqs_json else []
    if not seqs:
        return []
    records = joined.encode().split(b"\x1e")
    if len(records) == len(seqs) and all(a < b for a, b in zip(seqs, seqs[1:], strict=False)):
        return list(zip(seqs, records, strict=True))
    return [tuple(row) for row in conn.execute(_SQLITE_PENDING, (limit,)).fetchall()]
