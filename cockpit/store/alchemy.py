"""The cockpit's store in SQLAlchemy Core: every operation, on PostgreSQL or SQLite.

Write transactions hold the process's write lock on SQLite (``einmal.store.transaction``); on
PostgreSQL the sequencer's lock is the state row, updated first in its transaction. Citizen
feeds may read from a replica (``read_engine``). ``SqliteCockpitStore`` (cockpit/store/sqlite.py)
is this store with the two hot write transactions - ingest and sequencing - in plain SQL.
"""

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

from cockpit import tree
from cockpit.errors import TreeIntegrityError
from cockpit.readers import readers
from cockpit.store.base import CitizenKeys, FeedRow, LogLine, NewEntry, Sign
from cockpit.tables import (
    CHECKPOINT,
    CITIZEN_ENTRY,
    CITIZEN_KEY,
    COCKPIT_TABLES,
    COSIGNED,
    ENTRY,
    LOG_STATE,
    RELATION,
    TREE_NODE,
    as_utc,
)
from einmal.migrate import ensure_schema
from einmal.store import StoreError, transaction, writer
from einmal_client import tlog

__all__ = ["ENTRY_COLUMNS", "SHRED_CHUNK", "SqlAlchemyCockpitStore", "sealed_row"]

#: Entries shredded per statement (bound parameters stay well below every driver's limit).
SHRED_CHUNK = 500
ENTRY_COLUMNS = ("id", "occurred_at", "received_at", "subject_ref", "body", "leaf",
                  "leaf_hash", "service_id", "register_id")


def _store_error(exc: BaseException) -> StoreError:
    """The ``StoreError`` for a driver's error (chain it: ``raise _store_error(exc) from exc``)."""
    return StoreError(f"cockpit store failed: {type(exc).__name__}")


def _insert_ignore(conn: AsyncConnection, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING: a concurrent writer (another process) wins."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def sealed_row(entry: NewEntry, key: bytes, keys: CitizenKeys, received_at: Any,
               occurred_at: Any) -> tuple[Any, ...]:
    """An entry row, its values in ``ENTRY_COLUMNS`` order (times as the store takes them)."""
    return (entry.id, occurred_at, received_at, entry.subject_ref,
            keys.seal(key, entry.id, entry.view), entry.leaf, entry.leaf_hash,
            entry.service_id, entry.register_id)


class SqlAlchemyCockpitStore:
    """``CockpitStore`` in SQLAlchemy Core (PostgreSQL; SQLite too)."""

    def __init__(self, engine: AsyncEngine, *, read_engine: AsyncEngine | None = None) -> None:
        self._engine = engine
        #: citizen feeds may read from a replica (settings.read_database_url)
        self._read_engine = read_engine or engine

    async def create_schema(self) -> None:
        await ensure_schema(self._engine, "cockpit", [t.name for t in COCKPIT_TABLES])

    @asynccontextmanager
    async def _read(self, engine: AsyncEngine | None = None) -> AsyncIterator[AsyncConnection]:
        try:
            async with (engine or self._engine).connect() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise _store_error(exc) from exc

    # -- entries ---------------------------------------------------------------------------
    async def ingest(self, entries: Sequence[NewEntry], *, received_at: datetime,
                     keys: CitizenKeys) -> int:
        if not entries:
            return 0
        # the write lock outside the transaction: the keys it loaded or created are held once
        # committed, before the lock is released (no shred of these citizens slips in)
        async with writer(self._engine):
            async with transaction(self._engine, write=False) as conn:
                ids = list(dict.fromkeys(e.id for e in entries))
                known = set((await conn.execute(
                    select(ENTRY.c.id).where(ENTRY.c.id.in_(ids)))).scalars())
                have = keys.cached({e.subject_ref for e in entries})
                new_keys: dict[str, bytes] = {}
                fresh: list[NewEntry] = []
                rows: list[dict[str, Any]] = []
                for entry in entries:
                    if entry.id in known:
                        continue
                    known.add(entry.id)
                    key = have.get(entry.subject_ref)
                    if key is None:
                        key = have[entry.subject_ref] = new_keys[entry.subject_ref] = (
                            await self._citizen_key(conn, entry.subject_ref, received_at, keys))
                    rows.append(dict(zip(ENTRY_COLUMNS, sealed_row(
                        entry, key, keys, received_at, entry.occurred_at), strict=True)))
                    fresh.append(entry)
                if rows:
                    await conn.execute(_insert_ignore(conn, ENTRY), rows)
                    subjects = list({e.subject_ref for e in fresh})
                    parents_of: dict[str, list[str]] = {}
                    for parent, child in (await conn.execute(
                            select(RELATION.c.parent_ref, RELATION.c.child_ref)
                            .where(RELATION.c.child_ref.in_(subjects)))).all():
                        parents_of.setdefault(child, []).append(parent)
                    relations, index = readers(fresh, parents_of, lambda e: e.occurred_at)
                    if relations:
                        await conn.execute(_insert_ignore(conn, RELATION), [
                            {"parent_ref": p, "child_ref": c} for p, c in relations])
                    await conn.execute(_insert_ignore(conn, CITIZEN_ENTRY), [
                        {"citizen_ref": ref, "transfer_id": transfer_id, "occurred_at": when,
                         "relation": relation} for ref, transfer_id, when, relation in index])
            keys.remember(new_keys)
        return len(fresh)

    @staticmethod
    async def _citizen_key(conn: AsyncConnection, citizen_ref: str, now: datetime,
                           keys: CitizenKeys) -> bytes:
        """The citizen's key, created if they have none (a concurrent creator wins)."""
        query = (select(CITIZEN_KEY.c.wrapped_key)
                 .where(CITIZEN_KEY.c.citizen_ref == citizen_ref))
        wrapped = (await conn.execute(query)).scalar()
        if wrapped is None:
            _, fresh = keys.new_key()
            await conn.execute(_insert_ignore(conn, CITIZEN_KEY).values(
                citizen_ref=citizen_ref, wrapped_key=fresh, created_at=now))
            wrapped = (await conn.execute(query)).scalar_one()
        return keys.unwrap(wrapped)

    async def feed(self, citizen_ref: str, *, since: datetime, limit: int,
                   after: tuple[datetime, str] | None = None) -> list[FeedRow]:
        index = CITIZEN_ENTRY.c
        query = (select(index.transfer_id, index.occurred_at, index.relation, ENTRY.c.body,
                        ENTRY.c.log_index, ENTRY.c.subject_ref, CITIZEN_KEY.c.wrapped_key)
                 .join(ENTRY, ENTRY.c.id == index.transfer_id)
                 .outerjoin(CITIZEN_KEY, CITIZEN_KEY.c.citizen_ref == ENTRY.c.subject_ref)
                 .where(index.citizen_ref == citizen_ref, index.occurred_at >= since))
        if after is not None:
            after_time, after_id = after
            query = query.where(or_(index.occurred_at < after_time,
                                    and_(index.occurred_at == after_time,
                                         index.transfer_id < after_id)))
        query = query.order_by(index.occurred_at.desc(), index.transfer_id.desc()).limit(limit)
        async with self._read(self._read_engine) as conn:
            rows = (await conn.execute(query)).all()
        return [FeedRow(transfer_id=r.transfer_id, occurred_at=as_utc(r.occurred_at),
                        relation=r.relation, subject_ref=r.subject_ref, sealed_view=r.body,
                        wrapped_key=r.wrapped_key, log_index=r.log_index) for r in rows]

    async def forget_citizen(self, citizen_ref: str, *, keys: CitizenKeys) -> None:
        async with writer(self._engine):  # as in ingest: the cache follows under the lock
            async with transaction(self._engine, write=False) as conn:
                await conn.execute(delete(CITIZEN_KEY)
                                   .where(CITIZEN_KEY.c.citizen_ref == citizen_ref))
            keys.forget(citizen_ref)

    # -- the log -----------------------------------------------------------------------------
    async def initialise_log(self, *, empty_note: str, now: datetime) -> None:
        # Insert-or-nothing, not check-then-insert: two processes starting together on a fresh
        # database (workers, or a cockpit beside `einmal` commands) both saw no state and the
        # second failed on the key. The first one's empty checkpoint stands.
        async with transaction(self._engine) as conn:
            created = await conn.execute(_insert_ignore(conn, LOG_STATE).values(
                id=1, tree_size=0, updated_at=now))
            if created.rowcount:
                await conn.execute(_insert_ignore(conn, CHECKPOINT).values(
                    tree_size=0, root=tlog.EMPTY_ROOT, note=empty_note, created_at=now))

    async def integrate(self, *, batch: int, sign: Sign, now: datetime) -> tuple[int, int]:
        async with transaction(self._engine) as conn:
            # The lock: nobody else sequences until this transaction ends.
            await conn.execute(update(LOG_STATE).where(LOG_STATE.c.id == 1)
                               .values(updated_at=now))
            size = (await conn.execute(select(LOG_STATE.c.tree_size)
                                       .where(LOG_STATE.c.id == 1))).scalar_one()
            pending = (await conn.execute(
                select(ENTRY.c.seq, ENTRY.c.leaf_hash).where(ENTRY.c.log_index.is_(None))
                .order_by(ENTRY.c.seq).limit(batch))).all()
            if not pending:
                return 0, size
            nodes = await self._nodes(conn, tree.frontier(size))
            new_size, new, root = tree.extend(size, [row.leaf_hash for row in pending], nodes)
            await conn.execute(
                update(ENTRY).where(ENTRY.c.seq == bindparam("b_seq"))
                .values(log_index=bindparam("b_index")),
                [{"b_seq": row.seq, "b_index": size + i} for i, row in enumerate(pending)])
            await conn.execute(insert(TREE_NODE), [{"level": k[0], "idx": k[1], "hash": v}
                                                   for k, v in new.items()])
            await conn.execute(update(LOG_STATE).where(LOG_STATE.c.id == 1)
                               .values(tree_size=new_size))
            await conn.execute(insert(CHECKPOINT).values(
                tree_size=new_size, root=root, note=sign(new_size, root), created_at=now))
        return len(pending), new_size

    @staticmethod
    async def _nodes(conn: AsyncConnection, wanted: Iterable[tree.Node],
                     ) -> dict[tree.Node, bytes]:
        wanted = set(wanted)
        found: dict[tree.Node, bytes] = {}
        for level in {k[0] for k in wanted}:
            idxs = [k[1] for k in wanted if k[0] == level]
            rows = await conn.execute(select(TREE_NODE.c.idx, TREE_NODE.c.hash).where(
                TREE_NODE.c.level == level, TREE_NODE.c.idx.in_(idxs)))
            found.update({(level, r.idx): r.hash for r in rows})
        if len(found) != len(wanted):
            msg = "the stored tree is missing nodes"
            raise TreeIntegrityError(msg)
        return found

    async def nodes(self, wanted: Iterable[tree.Node]) -> dict[tree.Node, bytes]:
        async with self._read() as conn:
            return await self._nodes(conn, wanted)

    async def tree_nodes(self, level: int, start: int, end: int) -> list[bytes]:
        query = (select(TREE_NODE.c.idx, TREE_NODE.c.hash)
                 .where(TREE_NODE.c.level == level, TREE_NODE.c.idx >= start,
                        TREE_NODE.c.idx < end).order_by(TREE_NODE.c.idx))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        hashes: list[bytes] = []
        for expected, (idx, found) in enumerate(rows, start):
            if idx != expected:  # a gap: only the prefix before it is the tree's
                break
            hashes.append(bytes(found))
        return hashes

    async def shredded_groups(self, *, tree_size: int, group: int) -> list[int]:
        bucket = ENTRY.c.log_index // group
        query = (select(bucket).distinct()
                 .where(ENTRY.c.leaf.is_(None), ENTRY.c.log_index.is_not(None),
                        ENTRY.c.log_index < tree_size).order_by(bucket))
        async with self._read() as conn:
            return [int(value) for value in (await conn.execute(query)).scalars()]

    async def log_status(self) -> tuple[int, int]:
        async with self._read() as conn:
            size = (await conn.execute(select(LOG_STATE.c.tree_size))).scalar() or 0
            pending = (await conn.execute(select(func.count()).select_from(ENTRY)
                                          .where(ENTRY.c.log_index.is_(None)))).scalar_one()
        return int(size), int(pending)

    async def latest_checkpoint(self) -> tuple[int, str] | None:
        async with self._read() as conn:
            row = (await conn.execute(select(CHECKPOINT.c.tree_size, CHECKPOINT.c.note)
                                      .order_by(CHECKPOINT.c.tree_size.desc()).limit(1))).first()
        return None if row is None else (int(row.tree_size), str(row.note))

    async def position(self, transfer_id: str) -> tuple[int | None, bytes] | None:
        async with self._read() as conn:
            row = (await conn.execute(select(ENTRY.c.log_index, ENTRY.c.leaf_hash)
                                      .where(ENTRY.c.id == transfer_id))).first()
        return None if row is None else (row.log_index, bytes(row.leaf_hash))

    async def leaf_hash_at(self, index: int) -> bytes | None:
        async with self._read() as conn:
            found = (await conn.execute(select(ENTRY.c.leaf_hash)
                                        .where(ENTRY.c.log_index == index))).scalar()
        return None if found is None else bytes(found)

    async def log_lines(self, *, after: int, tree_size: int, limit: int,
                        since: datetime | None = None, until: datetime | None = None,
                        service: str | None = None, register: str | None = None,
                        ) -> list[LogLine]:
        query = (select(ENTRY.c.log_index, ENTRY.c.leaf, ENTRY.c.leaf_hash)
                 .where(ENTRY.c.log_index > after, ENTRY.c.log_index < tree_size))
        if since is not None:
            query = query.where(ENTRY.c.occurred_at >= since)
        if until is not None:
            query = query.where(ENTRY.c.occurred_at < until)
        if service is not None:
            query = query.where(ENTRY.c.service_id == service)
        if register is not None:
            query = query.where(ENTRY.c.register_id == register)
        async with self._read() as conn:
            result = await conn.execute(query.order_by(ENTRY.c.log_index).limit(limit))
            return [(index, leaf, leaf_hash) for index, leaf, leaf_hash in result]

    async def shred(self, before: datetime) -> int:
        async with transaction(self._engine) as conn:
            doomed = select(ENTRY.c.id).where(ENTRY.c.occurred_at < before,
                                              ENTRY.c.log_index.is_not(None),
                                              ENTRY.c.leaf.is_not(None))
            ids = list((await conn.execute(doomed)).scalars())
            for start in range(0, len(ids), SHRED_CHUNK):
                part = ids[start:start + SHRED_CHUNK]
                await conn.execute(delete(CITIZEN_ENTRY)
                                   .where(CITIZEN_ENTRY.c.transfer_id.in_(part)))
                await conn.execute(update(ENTRY).where(ENTRY.c.id.in_(part))
                                   .values(leaf=None, body=None))
        return len(ids)

    async def publish_checkpoint(self, *, tree_size: int, note: str, cosignatures: int,
                                 now: datetime) -> bool:
        async with transaction(self._engine) as conn:
            result = await conn.execute(_insert_ignore(conn, COSIGNED).values(
                tree_size=tree_size, note=note, cosignatures=cosignatures, created_at=now))
        return bool(result.rowcount)

    async def published_checkpoint(self) -> tuple[int, str] | None:
        async with self._read() as conn:
            row = (await conn.execute(select(COSIGNED.c.tree_size, COSIGNED.c.note)
                                      .order_by(COSIGNED.c.tree_size.desc()).limit(1))).first()
        return None if row is None else (int(row.tree_size), str(row.note))

    async def readable_entry(self, citizen_ref: str, transfer_id: str, *, since: datetime,
                             ) -> tuple[int | None, bytes | None] | None:
        index = CITIZEN_ENTRY.c
        query = (select(ENTRY.c.log_index, ENTRY.c.leaf).select_from(CITIZEN_ENTRY)
                 .join(ENTRY, ENTRY.c.id == index.transfer_id)
                 .where(index.citizen_ref == citizen_ref, index.transfer_id == transfer_id,
                        index.occurred_at >= since))
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return row.log_index, None if row.leaf is None else bytes(row.leaf)
