"""State that several processes of one component share: web sessions and abuse limits.

Behind a plain round-robin proxy, a login on one cockpit process must be valid on the other, a
logout must end it on both, and N broker processes must allow a rate limit once, not N times.
Both live in the component's own database (PostgreSQL in a scale-out deployment; the embedded
SQLite default works the same, with one process):

* ``SqlStore``         a Litestar ``Store`` (sessions; any key/value with an expiry) in a table
                       ``<prefix>_kv`` (key, value, expires_at)
* ``SharedRateLimiter`` a token bucket per actor in a table ``<prefix>_bucket``, taken in ONE
                       atomic statement (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``,
                       autocommit): the row lock serialises concurrent processes for the
                       statement only, no read-modify-write race. Where the rate is high, a
                       process takes its tokens in small batches and keeps the rest in memory
                       (``batch_size``): one statement serves up to 50 requests.

The tables are declared here (``kv_table``, ``bucket_table``) and created by each component's
migrations. Times are wall-clock seconds (``time.time``): the processes share no monotonic clock.
"""

import asyncio
import hashlib
import hmac
import math
import time
from collections import OrderedDict
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

__all__ = ["SharedRateLimiter", "SqlStore", "batch_size", "bucket_table", "forget_idle_buckets",
           "kv_table"]


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


# One statement per dialect: refill by elapsed time (capped at the burst), take :want tokens if
# there are that many (else none), remember whether they were taken; a new bucket starts full
# (:fresh = burst - want). PostgreSQL's LEAST/GREATEST are SQLite's two-argument MIN/MAX.
_TAKE = """
INSERT INTO {table} (key, tokens, updated, allowed) VALUES (:key, :fresh, :now, true)
ON CONFLICT (key) DO UPDATE SET
  tokens = CASE WHEN {refill} >= :want THEN {refill} - :want ELSE {refill} END,
  allowed = {refill} >= :want,
  updated = {greatest}(:now, {table}.updated)
RETURNING tokens, allowed
"""

#: A process takes at most this many tokens at once, ...
_BATCH_MAX = 50
#: ... at most this many seconds of the rate ...
_BATCH_SECONDS = 0.05
#: ... and at most this share of the burst.
_BATCH_BURST_SHARE = 0.05


def batch_size(rate_per_s: float, burst: float) -> int:
    """Tokens a process takes from the shared bucket at once (1: every request asks the
    database). At most 50, 50 ms of the rate and 5 % of the burst: for the broker's defaults
    50 for a service (1,000/s, burst 2,000), 5 for a client address at the token endpoint
    (100/s), 1 for a citizen (20/s)."""
    return max(1, min(_BATCH_MAX, int(rate_per_s * _BATCH_SECONDS),
                      int(burst * _BATCH_BURST_SHARE)))


class _Reserve:
    """Tokens this process has taken from an actor's shared bucket and not used yet."""

    __slots__ = ("lock", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.lock = asyncio.Lock()  # one refill in flight per actor and process


class SharedRateLimiter:
    """A token bucket per actor, shared by every process using the same database.

    ``await take(actor)`` takes one token or raises the 429 ``rate-limited`` problem with
    ``Retry-After``, like the in-process ``einmal.ratelimit.RateLimiter`` (both are
    ``einmal.ratelimit.Limiter``). A store failure is a ``StoreError`` (the HTTP layer answers
    503): whenever a request needs the database, it fails closed.

    Batches (``batch_size``; ``batch=1``: every request runs the statement): when its reserve
    for an actor is empty, a process takes ``batch`` tokens in one statement, uses one and keeps
    the rest for its next requests, which need no database round trip. While the shared bucket
    holds fewer than ``batch`` tokens, it takes them one at a time (a second statement), so near
    the limit the processes share the bucket request by request again. Taken tokens have left
    the shared bucket, so nothing is allowed twice; the slack is what the reserves hold: over
    any interval the processes together allow at most ``burst + rate * interval`` plus
    ``batch - 1`` per process (49 per broker process for a service at the defaults, 2.5 % of
    its burst). Fairness: a reserve belongs to the process that took it, so with the bucket
    nearly empty one process may still allow up to ``batch - 1`` requests (50 ms of the rate)
    while another already refuses; over longer intervals the processes' shares even out.
    """

    def __init__(self, engine: AsyncEngine, table: Table, *, rate_per_s: float, burst: float,
                 what: str, key_secret: bytes, clock: Callable[[], float] = time.time,
                 batch: int | None = None, max_actors: int = 100_000) -> None:
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
        self._batch = batch_size(rate_per_s, burst) if batch is None else max(1, batch)
        self._max = max_actors
        self._reserves: OrderedDict[str, _Reserve] = OrderedDict()
        least, greatest = (("LEAST", "GREATEST") if engine.dialect.name == "postgresql"
                           else ("MIN", "MAX"))
        refill = (f"{least}(:burst, {table.name}.tokens + "
                  f"{greatest}(0, :now - {table.name}.updated) * :rate)")
        self._sql = text(_TAKE.format(table=table.name, refill=refill, greatest=greatest))

    async def take(self, actor: str) -> None:
        if self._rate <= 0:
            return
        if self._batch == 1:
            await self._take_shared(actor, 1)
            return
        reserve = self._reserves.get(actor)
        if reserve is None:
            reserve = self._reserves[actor] = _Reserve()
            if len(self._reserves) > self._max:  # a dropped reserve's tokens are lost: stricter
                self._reserves.popitem(last=False)
        if reserve.tokens:
            reserve.tokens -= 1
            return
        async with reserve.lock:
            if not reserve.tokens:  # else another request of this process refilled it meanwhile
                reserve.tokens = await self._take_shared(actor, self._batch)
                if actor in self._reserves:  # the actors in use stay, the idle ones go first
                    self._reserves.move_to_end(actor)
            reserve.tokens -= 1

    async def _take_shared(self, actor: str, want: int) -> int:
        """Take ``want`` tokens from the shared bucket, or one if fewer are left; the number
        taken. None left: the 429 problem."""
        key = self._key(actor)
        tokens, allowed = await self._statement(key, want)
        if allowed:
            return want
        if want > 1 and tokens >= 1:
            tokens, allowed = await self._statement(key, 1)
            if allowed:
                return 1
        wait = max(1, math.ceil((1 - tokens) / self._rate))
        raise ProblemError("rate-limited", f"Too many requests for this {self._what}; "
                           f"retry in {wait} s.", headers={"Retry-After": str(wait)})

    async def _statement(self, key: str, want: int) -> tuple[float, bool]:
        params = {"key": key, "burst": float(self._burst), "want": float(want),
                  "fresh": float(self._burst - want), "now": self._clock(),
                  "rate": float(self._rate)}
        try:
            async with self._engine.connect() as conn:
                tokens, allowed = (await conn.execute(self._sql, params)).one()
        except SQLAlchemyError as exc:
            msg = f"rate-limit store failed ({type(exc).__name__})"
            raise StoreError(msg) from exc
        return float(tokens), bool(allowed)

    def _key(self, actor: str) -> str:
        """The bucket's key: a keyed pseudonym of the actor. Actors are IdNrs, service ids and
        client addresses - personal data that must not sit in a table in plain (issue 13 §3);
        an HMAC, not a hash: 10^11 IdNrs are quickly enumerated. (The reserves in memory are
        keyed by the actor, like ``RateLimiter``'s buckets: nothing of them is stored.)"""
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
