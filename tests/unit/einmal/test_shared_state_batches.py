"""Two real processes take from one shared token bucket as fast as they can, on the real clock.

Each keeps a reserve of up to ``batch - 1`` tokens (einmal/shared_state.py: SharedRateLimiter),
so together they may allow at most ``burst + rate * seconds`` plus ``batch - 1`` per process -
and no more, however their requests interleave. On PostgreSQL too when
EINMAL_TEST_DATABASE_URL is set."""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table

from einmal.settings import _async_driver
from einmal.shared_state import batch_size, bucket_table
from einmal.store import create_engine

_PG = os.environ.get("EINMAL_TEST_DATABASE_URL")
RATE, BURST, SECONDS = 200.0, 400.0, 1.5
BATCH = batch_size(RATE, BURST)  # 10

_PROCESS = """
import asyncio, json, sys, time
from sqlalchemy import MetaData
from einmal.problems import ProblemError
from einmal.shared_state import SharedRateLimiter, bucket_table
from einmal.store import create_engine

async def main(url, prefix, start, end, rate, burst):
    engine = create_engine(url)
    limiter = SharedRateLimiter(engine, bucket_table(MetaData(), prefix), rate_per_s=rate,
                                burst=burst, what="service", key_secret=b"s" * 32)
    allowed = refused = 0
    last = start
    while time.time() < start:  # the bucket's first statement is not before start
        await asyncio.sleep(0.001)
    while time.time() < end:
        try:
            await limiter.take("svc")
            allowed += 1
        except ProblemError:
            refused += 1
        last = time.time()  # no later than the clock of the statement before it
    await engine.dispose()
    print(json.dumps({"allowed": allowed, "refused": refused, "last": last}))

url, prefix, start, end, rate, burst = sys.argv[1:]
asyncio.run(main(url, prefix, float(start), float(end), float(rate), float(burst)))
"""


@pytest.fixture(name="bucket", params=["sqlite", *(["postgresql"] if _PG else [])])
async def fx_bucket(request: pytest.FixtureRequest, tmp_path: Path,
                    ) -> AsyncIterator[tuple[str, Table]]:
    url = (_async_driver(_PG) if request.param == "postgresql" and _PG else
           f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
    engine = create_engine(url)
    metadata = MetaData()
    table = bucket_table(metadata, f"t{secrets.token_hex(4)}")  # the test database is shared
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield url, table
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    await engine.dispose()


async def test_two_processes_allow_no_more_than_the_bucket_and_their_reserves(
        bucket: tuple[str, Table]) -> None:
    url, table = bucket
    prefix = table.name.removesuffix("_bucket")
    start = time.time() + 3  # both have started by then (imports)
    argv = [url, prefix, str(start), str(start + SECONDS), str(RATE), str(BURST)]
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PROCESS, *argv, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE) for _ in range(2)]
    results = []
    for process in processes:
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out))
    allowed = sum(r["allowed"] for r in results)
    seconds = max(r["last"] for r in results) - start
    assert BATCH == 10
    assert allowed <= BURST + RATE * seconds + 2 * (BATCH - 1), results
    assert allowed >= BURST, results  # the bucket was used, not just refused
    assert all(r["refused"] for r in results), results  # both asked for more than the rate
