"""The tamper-evident transfer log: sequencer, checkpoints, proofs, export, shredding.

One sequencer at a time integrates new entries in batches (the ``cockpit_log_state`` row is
updated first in the same transaction: a row lock on PostgreSQL, the write lock on SQLite), so a
crashed sequencer leaves either the whole batch or nothing - the tree never forks.
"""

import asyncio
import base64
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cockpit.tables import CheckpointRow, CitizenEntryRow, EntryRow, LogStateRow, TreeNodeRow
from einmal_client import tlog
from einmal.keys import SigningKey, public_key_from_jwk
from einmal.problems import ProblemError
from einmal.store import StoreError, insert_rows, sqlite_time, sqlite_writer, writer

__all__ = ["TransferLog"]

log = structlog.get_logger()

_entry = EntryRow.__table__  # type: ignore[attr-defined]
_node = TreeNodeRow.__table__  # type: ignore[attr-defined]
_checkpoint = CheckpointRow.__table__  # type: ignore[attr-defined]
_state = LogStateRow.__table__  # type: ignore[attr-defined]
_index = CitizenEntryRow.__table__  # type: ignore[attr-defined]
_b64 = base64.b64encode
_line = msgspec.json.Encoder()


def _frontier(size: int) -> list[tuple[int, int]]:
    """The (level, index) of the perfect subtrees a tree of ``size`` leaves is made of."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length())
            if size >> level & 1]


def _perfect(start: int, end: int) -> tuple[int, int]:
    level = (end - start).bit_length() - 1
    return level, start >> level


def _needed(fn: Callable[[tlog.HashAt], Any]) -> set[tuple[int, int]]:
    """The stored nodes a tree computation touches (a dry run with placeholder hashes)."""
    keys: set[tuple[int, int]] = set()

    def record(start: int, end: int) -> bytes:
        keys.add(_perfect(start, end))
        return b"\x00" * 32

    fn(record)
    return keys


class TransferLog:
    def __init__(self, *, engine: AsyncEngine, key: SigningKey, origin: str,
                 batch_size: int = 5000, interval_s: float = 0.5,
                 retention_days: int = 730, retired_keys: list[dict[str, Any]] = ()) -> None:
        self._engine = engine
        self._sqlite = sqlite_writer(engine)
        self._key = key
        self.origin = origin
        self._batch = batch_size
        self._interval = interval_s
        self._retention = timedelta(days=retention_days)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_shred: datetime | None = None
        self.verifier_key = tlog.verifier_key(origin, key.private_key.public_key())
        #: the current verifier key first, then retired ones (older checkpoints verify)
        self.verifier_keys = [self.verifier_key, *(
            tlog.verifier_key(origin, public_key_from_jwk(jwk)) for jwk in retired_keys)]

    # -- lifecycle -------------------------------------------------------------------------
    async def initialise(self, conn: AsyncConnection) -> None:
        """Create the state row and the signed empty checkpoint, once."""
        if (await conn.execute(select(_state.c.id))).first() is None:
            now = datetime.now(UTC)
            await conn.execute(insert(_state).values(id=1, tree_size=0, updated_at=now))
            await conn.execute(insert(_checkpoint).values(
                tree_size=0, root=tlog.EMPTY_ROOT, note=self._sign(0, tlog.EMPTY_ROOT),
                created_at=now))

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="einmal-sequencer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
                await asyncio.sleep(0.1)  # integrate bursts in one batch (≤ ~1 s behind)
            self._wake.clear()
            try:
                while await self.integrate() == self._batch:
                    pass
                now = datetime.now(UTC)
                if self._last_shred is None or now - self._last_shred > timedelta(hours=1):
                    await self.shred(now - self._retention)
                    self._last_shred = now
            except (SQLAlchemyError, StoreError, OSError, ProblemError) as exc:
                log.warning("log.sequencer_failed", error=type(exc).__name__)
                await asyncio.sleep(1)

    # -- sequencing ----------------------------------------------------------------------------
    def _sign(self, size: int, root: bytes) -> str:
        text = tlog.format_checkpoint(tlog.Checkpoint(origin=self.origin, size=size, root=root))
        return tlog.sign_note(text, self.origin, self._key.private_key)

    async def integrate(self) -> int:
        """Integrate one batch of pending entries and sign a checkpoint. Returns the count.
        On SQLite the transaction runs on the SQLite writer (decision 0024)."""
        if self._sqlite is not None:
            count, new_size = await self._sqlite.run(self._integrate_sqlite)
        else:
            count, new_size = await self._integrate_sqlalchemy()
        if count:
            log.info("log.integrated", count=count, tree_size=new_size)
        return count

    def _extend(self, size: int, leaf_hashes: list[bytes],
                nodes: dict[tuple[int, int], bytes],
                ) -> tuple[int, dict[tuple[int, int], bytes], bytes]:
        """Append leaves to a tree of ``size`` whose frontier ``nodes`` are given: the new
        size, the new nodes (level, index) -> hash, and the new root."""
        new: dict[tuple[int, int], bytes] = {}
        for offset, leaf_hash in enumerate(leaf_hashes):
            index = size + offset
            level, idx, h = 0, index, leaf_hash
            new[(0, idx)] = h
            while idx & 1:
                left = new.get((level, idx - 1)) or nodes[(level, idx - 1)]
                h = tlog.node_hash(left, h)
                level, idx = level + 1, idx >> 1
                new[(level, idx)] = h
        new_size = size + len(leaf_hashes)
        known = {**nodes, **new}
        return new_size, new, tlog.mth_from(new_size, lambda s, e: known[_perfect(s, e)])

    async def _integrate_sqlalchemy(self) -> tuple[int, int]:
        async with writer(self._engine), self._engine.begin() as conn:
            now = datetime.now(UTC)
            # The lock: nobody else sequences until this transaction ends.
            await conn.execute(update(_state).where(_state.c.id == 1).values(updated_at=now))
            size = (await conn.execute(select(_state.c.tree_size).where(_state.c.id == 1))
                    ).scalar_one()
            pending = (await conn.execute(
                select(_entry.c.seq, _entry.c.leaf_hash).where(_entry.c.log_index.is_(None))
                .order_by(_entry.c.seq).limit(self._batch))).all()
            if not pending:
                return 0, size
            nodes = await self._nodes(conn, _frontier(size))
            new_size, new, root = self._extend(size, [row.leaf_hash for row in pending], nodes)
            await conn.execute(
                update(_entry).where(_entry.c.seq == bindparam("b_seq"))
                .values(log_index=bindparam("b_index")),
                [{"b_seq": row.seq, "b_index": size + i} for i, row in enumerate(pending)])
            await conn.execute(insert(_node), [{"level": k[0], "idx": k[1], "hash": v}
                                               for k, v in new.items()])
            await conn.execute(update(_state).where(_state.c.id == 1)
                               .values(tree_size=new_size))
            await conn.execute(insert(_checkpoint).values(
                tree_size=new_size, root=root, note=self._sign(new_size, root), created_at=now))
        return len(pending), new_size

    def _integrate_sqlite(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """``_integrate_sqlalchemy`` on the SQLite writer: the same statements."""
        now = sqlite_time(datetime.now(UTC))
        size = conn.execute("SELECT tree_size FROM cockpit_log_state WHERE id = 1").fetchone()[0]
        pending = conn.execute("SELECT seq, leaf_hash FROM cockpit_entry WHERE log_index IS NULL "
                               "ORDER BY seq LIMIT ?", (self._batch,)).fetchall()
        if not pending:
            return 0, size
        nodes: dict[tuple[int, int], bytes] = {}
        for level, idx in _frontier(size):
            row = conn.execute("SELECT hash FROM cockpit_tree_node WHERE level = ? AND idx = ?",
                               (level, idx)).fetchone()
            if row is None:
                raise ProblemError("internal", "the stored tree is missing nodes")
            nodes[(level, idx)] = row[0]
        new_size, new, root = self._extend(size, [row[1] for row in pending], nodes)
        first, last = pending[0][0], pending[-1][0]
        if last - first == len(pending) - 1:
            # seqs without a gap (the usual case): one statement, one step (see insert_rows)
            conn.execute("UPDATE cockpit_entry SET log_index = seq - ? WHERE seq BETWEEN ? AND ?",
                         (first - size, first, last))
        else:
            conn.executemany("UPDATE cockpit_entry SET log_index = ? WHERE seq = ?",
                             [(size + i, row[0]) for i, row in enumerate(pending)])
        insert_rows(conn, "INSERT INTO cockpit_tree_node (level, idx, hash)",
                    [(k[0], k[1], v) for k, v in new.items()])
        conn.execute("UPDATE cockpit_log_state SET tree_size = ?, updated_at = ? WHERE id = 1",
                     (new_size, now))
        conn.execute("INSERT INTO cockpit_checkpoint (tree_size, root, note, created_at) "
                     "VALUES (?, ?, ?, ?)", (new_size, root, self._sign(new_size, root), now))
        return len(pending), new_size

    async def _nodes(self, conn: AsyncConnection, keys: Iterable[tuple[int, int]],
                     ) -> dict[tuple[int, int], bytes]:
        wanted = set(keys)
        found: dict[tuple[int, int], bytes] = {}
        for level in {k[0] for k in wanted}:
            idxs = [k[1] for k in wanted if k[0] == level]
            rows = await conn.execute(select(_node.c.idx, _node.c.hash).where(
                _node.c.level == level, _node.c.idx.in_(idxs)))
            found.update({(level, r.idx): r.hash for r in rows})
        if len(found) != len(wanted):
            msg = "the stored tree is missing nodes"
            raise ProblemError("internal", msg)
        return found

    async def status(self) -> tuple[int, int]:
        """(integrated tree size, entries waiting for the sequencer)."""
        from sqlalchemy import func

        async with self._engine.connect() as conn:
            size = (await conn.execute(select(_state.c.tree_size))).scalar() or 0
            pending = (await conn.execute(select(func.count()).select_from(_entry)
                                          .where(_entry.c.log_index.is_(None)))).scalar_one()
        return int(size), int(pending)

    # -- reading -------------------------------------------------------------------------------
    async def checkpoint(self) -> tuple[int, str]:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_checkpoint.c.tree_size, _checkpoint.c.note)
                                      .order_by(_checkpoint.c.tree_size.desc()).limit(1))).first()
        if row is None:
            raise ProblemError("not-found", "The log has no checkpoint yet.")
        return int(row.tree_size), str(row.note)

    async def _computed(self, fn: Callable[[tlog.HashAt], Any]) -> Any:
        keys = _needed(fn)
        async with self._engine.connect() as conn:
            nodes = await self._nodes(conn, keys)
        return fn(lambda s, e: nodes[_perfect(s, e)])

    async def entry_of(self, transfer_id: str) -> dict[str, Any]:
        """Where a transfer sits in the log: its index once integrated (for the service that
        received it, or the citizen, to ask for the inclusion proof)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_entry.c.log_index, _entry.c.leaf_hash)
                                      .where(_entry.c.id == transfer_id))).first()
        if row is None:
            raise ProblemError("not-found", "No such transfer in the log (yet): records reach "
                               "the cockpit within seconds.")
        size, _ = await self.checkpoint()
        return {"transfer_id": transfer_id, "index": row.log_index,
                "integrated": row.log_index is not None and row.log_index < size,
                "tree_size": size, "leaf_hash": _b64(row.leaf_hash).decode()}

    async def inclusion(self, index: int, tree_size: int) -> dict[str, Any]:
        size, _ = await self.checkpoint()
        if not 0 <= index < tree_size:
            raise ProblemError("invalid-request", "index must be >= 0 and < tree_size.",
                               status=400)
        if tree_size > size:
            raise ProblemError("not-found", f"No checkpoint of size {tree_size} yet; the latest "
                               f"has size {size}. Entries are integrated within about a second.")
        async with self._engine.connect() as conn:
            leaf = (await conn.execute(select(_entry.c.leaf_hash)
                                       .where(_entry.c.log_index == index))).scalar_one()
        path = await self._computed(lambda h: tlog.inclusion_path(index, tree_size, h))
        return {"index": index, "tree_size": tree_size, "leaf_hash": _b64(leaf).decode(),
                "hashes": tlog.hashes_b64(path)}

    async def consistency(self, first: int, second: int) -> dict[str, Any]:
        size, _ = await self.checkpoint()
        if not 1 <= first <= second:
            raise ProblemError("invalid-request", "from must be >= 1 and <= to.", status=400)
        if second > size:
            raise ProblemError("not-found", f"No checkpoint of size {second} yet; the latest "
                               f"has size {size}.")
        proof = await self._computed(lambda h: tlog.consistency_proof(first, second, h))
        return {"from": first, "to": second, "hashes": tlog.hashes_b64(proof)}

    async def export(self, *, tree_size: int, after: int = -1, since: datetime | None = None,
                     until: datetime | None = None, service: str | None = None,
                     register: str | None = None, chunk: int = 5000) -> AsyncIterator[bytes]:
        """NDJSON lines in index order, in constant memory (keyset pages of ``chunk``)."""
        filtered = any(v is not None for v in (since, until, service, register))
        cursor = after
        while True:
            query = (select(_entry.c.log_index, _entry.c.leaf, _entry.c.leaf_hash)
                     .where(_entry.c.log_index > cursor, _entry.c.log_index < tree_size))
            if since is not None:
                query = query.where(_entry.c.occurred_at >= since)
            if until is not None:
                query = query.where(_entry.c.occurred_at < until)
            if service is not None:
                query = query.where(_entry.c.service_id == service)
            if register is not None:
                query = query.where(_entry.c.register_id == register)
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query.order_by(_entry.c.log_index).limit(chunk))).all()
            for row in rows:
                # The leaf is canonical JSON already: it is spliced in as the decoded entry.
                if row.leaf is not None:
                    head = b'{"index":%d,"leaf":"%s","entry":%s' % (
                        row.log_index, _b64(row.leaf), row.leaf)
                else:
                    head = b'{"index":%d,"leaf_hash":"%s","entry":null' % (
                        row.log_index, _b64(row.leaf_hash))
                if filtered:
                    index = int(row.log_index)
                    path = await self._computed(
                        lambda h, i=index: tlog.inclusion_path(i, tree_size, h))
                    head += b',"inclusion":' + _line.encode(tlog.hashes_b64(path))
                yield head + b"}\n"
            if len(rows) < chunk:
                return
            cursor = rows[-1].log_index

    # -- retention -----------------------------------------------------------------------------
    async def shred(self, before: datetime) -> int:
        """Destroy the per-entry data of integrated entries older than ``before``. The leaf
        hashes stay, so the tree, checkpoints and proofs still verify."""
        async with writer(self._engine), self._engine.begin() as conn:
            doomed = select(_entry.c.id).where(_entry.c.occurred_at < before,
                                               _entry.c.log_index.is_not(None),
                                               _entry.c.leaf.is_not(None))
            ids = [r.id for r in (await conn.execute(doomed)).all()]
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                await conn.execute(delete(_index).where(_index.c.transfer_id.in_(part)))
                await conn.execute(update(_entry).where(_entry.c.id.in_(part))
                                   .values(leaf=None, body=None))
        if ids:
            log.info("log.shredded", count=len(ids))
        return len(ids)

