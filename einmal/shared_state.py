"""State that several processes of one component share: web sessions and abuse limits.

Behind a plain round-robin proxy, a login on one cockpit process must be valid on the other, a
logout must end it on both, and N broker processes must allow a rate limit once, not N times.
Both live in the component's own database (PostgreSQL in a scale-out deployment; the embedded
SQLite default works the same, with one process):

* ``SqlStore``         a Litestar ``Store`` (sessions; any key/value with an expiry) in a table
                       ``<prefix>_kv`` (key, value, expires_at)
* ``SharedRateLimiter`` a token bucket per actor in a table ``<prefix>_bucket``, taken in ONE
                       atomic statement (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``): the
                       row lock serialises concurrent processes, no read-modify-write race.

The tables are declared here (``kv_table``, ``bucket_table``) and created by each component's
migrations. Times are wall-clock seconds (``time.time``): the processes share no monotonic clock.
"""

import hashlib
import hmac
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from litestar.stores.base import Store
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from einmal.problems import ProblemError
from einmal.store import StoreError

__all__ = ["SharedRateLimiter", "SqlStore", "bucket_table", "forget_idle_buckets", "kv_table"]


def kv_table(metadata: MetaData, prefix: str) -> Table:
    """``<prefix>_kv``: one value per key, with an optional absolute expiry (epoch seconds)."""
    return Table(f"{prefix}_kv", metadata,
                 Column("key", String(255), primary_key=True),
                 Column("value", LargeBinary, nullable=False),
                 Column("expires_at", Float, nullable=True, index=True))


def bucket_table(metadata: MetaData, prefix: str) -> Table:
    """``<prefix>_bucket``: a token bucket per actor (tokens left at ``updated``)."""
    return Table(f"{prefix}_bucket", metadata,
                 Column("key", String(255), primary_key=True),
                 Column("tokens", Float, nullable=False),
                 Column("updated", Float, nullable=False, index=True),
                 Column("allowed", Boolean, nullable=False))


def _seconds(value: int | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _upsert(engine: AsyncEngine, table: Table) -> Any:
    return (postgresql.insert(table) if engine.dialect.name == "postgresql"
            else sqlite.insert(table))


class SqlStore(Store):
    """A Litestar ``Store`` in a database table several processes share.

    Expired entries are invisible at once (every read checks ``expires_at``) and are removed by
    ``delete_expired`` (call it from a sweeper). Driver errors become ``StoreError``.
    """

    def __init__(self, engine: AsyncEngine, table: Table, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._table = table
        self._clock = clock

    async def set(self, key: str, value: str | bytes,
                  expires_in: int | timedelta | None = None) -> None:
        data = value.encode() if isinstance(value, str) else value
        ttl = _seconds(expires_in)
        expires_at = None if ttl is None else self._clock() + ttl
        statement = _upsert(self._engine, self._table).values(
            key=key, value=data, expires_at=expires_at)
        statement = statement.on_conflict_do_update(
            index_elements=[self._table.c.key],
            set_={"value": statement.excluded.value, "expires_at": statement.excluded.expires_at})
        await self._run(statement)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        now = self._clock()
        t = self._table
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(select(t.c.value, t.c.expires_at).where(
                    t.c.key == key))).first()
                if row is None or (row.expires_at is not None and row.expires_at <= now):
                    return None
                renew = _seconds(renew_for)
                if renew is not None and row.expires_at is not None:
                    await conn.execute(update(t).where(t.c.key == key).values(
                        expires_at=now + renew))
                return bytes(row.value)
        except SQLAlchemyError as exc:
            msg = f"shared store read failed ({type(exc).__name__})"
            raise StoreError(msg) from exc

    async def delete(self, key: str) -> None:
        await self._run(delete(self._table).where(self._table.c.key == key))

    async def delete_all(self) -> None:
        await self._run(delete(self._table))

    async def delete_expired(self) -> None:
        t = self._table
        await self._run(delete(t).where(t.c.expires_at.is_not(None),
                                        t.c.expires_at <= self._clock()))

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def expires_in(self, key: str) -> int | None:
        t = self._table
        try:
            async with self._engine.connect() as conn:
                row = (await conn.execute(select(t.c.expires_at).where(t.c.key == key))).first()
        except SQLAlchemyError as exc:
            msg = f"shared store read failed ({type(exc).__name__})"
            raise StoreError(msg) from exc
        if row is None or row.expires_at is None:
            return None
        left = row.expires_at - self._clock()
        return math.ceil(left) if left > 0 else None

    async def _run(self, statement: Executable) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(statement)
        except SQLAlchemyError as exc:
            msg = f"shared store write failed ({type(exc).__name__})"
            raise StoreError(msg) from exc


# One statement per dialect: refill by elapsed time (capped at the burst), take one token if
# there is one, remember whether it was taken. PostgreSQL's LEAST/GREATEST are SQLite's
# two-argument MIN/MAX.
_TAKE = """
INSERT INTO {table} (key, tokens, updated, allowed) VALUES (:key, :burst - 1, :now, true)
ON CONFLICT (key) DO UPDATE SET
  tokens = CASE WHEN {refill} >= 1 THEN {refill} - 1 ELSE {refill} END,
  allowed = {refill} >= 1,
  updated = {greatest}(:now, {table}.updated)
RETURNING tokens, allowed
"""


class SharedRateLimiter:
    """A token bucket per actor, shared by every process using the same database.

    ``await take(actor)`` takes one token or raises the 429 ``rate-limited`` problem with
    ``Retry-After``, like the in-process ``einmal.ratelimit.RateLimiter`` (both are
    ``einmal.ratelimit.Limiter``). A store failure is a ``StoreError`` (the HTTP layer answers
    503).
    """

    def __init__(self, engine: AsyncEngine, table: Table, *, rate_per_s: float, burst: float,
                 what: str, key_secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(key_secret) < 16:
            msg = "key_secret: at least 16 bytes"
            raise ValueError(msg)
        self._key_secret = key_secret
        # one statement, committed by itself: no BEGIN/COMMIT round trips around it, and the
        # bucket's row lock is held for the statement only, not across a client round trip
        # (with a transaction, every request of one service queued on that lock). Derived
        # once here; it shares the engine's pool.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._rate = rate_per_s
        self._burst = burst
        self._what = what
        self._clock = clock
        self._table = table
        least, greatest = (("LEAST", "GREATEST") if engine.dialect.name == "postgresql"
                           else ("MIN", "MAX"))
        refill = (f"{least}(:burst, {table.name}.tokens + "
                  f"{greatest}(0, :now - {table.name}.updated) * :rate)")
        self._sql = text(_TAKE.format(table=table.name, refill=refill, greatest=greatest))

    async def take(self, actor: str) -> None:
        if self._rate <= 0:
            return
        params = {"key": self._key(actor), "burst": float(self._burst),
                  "now": self._clock(), "rate": float(self._rate)}
        try:
            async with self._engine.connect() as conn:
                tokens, allowed = (await conn.execute(self._sql, params)).one()
        except SQLAlchemyError as exc:
            msg = f"rate-limit store failed ({type(exc).__name__})"
            raise StoreError(msg) from exc
        if not allowed:
            wait = max(1, math.ceil((1 - tokens) / self._rate))
            raise ProblemError("rate-limited", f"Too many requests for this {self._what}; "
                               f"retry in {wait} s.", headers={"Retry-After": str(wait)})

    def _key(self, actor: str) -> str:
        """The bucket's key: a keyed pseudonym of the actor. Actors are IdNrs, service ids and
        client addresses - personal data that must not sit in a table in plain (issue 13 §3);
        an HMAC, not a hash: 10^11 IdNrs are quickly enumerated."""
        digest = hmac.new(self._key_secret, f"{self._what}|{actor}".encode(), hashlib.sha256)
        return f"{self._what}:{digest.hexdigest()}"

    async def forget_idle(self, idle_s: float = 3600.0) -> None:
        """Drop buckets untouched for ``idle_s`` (they would be full again anyway)."""
        await forget_idle_buckets(self._engine, self._table, self._clock() - idle_s)


async def forget_idle_buckets(engine: AsyncEngine, table: Table, before: float) -> None:
    """Retention of a bucket table: drop every bucket untouched since ``before`` (epoch s)."""
    try:
        async with engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.updated < before))
    except SQLAlchemyError as exc:
        msg = f"rate-limit store failed ({type(exc).__name__})"
        raise StoreError(msg) from exc
