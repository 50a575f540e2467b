"""Cockpit use-cases: accept transfer records from the broker, show citizens their transfers."""

import base64
import contextlib
import hmac
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog
from sqlalchemy import and_, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cockpit.leaf import encode_leaf
from cockpit.tables import COCKPIT_TABLES, CitizenEntryRow, EntryRow, RelationRow
from cockpit.vault import CitizenVault
from einmal_client import tlog
from einmal.domain.idnr import mask_idnr
from einmal.domain.transfer import Outcome, TransferRecord
from einmal.problems import ProblemError
from einmal.store import insert_rows, sqlite_time, sqlite_writer, writer

__all__ = ["CockpitService", "TransferView"]

log = structlog.get_logger()

_entry = EntryRow.__table__  # type: ignore[attr-defined]
_index = CitizenEntryRow.__table__  # type: ignore[attr-defined]
_relation = RelationRow.__table__  # type: ignore[attr-defined]
_VISIBLE_FOR = timedelta(days=730)  # OZG § 10: the last two years
_PARENTAL_PROOFS = {"birth", "custody"}

# The ingest's statements on SQLite's writer (einmal/store.py: SqliteWriter); the
# SQLAlchemy path (_ingest_sqlalchemy) runs the same ones. Ids travel as one JSON array.
_SQLITE_KNOWN_IDS = "SELECT id FROM cockpit_entry WHERE id IN (SELECT value FROM json_each(?))"
_ENTRY_COLUMNS = ("id", "occurred_at", "received_at", "subject_ref", "body", "leaf",
                  "leaf_hash", "service_id", "register_id")
_SQLITE_INSERT_ENTRY = f"INSERT INTO cockpit_entry ({', '.join(_ENTRY_COLUMNS)})"
_SQLITE_PARENTS = ("SELECT parent_ref, child_ref FROM cockpit_relation "
                   "WHERE child_ref IN (SELECT value FROM json_each(?))")
_SQLITE_INSERT_RELATION = "INSERT INTO cockpit_relation (parent_ref, child_ref)"
_SQLITE_INSERT_INDEX = ("INSERT INTO cockpit_citizen_entry (citizen_ref, transfer_id, "
                        "occurred_at, relation)")
_IGNORE = "ON CONFLICT DO NOTHING"


class TransferView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    occurred_at: datetime
    outcome: str
    error_type: str | None
    proof_type: str
    data_categories: tuple[str, ...]
    service: dict[str, str]
    register: dict[str, str] | None
    intermediaries: tuple[str, ...]
    purpose: str
    purpose_text: str
    legal_basis: str
    consent_id: str | None
    subject_masked: str
    retention_until: datetime | None
    correlation_id: str | None
    relation: str = "self"
    #: position in the signed transfer log; None until integrated (within about a second)
    log_index: int | None = None
    included: bool = False


_view_encoder = msgspec.json.Encoder()
_view_decoder = msgspec.json.Decoder(TransferView)


def _insert_ignore(conn: AsyncConnection, table: Any) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table)


class CockpitService:
    def __init__(self, *, engine: AsyncEngine, pseudonym_key: bytes, vault: CitizenVault,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_ingested: Callable[[], None] = lambda: None,
                 read_engine: AsyncEngine | None = None) -> None:
        self._engine = engine
        #: citizen queries may go to a read replica (settings.read_database_url)
        self._read_engine = read_engine or engine
        self._on_ingested = on_ingested
        self._vault = vault
        self._key = pseudonym_key
        self._clock = clock
        self._sqlite = sqlite_writer(engine)

    def pseudonym(self, idnr: str) -> str:
        return hmac.digest(self._key, idnr.encode(), "sha256").hex()

    @asynccontextmanager
    async def _tx(self, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        engine = self._engine if write else self._read_engine
        try:
            async with writer(engine) if write else contextlib.nullcontext(), \
                    engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            log.error("store.unavailable", error=type(exc).__name__)
            raise ProblemError("store-unavailable", "The cockpit store is unavailable.",
                               headers={"Retry-After": "5"}) from exc

    async def create_schema(self) -> None:
        """Migrate a fresh database; refuse one that is behind (``einmal db upgrade``)."""
        from einmal.migrate import ensure_schema

        await ensure_schema(self._engine, "cockpit", [t.name for t in COCKPIT_TABLES])

    async def ingest(self, records: list[TransferRecord]) -> dict[str, int]:
        """Store a batch in order. Idempotent by transfer id: a repeated record is counted as
        a duplicate and changes nothing.

        A batch costs a fixed number of statements (not a few per record): the new ids are
        found with one query, entries, relations and index rows are written with one
        executemany each, and the parents are read once for the whole batch. The readers of
        each record are the same as if the records were stored one by one, in order: a
        relation learned from a record applies to it and to later ones, not to earlier ones.
        On SQLite the transaction runs on the SQLite writer (``_ingest_sqlite``,
        decision 0024); elsewhere the same statements go through SQLAlchemy.
        """
        now = self._clock()
        refs: dict[str, str] = {}  # every IdNr of the batch -> its pseudonym, computed once
        for record in records:
            for idnr in (record.subject, *(c.idnr for c in record.concerned)):
                if idnr not in refs:
                    refs[idnr] = self.pseudonym(idnr)
        if self._sqlite is not None:
            cached = self._vault.cached({refs[r.subject] for r in records})
            # the keys it created are cached under the write lock: a crypto-shred of the same
            # citizen cannot slip in between the commit and the cache (it takes that lock)
            fresh, _ = await self._sqlite.run(
                lambda conn: self._ingest_sqlite(conn, records, refs, cached, now),
                then=lambda result: self._vault.remember(result[1]))
        else:
            fresh = await self._ingest_sqlalchemy(records, refs, now)
        accepted = len(fresh)
        duplicates = len(records) - accepted
        log.info("cockpit.ingested", accepted=accepted, duplicates=duplicates)
        if accepted:
            self._on_ingested()
        return {"accepted": accepted, "duplicates": duplicates}

    def _entry(self, record: TransferRecord, subject_ref: str, key: bytes, received_at: Any,
               occurred_at: Any) -> tuple[Any, ...]:
        """An entry row, its values in ``_ENTRY_COLUMNS`` order (times as the store takes them)."""
        leaf = encode_leaf(record, subject_ref)
        return (record.id, occurred_at, received_at, subject_ref,
                self._vault.seal(key, record.id, _view_encoder.encode(_view(record))),
                leaf, tlog.leaf_hash(leaf), record.service.id,
                record.register.id if record.register else None)

    async def _ingest_sqlalchemy(self, records: list[TransferRecord], refs: dict[str, str],
                                 now: datetime) -> list[tuple[TransferRecord, str]]:
        async with self._tx() as conn:
            ids = list(dict.fromkeys(r.id for r in records))
            known = set((await conn.execute(select(_entry.c.id).where(
                _entry.c.id.in_(ids)))).scalars()) if ids else set()
            fresh: list[tuple[TransferRecord, str]] = []
            entries: list[dict[str, Any]] = []
            for record in records:
                if record.id in known:
                    continue
                known.add(record.id)
                subject_ref = refs[record.subject]
                key = await self._vault.key(conn, subject_ref, create=True)
                assert key is not None  # noqa: S101 - create=True always yields a key
                entries.append(dict(zip(_ENTRY_COLUMNS, self._entry(
                    record, subject_ref, key, now, record.occurred_at), strict=True)))
                fresh.append((record, subject_ref))
            if entries:
                # insert-ignore: a concurrent ingest of the same record (another process) wins
                await conn.execute(_insert_ignore(conn, _entry), entries)
                subjects = list({subject_ref for _, subject_ref in fresh})
                parents_of: dict[str, list[str]] = {}
                for parent_ref, child_ref in (await conn.execute(
                        select(_relation.c.parent_ref, _relation.c.child_ref)
                        .where(_relation.c.child_ref.in_(subjects)))).all():
                    parents_of.setdefault(child_ref, []).append(parent_ref)
                relations, rows = self._readers(fresh, parents_of, refs)
                if relations:
                    await conn.execute(_insert_ignore(conn, _relation), [
                        {"parent_ref": parent, "child_ref": child} for parent, child in relations])
                await conn.execute(_insert_ignore(conn, _index), [
                    {"citizen_ref": ref, "transfer_id": transfer_id, "occurred_at": occurred_at,
                     "relation": relation} for ref, transfer_id, occurred_at, relation in rows])
        return fresh

    def _ingest_sqlite(self, conn: sqlite3.Connection, records: list[TransferRecord],
                       refs: dict[str, str], cached: dict[str, bytes], now: datetime,
                       ) -> tuple[list[tuple[TransferRecord, str]], dict[str, bytes]]:
        """``_ingest_sqlalchemy`` as one transaction on the SQLite writer. Returns the
        fresh records and the citizen keys it had to load or create; the caller caches those
        only once the transaction has committed (a key cached from a rolled-back transaction
        would seal later views with a key that is stored nowhere)."""
        ids = msgspec.json.encode(list(dict.fromkeys(r.id for r in records)))
        known = {row[0] for row in conn.execute(_SQLITE_KNOWN_IDS, (ids,))}
        keys = dict(cached)
        new_keys: dict[str, bytes] = {}
        fresh: list[tuple[TransferRecord, str]] = []
        entries: list[tuple[Any, ...]] = []
        received_at = sqlite_time(now)
        times: dict[str, str] = {}  # transfer id -> occurred_at as stored
        for record in records:
            if record.id in known:
                continue
            known.add(record.id)
            subject_ref = refs[record.subject]
            key = keys.get(subject_ref)
            if key is None:
                key = keys[subject_ref] = new_keys[subject_ref] = self._vault.key_sqlite(
                    conn, subject_ref)
            occurred_at = times[record.id] = sqlite_time(record.occurred_at)
            entries.append(self._entry(record, subject_ref, key, received_at, occurred_at))
            fresh.append((record, subject_ref))
        if entries:
            insert_rows(conn, _SQLITE_INSERT_ENTRY, entries, _IGNORE)
            subjects = msgspec.json.encode(list({ref for _, ref in fresh}))
            parents_of: dict[str, list[str]] = {}
            for parent_ref, child_ref in conn.execute(_SQLITE_PARENTS, (subjects,)):
                parents_of.setdefault(child_ref, []).append(parent_ref)
            relations, rows = self._readers(fresh, parents_of, refs,
                                            time=lambda record: times[record.id])
            if relations:
                insert_rows(conn, _SQLITE_INSERT_RELATION, relations, _IGNORE)
            insert_rows(conn, _SQLITE_INSERT_INDEX, rows, _IGNORE)
        return fresh, new_keys

    @staticmethod
    def _readers(fresh: list[tuple[TransferRecord, str]], parents_of: dict[str, list[str]],
                 refs: dict[str, str],
                 time: Callable[[TransferRecord], Any] = lambda record: record.occurred_at,
                 ) -> tuple[list[tuple[str, str]], list[tuple[str, str, Any, str]]]:
        """Relations learned (parent, child) and index rows (citizen, transfer id,
        ``time(record)``, relation: who sees which entry) for new records, in order.
        ``parents_of`` (child -> parents known before this batch) is extended as it goes;
        ``refs`` maps every IdNr of the batch to its pseudonym."""
        relations: list[tuple[str, str]] = []
        rows: list[tuple[str, str, Any, str]] = []
        for record, subject_ref in fresh:
            readers: dict[str, str] = {subject_ref: "self"}
            named = [refs[c.idnr] for c in record.concerned if c.idnr != record.subject]
            if (record.outcome is Outcome.DELIVERED and record.proof_type in _PARENTAL_PROOFS
                    and named):
                # The register named them as parents / custody holders of the subject.
                known = parents_of.setdefault(subject_ref, [])
                for parent_ref in named:
                    relations.append((parent_ref, subject_ref))
                    if parent_ref not in known:
                        known.append(parent_ref)
            for parent_ref in parents_of.get(subject_ref, ()):
                readers.setdefault(parent_ref, "child")
            for ref in named:
                readers.setdefault(ref, "concerned")
            occurred_at = time(record)
            rows.extend((ref, record.id, occurred_at, relation)
                        for ref, relation in readers.items())
        return relations, rows

    async def transfers_of(self, idnr: str, *, limit: int = 50, cursor: str | None = None,
                           ) -> dict[str, Any]:
        if not 1 <= limit <= 200:
            raise ProblemError("invalid-request", "limit: between 1 and 200.")
        query = (select(_index.c.transfer_id, _index.c.occurred_at, _index.c.relation,
                        _entry.c.body, _entry.c.log_index, _entry.c.subject_ref)
                 .join(_entry, _entry.c.id == _index.c.transfer_id)
                 .where(_index.c.citizen_ref == self.pseudonym(idnr),
                        _index.c.occurred_at >= self._clock() - _VISIBLE_FOR))
        if cursor:
            after_time, after_id = _decode_cursor(cursor)
            query = query.where(or_(_index.c.occurred_at < after_time,
                                    and_(_index.c.occurred_at == after_time,
                                         _index.c.transfer_id < after_id)))
        query = query.order_by(_index.c.occurred_at.desc(), _index.c.transfer_id.desc())
        items = []
        async with self._tx(write=False) as conn:
            rows = (await conn.execute(query.limit(limit + 1))).all()
            for row in rows[:limit]:
                key = await self._vault.key(conn, row.subject_ref, create=False)
                if row.body is None or key is None:  # shredded
                    continue
                view = _view_decoder.decode(self._vault.open(key, row.transfer_id, row.body))
                items.append(msgspec.structs.replace(
                    view, relation=row.relation, log_index=row.log_index,
                    included=row.log_index is not None))
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(last.occurred_at, last.transfer_id)
        return {"items": items, "next_cursor": next_cursor}


def _view(record: TransferRecord) -> TransferView:
    return TransferView(
        id=record.id, occurred_at=record.occurred_at, outcome=record.outcome.value,
        error_type=record.error_type, proof_type=record.proof_type,
        data_categories=record.data_categories,
        service=msgspec.structs.asdict(record.service),
        register=msgspec.structs.asdict(record.register) if record.register else None,
        intermediaries=record.intermediaries, purpose=record.purpose,
        purpose_text=record.purpose_text, legal_basis=record.legal_basis,
        consent_id=record.consent_id, subject_masked=mask_idnr(record.subject),
        retention_until=record.retention_until, correlation_id=record.correlation_id)


def _encode_cursor(occurred_at: datetime, transfer_id: str) -> str:
    raw = f"{occurred_at.isoformat()}|{transfer_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, transfer_id = raw.split("|", 1)
        return datetime.fromisoformat(when), transfer_id
    except ValueError as exc:
        raise ProblemError("invalid-request", "cursor: not a cursor from this API.") from exc
