"""The database round trips around a request, alone: CPU time per operation on PostgreSQL.

``python -m bench.pool_bench --postgres URL [--rounds 5] [--seconds 2] [--concurrency 16]``

In one process, ``concurrency`` tasks repeat one operation for ``seconds``; the figures are this
process's CPU time (``time.process_time``) and the CPU time of the PostgreSQL backends serving
its connections (``/proc/<pid>/stat`` of the backends in ``pg_stat_activity`` of the URL's
database), each divided by the operations done. Cases run interleaved round by round (a change
in the machine's other load hits them alike); the table gives the median round and the spread.

Cases:
  take-1         ``SharedRateLimiter.take`` with ``batch=1``: one statement per request (autocommit)
  take-batched   the same with the default batch (``batch_size``: 50 at the bench's rate)
  checkout-ping  ``engine.connect()`` + ``SELECT 1`` with ``pool_pre_ping=True`` (as before)
  checkout       the same on ``einmal.store.create_engine`` (no pre-ping; closed connections
                 replaced, idle ones pinged)
  connect        a new connection each time (what an overflow connection costs when the pool
                 closes it on return and opens it again for the next request); backend CPU not
                 counted (each backend exits before it can be read)
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, NullPool, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from einmal.settings import _async_driver
from einmal.shared_state import SharedRateLimiter, bucket_table
from einmal.store import POOL_SIZE, create_engine

CASES = ["take-1", "take-batched", "checkout-ping", "checkout", "connect"]
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


async def _backends(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"))
        return [row[0] for row in rows]


async def _round(op: Callable[[], Awaitable[Any]], seconds: float, concurrency: int,
                 probe: AsyncEngine) -> dict[str, float]:
    done = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await op()
            done += 1

    await op()  # warm: the pool holds its connections before the clock starts
    before = {pid: _cpu_of(pid) for pid in await _backends(probe)}
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    after = {pid: _cpu_of(pid) for pid in await _backends(probe)}
    backend = sum(after[pid] - before.get(pid, 0.0) for pid in after)
    return {"ops": done, "ops_per_s": done / wall, "client_us": cpu / done * 1e6,
            "backend_us": backend / done * 1e6}


async def main(url: str, rounds: int, seconds: float, concurrency: int, output: Path) -> None:
    url = _async_driver(url)
    ping = create_async_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=0)
    plain = create_engine(url)
    fresh = create_async_engine(url, poolclass=NullPool)
    probe = create_async_engine(url, poolclass=NullPool)
    metadata = MetaData()
    bucket = bucket_table(metadata, f"poolbench{os.getpid()}")
    async with plain.begin() as conn:
        await conn.run_sync(metadata.create_all)
    limits: dict[str, Any] = {"rate_per_s": 1e6, "burst": 1e6, "what": "service",
                              "key_secret": b"k" * 32}  # bench.run's service limit
    one = SharedRateLimiter(plain, bucket, batch=1, **limits)
    batched = SharedRateLimiter(plain, bucket, **limits)

    async def select_one(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    ops: dict[str, Callable[[], Awaitable[Any]]] = {
        "take-1": lambda: one.take("svc-1"),
        "take-batched": lambda: batched.take("svc-b"),
        "checkout-ping": lambda: select_one(ping),
        "checkout": lambda: select_one(plain),
        "connect": lambda: select_one(fresh),
    }
    results: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
    try:
        for n in range(rounds):
            for case in CASES:
                figures = await _round(ops[case], seconds, concurrency, probe)
                results[case].append(figures)
                print(f"round {n + 1}/{rounds} {case:14} {figures['ops_per_s']:8.0f} ops/s "
                      f"client {figures['client_us']:7.1f} us  backend "
                      f"{figures['backend_us']:7.1f} us", flush=True)
    finally:
        async with plain.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        for engine in (ping, plain, fresh, probe):
            await engine.dispose()
    print("\n| case | ops/s | client CPU-us / op (min-max) | PostgreSQL backends CPU-us / op |")
    print("|---|---|---|---|")
    for case in CASES:
        client = [r["client_us"] for r in results[case]]
        print(f"| {case} | {statistics.median(r['ops_per_s'] for r in results[case]):,.0f} | "
              f"{statistics.median(client):,.1f} ({min(client):,.1f}-{max(client):,.1f}) | "
              f"{statistics.median(r['backend_us'] for r in results[case]):,.1f} |")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"rounds": rounds, "seconds": seconds,
                                  "concurrency": concurrency, "results": results}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default=os.environ.get(
        "EINMAL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16, help=f"at most {POOL_SIZE}")
    parser.add_argument("--output", type=Path, default=Path("bench/results/pool.json"))
    args = parser.parse_args()
    asyncio.run(main(args.postgres, args.rounds, args.seconds, args.concurrency, args.output))
