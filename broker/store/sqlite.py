"""The broker's store on a SQLite file: the hot write transactions in plain SQL on the engine's
``SqliteWriter`` (einmal/store.py, decision 0024); every other operation as in
``SqlAlchemyBrokerStore``, whose statements these mirror (the conformance suite,
tests/integration/test_broker_store.py, requires the same rows and answers of both).

The hot transactions: the group commit (consent uses, Idempotency-Key answers, the records),
the Idempotency-Key claims (a group commit of their own: concurrent claims share one
transaction) and the delivery marks. A record is sealed on the event loop before its
transaction (one AES-GCM encryption and the protocol entry) and opened after the outbox read
(one aggregate row); the delivery mark destroys it (broker/protocol.py).

The hot reads - a consent by id (every proof that needs the citizen's consent) and the
outbox read - are one SELECT each on a read-only ``sqlite3`` connection of the store's own, on
the event loop: in WAL mode a reader neither waits for the writer nor blocks it, and the
statement touches a few cached pages (the writer's statements run on the loop for the same
reason, decision 0024). Through SQLAlchemy's async adapter the consent was a read transaction
of four thread hand-offs, ~1 ms of CPU; on the writer the outbox read was a transaction of its
own (lock, BEGIN IMMEDIATE, a COMMIT handed to the thread). Should SQLite ever answer BUSY (a
reader waits for nothing: ``busy_timeout=0``), the read runs on the writer instead. Whether
the consent is still usable when the proof is released is decided by the group commit's
conditional UPDATE, as before.
"""

import itertools
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.protocol import OutboxSeal
from broker.store.alchemy import GROUP_COMMIT_MAX, SqlAlchemyBrokerStore, open_record
from broker.store.base import ClaimState, PendingTransfer, StoredConsent
from einmal.store import (
    GroupCommit,
    SqliteWriter,
    insert_rows,
    sqlite_time,
    sqlite_writer,
    store_error,
)

__all__ = ["Pending", "SqliteBrokerStore", "read_pending"]

# = alchemy.py: _usable, SqlAlchemyBrokerStore._answer, commit_transfers, claim_idempotency,
# release_idempotency
_USE_CONSENT = (
    "UPDATE broker_consent SET uses = uses + 1 WHERE id = ? AND revoked_at IS NULL "
    "AND valid_until > ? AND (max_uses IS NULL OR uses < max_uses)")
_ANSWER = ("UPDATE broker_idempotency SET state = 'done', response = ? "
           "WHERE client_id = ? AND key = ?")
_INSERT_TRANSFER = "INSERT INTO broker_transfer (id, created_at, record, protocol, attempts)"
_INSERT_SUBJECT = "INSERT INTO broker_protocol_subject (ref, transfer_id, relation)"
_FORGET_KEYS = "DELETE FROM broker_idempotency WHERE expires_at < ?"
_CLAIMED = ("SELECT request_hash, state, response FROM broker_idempotency "
            "WHERE client_id = ? AND key = ?")
_CLAIM = ("INSERT INTO broker_idempotency (client_id, key, request_hash, state, expires_at) "
          "VALUES (?, ?, ?, 'in_flight', ?)")
_RELEASE = ("DELETE FROM broker_idempotency WHERE client_id = ? AND key = ? "
            "AND state = 'in_flight'")
_CONSENT = ("SELECT id, citizen_ref, subject_ref, subject_masked, service_id, proof_types, "
            "purpose, granted_at, valid_until, max_uses, uses, revoked_at, preview "
            "FROM broker_consent WHERE id = ?")
_MARK_DELIVERED = ("UPDATE broker_transfer SET delivered_at = ?, record = NULL "
                   "WHERE seq IN (SELECT value FROM json_each(?))")
_PENDING = ("SELECT seq, id, record FROM broker_transfer WHERE delivered_at IS NULL "
            "ORDER BY seq LIMIT ?")
# The same rows as ONE result row: fetching N rows steps SQLite N times, and the sqlite3 module
# gives the GIL back around every step (a wait and a context switch each on a busy loop). A
# sealed record is binary: it travels as hex, which a comma separates (as it does the ids).
_PENDING_ONE_ROW = (  # constant SQL (S608 below): the limit is a bound parameter
    "SELECT json_group_array(seq), group_concat(id, ','), "  # noqa: S608 - constant SQL, no input
    f"group_concat(hex(record), ',') FROM ({_PENDING})")
T = TypeVar("T")
#: (id, created_at, sealed record, protocol entry)
_Row = tuple[str, str, bytes, bytes]
#: (pseudonym, transfer id, relation)
_Subject = tuple[str, str, str]
#: (seq, transfer id, sealed record) as the outbox read finds them
Pending = tuple[int, str, bytes]
Claim = tuple[ClaimState, bytes | None]


class _Claim(NamedTuple):
    """An Idempotency-Key claim as its transaction takes it (times as ``sqlite_time``)."""

    client_id: str
    key: str
    request_hash: str
    now: str
    expires_at: str


class SqliteBrokerStore(SqlAlchemyBrokerStore):
    """``BrokerStore`` (broker/store/base.py) on a SQLite file, the hot path on its writer."""

    def __init__(self, engine: AsyncEngine, seal: OutboxSeal) -> None:
        found = sqlite_writer(engine)
        if found is None:
            msg = "SqliteBrokerStore needs a SQLite file (not in memory, not another database)"
            raise ValueError(msg)
        super().__init__(engine, seal)  # SQLite: the group commit, calling commit_transfers
        self._writer: SqliteWriter = found
        self._path = str(engine.url.database)
        #: the hot read's connection (module docstring), opened on first use
        self._reader: sqlite3.Connection | None = None
        #: claims waiting meanwhile go into one transaction (one thread hand-off, one fsync)
        self._claims: GroupCommit[_Claim, Claim] = GroupCommit(
            self._claim_batch, max_batch=GROUP_COMMIT_MAX, name="einmal-claims")

    async def aclose(self) -> None:
        await self._claims.aclose()
        await super().aclose()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def _reader_connection(self) -> sqlite3.Connection:
        if self._reader is None:
            reader = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA busy_timeout=0")  # never wait on the event loop
            reader.execute("PRAGMA query_only=ON")
            self._reader = reader
        return self._reader

    async def _read(self, read: Callable[[sqlite3.Connection], T],
                    busy: Callable[[], Awaitable[T]]) -> T:
        """``read`` on the reader connection (module docstring); ``busy()`` if SQLite answers
        BUSY; any other driver error is a ``StoreError``."""
        try:
            return read(self._reader_connection())
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                return await busy()
            raise store_error(exc) from exc
        except sqlite3.Error as exc:
            raise store_error(exc) from exc

    async def consent(self, consent_id: str) -> StoredConsent | None:
        # fetchall: the statement runs to its end, so no read transaction stays open (an open
        # reader would hold back the WAL's checkpoints)
        rows = await self._read(
            lambda conn: conn.execute(_CONSENT, (consent_id,)).fetchall(),
            lambda: self._consent_rows(consent_id))
        return _consent(rows[0]) if rows else None

    async def _consent_rows(self, consent_id: str) -> list[tuple[Any, ...]]:
        return await self._writer.run(
            lambda conn: conn.execute(_CONSENT, (consent_id,)).fetchall())

    async def claim_idempotency(self, client_id: str, key: str, request_hash: str,
                                now: datetime, expires_at: datetime) -> Claim:
        return await self._claims.submit(_Claim(client_id, key, request_hash,
                                                sqlite_time(now), sqlite_time(expires_at)))

    async def _claim_batch(self, claims: Sequence[_Claim]) -> list[Claim]:
        return await self._writer.run(lambda conn: _claim(conn, claims))

    async def release_idempotency(self, client_id: str, key: str) -> None:
        await self._writer.run(lambda conn: conn.execute(_RELEASE, (client_id, key)))

    async def commit_transfers(self, items: Sequence[PendingTransfer]) -> list[bool]:
        # the records are encoded and sealed here on the event loop: the transaction only
        # runs SQL
        seal = self._seal.seal_transfer
        rows: list[_Row] = []
        subjects: list[list[_Subject]] = []
        for item in items:
            record = item.record
            sealed = seal(record)
            rows.append((record.id, sqlite_time(record.occurred_at), sealed.sealed,
                         sealed.protocol))
            subjects.append([(ref, record.id, relation) for ref, relation in sealed.subjects])
        return await self._writer.run(
            lambda conn: _commit_transfers(conn, items, rows, subjects))

    async def pending_transfers(self, limit: int) -> list[tuple[int, bytes]]:
        # only this process delivers (on SQLite one broker serves): committed rows are all
        # there is to read, and a reader needs no transaction of the writer's
        rows = await self._read(lambda conn: read_pending(conn, limit),
                                lambda: self._writer.run(lambda conn: read_pending(conn, limit)))
        return [(seq, open_record(self._seal, transfer_id, sealed))
                for seq, transfer_id, sealed in rows]

    async def mark_delivered(self, seqs: Sequence[int], now: datetime) -> None:
        params = (sqlite_time(now), msgspec.json.encode(list(seqs)))
        await self._writer.run(lambda conn: conn.execute(_MARK_DELIVERED, params))


def _commit_transfers(conn: sqlite3.Connection, items: Sequence[PendingTransfer],
                      encoded: list[_Row], subjects: list[list[_Subject]]) -> list[bool]:
    """``commit_transfers`` in one transaction and one insert per table; ``encoded`` holds
    each item's row (id, created_at, sealed record, protocol entry), ``subjects`` its protocol
    subject rows."""
    results: list[bool] = []
    rows: list[_Row] = []
    refs: list[_Subject] = []
    for item, row, named in zip(items, encoded, subjects, strict=True):
        use = item.use
        if use is not None and conn.execute(
                _USE_CONSENT, (use.consent_id, sqlite_time(use.now))).rowcount != 1:
            results.append(False)
            continue
        rows.append(row)
        refs.extend(named)
        answer = item.answer
        if answer is not None:
            conn.execute(_ANSWER, (answer.sealed_response, answer.client_id, answer.key))
        results.append(True)
    if rows:
        insert_rows(conn, _INSERT_TRANSFER, [(*row, 0) for row in rows])
        insert_rows(conn, _INSERT_SUBJECT, refs)
    return results


def _time(value: str) -> datetime:
    """A datetime column as SQLAlchemy's SQLite dialect wrote it (``sqlite_time``), in UTC."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _consent(row: tuple[Any, ...]) -> StoredConsent:
    """= alchemy.py's ``consent_from_row`` for a row of ``_CONSENT``."""
    (consent_id, citizen_ref, subject_ref, subject_masked, service_id, proof_types, purpose,
     granted_at, valid_until, max_uses, uses, revoked_at, preview) = row
    return StoredConsent(
        id=consent_id, citizen_ref=citizen_ref, subject_ref=subject_ref,
        subject_masked=subject_masked, service_id=service_id,
        proof_types=tuple(proof_types.split(",")), purpose=purpose,
        granted_at=_time(granted_at), valid_until=_time(valid_until), max_uses=max_uses,
        uses=uses, revoked_at=_time(revoked_at) if revoked_at else None, preview=bool(preview))


def _claim(conn: sqlite3.Connection, claims: Sequence[_Claim]) -> list[Claim]:
    """The claims in order, each as ``claim_idempotency`` alone would take it: the keys that
    expired before its time forgotten, then its key claimed, or what stands in its way. The
    transaction holds SQLite's write lock (BEGIN IMMEDIATE): no one claims in between."""
    results: list[Claim] = []
    forgotten = ""
    for claim in claims:
        if claim.now != forgotten:
            conn.execute(_FORGET_KEYS, (claim.now,))
            forgotten = claim.now
        row = conn.execute(_CLAIMED, (claim.client_id, claim.key)).fetchone()
        if row is None:
            conn.execute(_CLAIM, (claim.client_id, claim.key, claim.request_hash,
                                  claim.expires_at))
            results.append(("claimed", None))
        elif row[0] != claim.request_hash:
            results.append(("mismatch", None))
        elif row[1] == "done":
            results.append(("done", bytes(row[2])))
        else:
            results.append(("in_flight", None))
    return results


def read_pending(conn: sqlite3.Connection, limit: int) -> list[Pending]:
    """The first ``limit`` undelivered rows (seq, id, sealed record) in ``seq`` order, read as
    one row; the plain query if the aggregate does not come back in order (SQLite does not
    promise it) or does not split into one id and one record per seq."""
    seqs_json, ids, joined = conn.execute(_PENDING_ONE_ROW, (limit,)).fetchone()
    seqs: list[int] = msgspec.json.decode(seqs_json) if seqs_json else []
    if not seqs:
        return []
    transfer_ids = ids.split(",")
    records = joined.split(",")
    if (len(records) == len(transfer_ids) == len(seqs)
            and all(a < b for a, b in itertools.pairwise(seqs))):
        return [(seq, transfer_id, bytes.fromhex(record))
                for seq, transfer_id, record in zip(seqs, transfer_ids, records, strict=True)]
    return [(seq, transfer_id, bytes(record or b""))  # a record gone does not open
            for seq, transfer_id, record in conn.execute(_PENDING, (limit,)).fetchall()]
