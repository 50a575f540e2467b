"""State shared across processes: a Litestar Store and a token bucket in the database.

Two engines on the same database stand for two processes (each has its own pool and
connections); on PostgreSQL too when EINMAL_TEST_DATABASE_URL is set."""

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from einmal.problems import ProblemError
from einmal.settings import _async_driver
from einmal.shared_state import SharedRateLimiter, SqlStore, bucket_table, kv_table
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
