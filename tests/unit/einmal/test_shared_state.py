"""State shared across processes: a Litestar Store and a token bucket in the database.

Two engines on the same database stand for two processes (each has its own pool and
connections); on PostgreSQL too when EINMAL_TEST_DATABASE_URL is set."""

import asyncio
import os
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from einmal.problems import ProblemError
from einmal.settings import Settings, _async_driver
from einmal.shared_state import (
    SharedRateLimiter,
    SqlStore,
    batch_size,
    bucket_table,
    kv_table,
)
from einmal.store import StoreError, create_engine

_PG = os.environ.get("EINMAL_TEST_DATABASE_URL")
SECRET = b"s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Engines = tuple[AsyncEngine, AsyncEngine, Table, Table]


@pytest.fixture(name="engines", params=["sqlite", *(["postgresql"] if _PG else [])])
async def fx_engines(request: pytest.FixtureRequest, tmp_path: Path,
                     ) -> AsyncIterator[Engines]:
    if request.param == "postgresql":
        assert _PG
        url = _async_driver(_PG)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first, second = create_engine(url), create_engine(url)
    metadata = MetaData()
    prefix = f"t{secrets.token_hex(4)}"  # the PostgreSQL test database is shared
    kv, bucket = kv_table(metadata, prefix), bucket_table(metadata, prefix)
    async with first.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield first, second, kv, bucket
    async with first.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    await first.dispose()
    await second.dispose()


class TestSqlStore:
    async def test_a_broken_table_is_a_store_error(self, tmp_path: Path) -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
        store = SqlStore(engine, kv_table(MetaData(), "missing"))
        with pytest.raises(StoreError):
            await store.get("k")
        with pytest.raises(StoreError):
            await store.set("k", b"v")
        await engine.dispose()

    async def test_expired_values_are_gone_for_every_process(self, engines: Engines) -> None:
        first, second, kv, _ = engines
        clock = Clock()
        a, b = SqlStore(first, kv, clock=clock), SqlStore(second, kv, clock=clock)
        await a.set("session", b"anna", expires_in=60)
        clock.now += 60
        assert await b.get("session") is None
        assert await a.exists("session") is False
        await a.delete_expired()
        assert await a.expires_in("session") is None

    async def test_a_value_set_in_one_process_is_read_and_deleted_in_the_other(
            self, engines: Engines) -> None:
        first, second, kv, _ = engines
        clock = Clock()
        a, b = SqlStore(first, kv, clock=clock), SqlStore(second, kv, clock=clock)
        await a.set("session", b"anna", expires_in=60)
        assert await b.get("session") == b"anna"
        assert await b.expires_in("session") == 60
        await a.set("session", "bertha", expires_in=30)  # overwrite, str is stored as UTF-8
        assert await b.get("session", renew_for=120) == b"bertha"
        assert await a.expires_in("session") == 120  # renewed by the other process
        await b.delete("session")  # logout on one process ends it on both
        assert await a.get("session") is None
        await a.set("forever", b"x")
        assert await b.expires_in("forever") is None
        assert await b.get("forever") == b"x"
        await b.delete_all()
        assert await a.get("forever") is None


class TestSharedRateLimiter:
    async def test_two_processes_allow_the_limit_once(self, engines: Engines) -> None:
        first, second, _, bucket = engines
        clock = Clock()
        a = SharedRateLimiter(first, bucket, rate_per_s=1, burst=5, what="service", clock=clock,
                              key_secret=SECRET)
        b = SharedRateLimiter(second, bucket, rate_per_s=1, burst=5, what="service", clock=clock,
                              key_secret=SECRET)
        outcomes: list[bool] = []

        async def take(limiter: SharedRateLimiter) -> None:
            try:
                await limiter.take("svc")
                outcomes.append(True)
            except ProblemError as exc:
                assert exc.status == 429
                assert exc.headers["Retry-After"] == "1"
                outcomes.append(False)

        await asyncio.gather(*(take(a if i % 2 else b) for i in range(12)))
        assert outcomes.count(True) == 5  # the burst, once - not once per process
        clock.now += 2  # two tokens back
        await take(a)
        await take(b)
        await take(a)
        assert outcomes[-3:] == [True, True, False]

    async def test_actors_have_separate_buckets_and_zero_rate_is_off(
            self, engines: Engines) -> None:
        first, _, _, bucket = engines
        clock = Clock()
        limiter = SharedRateLimiter(first, bucket, rate_per_s=1, burst=1, what="citizen",
                                    clock=clock, key_secret=SECRET)
        await limiter.take("81709656328")
        await limiter.take("bertha")
        async with first.connect() as conn:  # the table holds keyed pseudonyms, no actor
            keys = [row[0] for row in await conn.execute(select(bucket.c.key))]
        assert len(keys) == 2
        assert not any("81709656328" in key or "bertha" in key for key in keys)
        with pytest.raises(ProblemError):
            await limiter.take("81709656328")
        off = SharedRateLimiter(first, bucket, rate_per_s=0, burst=0, what="citizen",
                                key_secret=SECRET)
        for _ in range(3):
            await off.take("anna")
        clock.now += 7200
        await limiter.forget_idle(3600)
        await limiter.take("anna")  # a fresh, full bucket


def _statements(engine: AsyncEngine, table: Table) -> list[str]:
    """The bucket statements ``engine`` runs from now on (one entry each)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        if f"INSERT INTO {table.name}" in args[2]:
            seen.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


async def _allowed(limiter: SharedRateLimiter, actor: str = "svc") -> bool:
    try:
        await limiter.take(actor)
    except ProblemError as exc:
        assert exc.status == 429
        return False
    return True


class TestBatches:
    """Where the rate is high, a process takes its tokens in batches (fewer round trips); the
    processes together still allow at most the bucket plus ``batch - 1`` per process."""

    async def test_a_store_failure_refuses_when_the_reserve_is_empty(
            self, tmp_path: Path) -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
        limiter = SharedRateLimiter(engine, bucket_table(MetaData(), "missing"), rate_per_s=1000,
                                    burst=2000, what="service", key_secret=SECRET)
        with pytest.raises(StoreError):
            await limiter.take("svc")
        with pytest.raises(StoreError):  # nothing was taken, nothing is held
            await limiter.take("svc")
        await engine.dispose()

    async def test_near_the_limit_tokens_are_taken_one_at_a_time(
            self, engines: Engines) -> None:
        first, second, _, bucket = engines
        clock = Clock()
        a = SharedRateLimiter(first, bucket, rate_per_s=1, burst=12, what="service",
                              clock=clock, key_secret=SECRET, batch=5)
        b = SharedRateLimiter(second, bucket, rate_per_s=1, burst=12, what="service",
                              clock=clock, key_secret=SECRET, batch=5)
        assert [await _allowed(a) for _ in range(5)] == [True] * 5  # one batch: 7 left
        assert [await _allowed(b) for _ in range(5)] == [True] * 5  # another: 2 left
        seen = _statements(second, bucket)
        assert [await _allowed(b) for _ in range(3)] == [True, True, False]
        # fewer than a batch left: a batch is asked for, then one token
        assert len(seen) == 2 + 2 + 1
        with pytest.raises(ProblemError) as refused:
            await b.take("svc")
        assert refused.value.headers["Retry-After"] == "1"
        clock.now += 1  # one token back: a's next request is one more statement, not a batch
        assert await _allowed(a)
        assert not await _allowed(a)

    async def test_one_statement_serves_a_batch_of_concurrent_requests(
            self, engines: Engines) -> None:
        first, _, _, bucket = engines
        limiter = SharedRateLimiter(first, bucket, rate_per_s=1000, burst=2000,
                                    what="service", clock=Clock(), key_secret=SECRET, batch=10)
        seen = _statements(first, bucket)
        outcomes = await asyncio.gather(*(_allowed(limiter) for _ in range(50)))
        assert all(outcomes)
        assert len(seen) == 5  # one refill in flight at a time, each for ten requests

    async def test_two_processes_allow_the_bucket_once_when_both_use_their_reserves(
            self, engines: Engines) -> None:
        first, second, _, bucket = engines
        clock = Clock()
        limiters = [SharedRateLimiter(engine, bucket, rate_per_s=1, burst=40, what="service",
                                      clock=clock, key_secret=SECRET, batch=6)
                    for engine in (first, second)]
        outcomes = await asyncio.gather(*(_allowed(limiters[i % 2]) for i in range(120)))
        assert outcomes.count(True) == 40  # every token once, none twice

    async def test_two_processes_stay_within_the_documented_slack(
            self, engines: Engines) -> None:
        """Over any stretch of time, both together allow at most ``burst + rate * seconds``
        plus ``batch - 1`` per process (what their reserves can hold)."""
        first, second, _, bucket = engines
        clock = Clock()
        rate, burst, batch = 10.0, 20.0, 4
        limiters = [SharedRateLimiter(engine, bucket, rate_per_s=rate, burst=burst,
                                      what="service", clock=clock, key_secret=SECRET,
                                      batch=batch) for engine in (first, second)]
        rng = random.Random(14)  # noqa: S311 - a reproducible interleaving, not a secret
        start = clock.now
        allowed: list[float] = []
        for _ in range(300):
            clock.now += rng.choice([0.0, 0.0, 0.01, 0.05, 0.3])
            if await _allowed(limiters[rng.randrange(2)]):
                allowed.append(clock.now)
        for i, since in enumerate(allowed):  # every window from one allowed request to another
            for j in range(i, len(allowed)):
                until = allowed[j]
                assert j - i + 1 <= burst + rate * (until - since) + 2 * (batch - 1) + 1e-9
        assert len(allowed) > burst + rate * (clock.now - start) * 0.5  # it did allow, too

    async def test_the_slack_is_what_a_reserve_holds(self, engines: Engines) -> None:
        first, second, _, bucket = engines
        clock = Clock()
        a, b = (SharedRateLimiter(engine, bucket, rate_per_s=1, burst=20, what="service",
                                  clock=clock, key_secret=SECRET, batch=4)
                for engine in (first, second))
        assert await _allowed(a)  # a keeps 3 of its batch
        clock.now += 100  # the bucket is full again
        assert [await _allowed(b) for _ in range(21)] == [True] * 20 + [False]
        assert [await _allowed(a) for _ in range(4)] == [True] * 3 + [False]


class TestBatchSize:
    def test_the_defaults_batch_services_a_little_and_citizens_not_at_all(self) -> None:
        defaults = Settings()
        assert batch_size(defaults.rate_limit_service_per_s,
                          defaults.rate_limit_service_burst) == 50
        assert batch_size(defaults.rate_limit_token_per_s, defaults.rate_limit_token_burst) == 5
        assert batch_size(defaults.rate_limit_citizen_per_s,
                          defaults.rate_limit_citizen_burst) == 1

    @pytest.mark.parametrize(("rate", "burst", "batch"), [
        (1, 5, 1), (0.001, 3, 1), (1e6, 1e6, 50), (1000, 20, 1), (200, 2000, 10)])
    def test_a_batch_is_at_most_50_ms_of_the_rate_and_5_percent_of_the_burst(
            self, rate: float, burst: float, batch: int) -> None:
        assert batch_size(rate, burst) == batch
