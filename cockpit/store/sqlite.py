"""The cockpit's store on a SQLite file: the hot write transactions on the ``SqliteWriter``.

Ingest and sequencing run as plain SQL on the engine's ``SqliteWriter`` (decision 0024: the
statements on the event loop, the durable commit on the writer thread, one hand-over per
transaction); everything else is ``SqlAlchemyCockpitStore``'s. The statements below are the
SQLAlchemy ones of cockpit/store/alchemy.py written out, and the conformance suite holds them to
the same rows. Ids travel as one JSON array (``json_each``), rows as multi-row INSERTs
(``einmal.store.insert_rows``); times go in as ``sqlite_time``, as SQLAlchemy stores them.
"""

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit import tree
from cockpit.errors import TreeIntegrityError
from cockpit.readers import readers
from cockpit.store.alchemy import ENTRY_COLUMNS, SqlAlchemyCockpitStore, sealed_row
from cockpit.store.base import CitizenKeys, NewEntry, Sign
from einmal.store import SqliteWriter, insert_rows, sqlite_time, sqlite_writer

__all__ = ["SqliteCockpitStore"]

_KNOWN_IDS = "SELECT id FROM cockpit_entry WHERE id IN (SELECT value FROM json_each(?))"
_INSERT_ENTRY = f"INSERT INTO cockpit_entry ({', '.join(ENTRY_COLUMNS)})"
_PARENTS = ("SELECT parent_ref, child_ref FROM cockpit_relation "
            "WHERE child_ref IN (SELECT value FROM json_each(?))")
_INSERT_RELATION = "INSERT INTO cockpit_relation (parent_ref, child_ref)"
_INSERT_INDEX = ("INSERT INTO cockpit_citizen_entry (citizen_ref, transfer_id, occurred_at, "
                 "relation)")
_IGNORE = "ON CONFLICT DO NOTHING"
_KEY = "SELECT wrapped_key FROM cockpit_citizen_key WHERE citizen_ref = ?"
_ADD_KEY = ("INSERT INTO cockpit_citizen_key (citizen_ref, wrapped_key, created_at) "
            "VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
_TREE_SIZE = "SELECT tree_size FROM cockpit_log_state WHERE id = 1"
_PENDING = "SELECT seq, leaf_hash FROM cockpit_entry WHERE log_index IS NULL ORDER BY seq LIMIT ?"
_NODE = "SELECT hash FROM cockpit_tree_node WHERE level = ? AND idx = ?"
_NUMBER_RUN = "UPDATE cockpit_entry SET log_index = seq - ? WHERE seq BETWEEN ? AND ?"
_NUMBER_ONE = "UPDATE cockpit_entry SET log_index = ? WHERE seq = ?"
_INSERT_NODE = "INSERT INTO cockpit_tree_node (level, idx, hash)"
_SET_SIZE = "UPDATE cockpit_log_state SET tree_size = ?, updated_at = ? WHERE id = 1"
_INSERT_CHECKPOINT = ("INSERT INTO cockpit_checkpoint (tree_size, root, note, created_at) "
                      "VALUES (?, ?, ?, ?)")
_json = msgspec.json.Encoder()


class SqliteCockpitStore(SqlAlchemyCockpitStore):
    """``CockpitStore`` on a SQLite file, ingest and sequencing on its ``SqliteWriter``."""

    def __init__(self, engine: AsyncEngine, *, read_engine: AsyncEngine | None = None) -> None:
        found = sqlite_writer(engine)
        if found is None:
            msg = "SqliteCockpitStore needs a SQLite file engine (not in memory)"
            raise ValueError(msg)
        super().__init__(engine, read_engine=read_engine)
        self._writer: SqliteWriter = found

    async def ingest(self, entries: Sequence[NewEntry], *, received_at: datetime,
                     keys: CitizenKeys) -> int:
        if not entries:
            return 0
        cached = keys.cached({e.subject_ref for e in entries})
        # the keys it loaded or created are held once committed, under the write lock: a
        # crypto-shred of the same citizen cannot slip in between (it takes that lock)
        count, _ = await self._writer.run(
            lambda conn: self._ingest(conn, entries, cached, received_at, keys),
            then=lambda result: keys.remember(result[1]))
        return count

    @staticmethod
    def _ingest(conn: sqlite3.Connection, entries: Sequence[NewEntry], cached: dict[str, bytes],
                received_at: datetime, keys: CitizenKeys) -> tuple[int, dict[str, bytes]]:
        """The ingest in one transaction: the count of new entries and the citizen keys it
        loaded or created (cached only after the commit: a key cached from a rolled-back
        transaction would seal later views with a key stored nowhere)."""
        ids = _json.encode(list(dict.fromkeys(e.id for e in entries)))
        known = {row[0] for row in conn.execute(_KNOWN_IDS, (ids,))}
        have = dict(cached)
        new_keys: dict[str, bytes] = {}
        fresh: list[NewEntry] = []
        rows: list[tuple[Any, ...]] = []
        received = sqlite_time(received_at)
        times: dict[str, str] = {}  # transfer id -> occurred_at as stored
        for entry in entries:
            if entry.id in known:
                continue
            known.add(entry.id)
            ref = entry.subject_ref
            key = have.get(ref)
            if key is None:
                key = have[ref] = new_keys[ref] = _citizen_key(conn, ref, received, keys)
            occurred = times[entry.id] = sqlite_time(entry.occurred_at)
            rows.append(sealed_row(entry, key, keys, received, occurred))
            fresh.append(entry)
        if rows:
            insert_rows(conn, _INSERT_ENTRY, rows, _IGNORE)
            subjects = _json.encode(list({e.subject_ref for e in fresh}))
            parents_of: dict[str, list[str]] = {}
            for parent, child in conn.execute(_PARENTS, (subjects,)):
                parents_of.setdefault(child, []).append(parent)
            relations, index = readers(fresh, parents_of, lambda e: times[e.id])
            if relations:
                insert_rows(conn, _INSERT_RELATION, relations, _IGNORE)
            insert_rows(conn, _INSERT_INDEX, index, _IGNORE)
        return len(fresh), new_keys

    async def integrate(self, *, batch: int, sign: Sign, now: datetime) -> tuple[int, int]:
        return await self._writer.run(
            lambda conn: _integrate(conn, batch, sign, sqlite_time(now)))


def _citizen_key(conn: sqlite3.Connection, citizen_ref: str, now: str,
                 keys: CitizenKeys) -> bytes:
    """The citizen's key, created if they have none."""
    row = conn.execute(_KEY, (citizen_ref,)).fetchone()
    if row is None:
        _, wrapped = keys.new_key()
        conn.execute(_ADD_KEY, (citizen_ref, wrapped, now))
        row = conn.execute(_KEY, (citizen_ref,)).fetchone()
    return keys.unwrap(row[0])


def _integrate(conn: sqlite3.Connection, batch: int, sign: Sign, now: str) -> tuple[int, int]:
    """``SqlAlchemyCockpitStore.integrate`` in one writer transaction (BEGIN IMMEDIATE holds
    the database's write lock: no other sequencer runs meanwhile)."""
    size = conn.execute(_TREE_SIZE).fetchone()[0]
    pending = conn.execute(_PENDING, (batch,)).fetchall()
    if not pending:
        return 0, size
    nodes: dict[tree.Node, bytes] = {}
    for level, idx in tree.frontier(size):
        row = conn.execute(_NODE, (level, idx)).fetchone()
        if row is None:
            msg = "the stored tree is missing nodes"
            raise TreeIntegrityError(msg)
        nodes[(level, idx)] = row[0]
    new_size, new, root = tree.extend(size, [row[1] for row in pending], nodes)
    first, last = pending[0][0], pending[-1][0]
    if last - first == len(pending) - 1:
        # seqs without a gap (the usual case): one statement, one step (see insert_rows)
        conn.execute(_NUMBER_RUN, (first - size, first, last))
    else:
        conn.executemany(_NUMBER_ONE, [(size + i, row[0]) for i, row in enumerate(pending)])
    insert_rows(conn, _INSERT_NODE, [(level, idx, h) for (level, idx), h in new.items()])
    conn.execute(_SET_SIZE, (new_size, now))
    conn.execute(_INSERT_CHECKPOINT, (new_size, root, sign(new_size, root), now))
    return len(pending), new_size
