"""Where a register keeps its protocol: three tables in its own database (SQLite by default,
PostgreSQL through the same SQLAlchemy statements). Registers in one process may share one
store: every row names its ``register``.

* ``register_protocol``          one row per answered query: times, and two sealed blobs -
                                 ``meta`` (who asked, purpose, basis, categories) and
                                 ``content`` (the group tree that was sent); never an IdNr
* ``register_protocol_subject``  the keyed pseudonyms of the citizens an entry is about (the one
                                 asked for, ``self``, and those named in the answer,
                                 ``concerned``): the lookup by IdNr
* ``register_source_jti``        request token ids seen by the source interface, until they
                                 expire (replay protection across processes)

The schema is created on first use (``prepare``); the sealing happens in
``connectors.protocol.protocol``: this module stores bytes.

Three backends, chosen once (``open_protocol_store``): ``MemoryProtocolStore``;
``SqlProtocolStore`` (SQLAlchemy: PostgreSQL, SQLite in memory); ``SqliteProtocolStore``, a
SQLite file: the same, but its two writes per query - the entry with its subjects (the group
commit) and the request token id - go in plain SQL on the engine's ``SqliteWriter``
(einmal/store.py, decision 0024), whose SQL mirrors the SQLAlchemy statements; reads, the
sweep and the schema stay on SQLAlchemy.
"""

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    Row,
    Select,
    String,
    Table,
    delete,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from einmal.store import (
    DuplicateKeyError,
    GroupCommit,
    SqliteWriter,
    dispose,
    insert_rows,
    sqlite_time,
    sqlite_writer,
    transaction,
)

__all__ = ["MemoryProtocolStore", "ProtocolRow", "ProtocolStore", "SqlProtocolStore",
           "SqliteProtocolStore", "StoredEntry", "open_protocol_store"]

METADATA = MetaData()

ENTRIES = Table(
    "register_protocol", METADATA,
    Column("id", String(36), primary_key=True),
    Column("register", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("retention_until", DateTime(timezone=True), nullable=False, index=True),
    Column("meta", LargeBinary, nullable=False),
    Column("content", LargeBinary, nullable=False),
)
SUBJECTS = Table(
    "register_protocol_subject", METADATA,
    Column("entry_id", String(36), primary_key=True),
    Column("subject_ref", String(64), primary_key=True),
    Column("register", String(64), nullable=False),
    Column("relation", String(16), nullable=False),
    Index("ix_register_protocol_subject_lookup", "register", "subject_ref"),
)
JTIS = Table(
    "register_source_jti", METADATA,
    Column("jti", String(200), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


def _utc(value: datetime) -> datetime:
    """Aware UTC on the way in (SQLite's DateTime drops the zone, does not convert) and out."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ProtocolRow(msgspec.Struct, frozen=True, kw_only=True):
    """One entry to write: sealed blobs, and the subjects as (pseudonym, relation)."""

    id: str
    register: str
    occurred_at: datetime
    retention_until: datetime
    meta: bytes
    content: bytes
    subjects: tuple[tuple[str, str], ...]


class StoredEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    register: str
    occurred_at: datetime
    retention_until: datetime
    relation: str
    meta: bytes
    content: bytes


class ProtocolStore(Protocol):
    """Where the protocol is kept: ``SqlProtocolStore`` (SQLite, PostgreSQL) or
    ``MemoryProtocolStore`` (this process only)."""

    async def prepare(self) -> None: ...
    async def add(self, row: ProtocolRow) -> None: ...
    async def entries(self, register: str, subject_ref: str, *, since: datetime,
                      now: datetime, limit: int = 1000) -> list[StoredEntry]: ...
    async def entry(self, register: str, subject_ref: str, entry_id: str, *,
                    since: datetime, now: datetime) -> StoredEntry | None: ...
    async def use_token_id(self, jti: str, *, expires_at: datetime) -> bool: ...
    async def sweep(self, now: datetime) -> int: ...
    async def count(self) -> int: ...
    async def aclose(self) -> None: ...


class MemoryProtocolStore:
    """The protocol in this process's memory (a register without a database: tests, a
    simulator started without a data dir). Gone at exit, and bounded: beyond ``max_entries``
    the oldest entries go (a long load test must not fill the memory) - a register that
    must keep its protocol for two years needs a database."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self._rows: dict[str, ProtocolRow] = {}
        self._jtis: dict[str, datetime] = {}
        self._max = max_entries

    async def prepare(self) -> None:
        return None

    async def add(self, row: ProtocolRow) -> None:
        self._rows[row.id] = row
        while len(self._rows) > self._max:
            del self._rows[next(iter(self._rows))]  # the oldest (insertion order)

    def _found(self, register: str, subject_ref: str, since: datetime, now: datetime,
               ) -> list[StoredEntry]:
        found = []
        for row in self._rows.values():
            relation = dict(row.subjects).get(subject_ref)
            if (relation is not None and row.register == register
                    and row.occurred_at >= since and row.retention_until > now):
                found.append(StoredEntry(
                    id=row.id, register=row.register, occurred_at=_utc(row.occurred_at),
                    retention_until=_utc(row.retention_until), relation=relation,
                    meta=row.meta, content=row.content))
        return sorted(found, key=lambda e: (-e.occurred_at.timestamp(), e.id))

    async def entries(self, register: str, subject_ref: str, *, since: datetime,
                      now: datetime, limit: int = 1000) -> list[StoredEntry]:
        return self._found(register, subject_ref, since, now)[:limit]

    async def entry(self, register: str, subject_ref: str, entry_id: str, *,
                    since: datetime, now: datetime) -> StoredEntry | None:
        return next((e for e in self._found(register, subject_ref, since, now)
                     if e.id == entry_id), None)

    async def use_token_id(self, jti: str, *, expires_at: datetime) -> bool:
        if jti in self._jtis:
            return False
        self._jtis[jti] = expires_at
        return True

    async def sweep(self, now: datetime) -> int:
        expired = [k for k, row in self._rows.items() if row.retention_until <= now]
        for key in expired:
            del self._rows[key]
        self._jtis = {k: v for k, v in self._jtis.items() if v > now}
        return len(expired)

    async def count(self) -> int:
        return len(self._rows)

    async def aclose(self) -> None:
        return None


class SqlProtocolStore:
    """The protocol tables on ``engine``. Concurrent ``add`` calls commit together (one
    transaction, one fsync: einmal.store.GroupCommit)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._prepared = False
        self._lock = asyncio.Lock()
        self._commits: GroupCommit[ProtocolRow, None] = GroupCommit(
            self._write, name="einmal-register-protocol")

    async def prepare(self) -> None:
        """Create the tables unless they exist (once per process)."""
        if self._prepared:
            return
        async with self._lock:
            if not self._prepared:
                async with transaction(self.engine) as conn:
                    await conn.run_sync(METADATA.create_all)
                self._prepared = True

    async def _write(self, rows: Sequence[ProtocolRow]) -> list[None]:
        async with transaction(self.engine) as conn:
            await conn.execute(insert(ENTRIES), [
                {"id": r.id, "register": r.register, "occurred_at": _utc(r.occurred_at),
                 "retention_until": _utc(r.retention_until), "meta": r.meta,
                 "content": r.content} for r in rows])
            await conn.execute(insert(SUBJECTS), [
                {"entry_id": r.id, "subject_ref": ref, "register": r.register,
                 "relation": relation} for r in rows for ref, relation in r.subjects])
        return [None] * len(rows)

    async def add(self, row: ProtocolRow) -> None:
        """Write ``row``; returns once it is durable (raises StoreError if it is not)."""
        if not self._prepared:
            await self.prepare()
        await self._commits.submit(row)

    def _query(self, register: str, subject_ref: str, since: datetime, now: datetime,
               ) -> Select[Any]:
        return (select(ENTRIES.c.id, ENTRIES.c.register, ENTRIES.c.occurred_at,
                       ENTRIES.c.retention_until, SUBJECTS.c.relation, ENTRIES.c.meta,
                       ENTRIES.c.content)
                .join(SUBJECTS, SUBJECTS.c.entry_id == ENTRIES.c.id)
                .where(SUBJECTS.c.register == register, SUBJECTS.c.subject_ref == subject_ref,
                       ENTRIES.c.occurred_at >= _utc(since),
                       ENTRIES.c.retention_until > _utc(now)))

    @staticmethod
    def _entry(row: Row[Any]) -> StoredEntry:
        found = row._mapping
        return StoredEntry(id=found["id"], register=found["register"],
                           occurred_at=_utc(found["occurred_at"]),
                           retention_until=_utc(found["retention_until"]),
                           relation=found["relation"], meta=found["meta"],
                           content=found["content"])

    async def entries(self, register: str, subject_ref: str, *, since: datetime,
                      now: datetime, limit: int = 1000) -> list[StoredEntry]:
        """The entries of ``register`` about ``subject_ref`` since ``since``, newest first."""
        await self.prepare()
        query = (self._query(register, subject_ref, since, now)
                 .order_by(ENTRIES.c.occurred_at.desc(), ENTRIES.c.id).limit(limit))
        async with transaction(self.engine, write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [self._entry(r) for r in rows]

    async def entry(self, register: str, subject_ref: str, entry_id: str, *,
                    since: datetime, now: datetime) -> StoredEntry | None:
        """One entry, only if it is about ``subject_ref`` (else None, as if it did not exist)."""
        await self.prepare()
        query = self._query(register, subject_ref, since, now).where(ENTRIES.c.id == entry_id)
        async with transaction(self.engine, write=False) as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else self._entry(row)

    async def use_token_id(self, jti: str, *, expires_at: datetime) -> bool:
        """Note a request token's id; False if it was seen before (a replay)."""
        await self.prepare()
        try:
            async with transaction(self.engine) as conn:
                await conn.execute(insert(JTIS), [{"jti": jti, "expires_at": _utc(expires_at)}])
        except DuplicateKeyError:
            return False
        return True

    async def sweep(self, now: datetime) -> int:
        """Delete entries past their retention and expired token ids; the entries deleted."""
        await self.prepare()
        cutoff = _utc(now)
        async with transaction(self.engine) as conn:
            expired = select(ENTRIES.c.id).where(ENTRIES.c.retention_until <= cutoff)
            await conn.execute(delete(SUBJECTS).where(SUBJECTS.c.entry_id.in_(expired)))
            result = await conn.execute(delete(ENTRIES).where(
                ENTRIES.c.retention_until <= cutoff))
            await conn.execute(delete(JTIS).where(JTIS.c.expires_at <= cutoff))
        return int(result.rowcount or 0)

    async def count(self) -> int:
        """Entries held (all registers): for tests and the status."""
        await self.prepare()
        async with transaction(self.engine, write=False) as conn:
            return len((await conn.execute(select(ENTRIES.c.id))).all())

    async def aclose(self) -> None:
        await self._commits.aclose()
        await dispose(self.engine)


# = SqlProtocolStore._write, use_token_id (the same tables, the same rows)
_INSERT_ENTRY = ("INSERT INTO register_protocol "
                 "(id, register, occurred_at, retention_until, meta, content)")
_INSERT_SUBJECT = ("INSERT INTO register_protocol_subject "
                   "(entry_id, subject_ref, register, relation)")
_INSERT_JTI = ("INSERT INTO register_source_jti (jti, expires_at) VALUES (?, ?) "
               "ON CONFLICT (jti) DO NOTHING")


class SqliteProtocolStore(SqlProtocolStore):
    """``SqlProtocolStore`` on a SQLite file, its writes on the engine's ``SqliteWriter``:
    per batch of entries one transaction of two multi-row inserts, the times as
    ``sqlite_time`` (read back by SQLAlchemy like its own), one hand-over to the writer
    thread for the commit (``synchronous=FULL``: durable when ``add`` returns)."""

    def __init__(self, engine: AsyncEngine) -> None:
        found = sqlite_writer(engine)
        if found is None:
            msg = "SqliteProtocolStore needs a SQLite file (not in memory, not another database)"
            raise ValueError(msg)
        super().__init__(engine)
        self._writer: SqliteWriter = found

    async def _write(self, rows: Sequence[ProtocolRow]) -> list[None]:
        # the parameters are made here on the event loop: the transaction only runs SQL
        entries = [(r.id, r.register, sqlite_time(r.occurred_at),
                    sqlite_time(r.retention_until), r.meta, r.content) for r in rows]
        subjects = [(r.id, ref, r.register, relation)
                    for r in rows for ref, relation in r.subjects]
        await self._writer.run(lambda conn: _insert_entries(conn, entries, subjects))
        return [None] * len(rows)

    async def use_token_id(self, jti: str, *, expires_at: datetime) -> bool:
        """Note a request token's id; False if it was seen before (a replay)."""
        if not self._prepared:
            await self.prepare()
        params = (jti, sqlite_time(expires_at))
        inserted = await self._writer.run(
            lambda conn: conn.execute(_INSERT_JTI, params).rowcount)
        return inserted == 1


def _insert_entries(conn: sqlite3.Connection, entries: list[tuple[Any, ...]],
                    subjects: list[tuple[Any, ...]]) -> None:
    insert_rows(conn, _INSERT_ENTRY, entries)
    insert_rows(conn, _INSERT_SUBJECT, subjects)


def open_protocol_store(engine: AsyncEngine | None) -> ProtocolStore:
    """The backend, chosen once at start-up: no engine, this process's memory; a SQLite file
    gets the writer's fast path (``SqliteProtocolStore``); anything else SQLAlchemy
    (PostgreSQL; SQLite in memory)."""
    if engine is None:
        return MemoryProtocolStore()
    if sqlite_writer(engine) is not None:
        return SqliteProtocolStore(engine)
    return SqlProtocolStore(engine)
