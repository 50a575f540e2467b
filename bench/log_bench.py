"""Transfer-log benchmark: integrate, export and offline-verify throughput, peak memory.

    .venv/bin/python -m bench.log_bench [--entries 1000000] [--database-url URL]

Seeds N entries straight into a fresh cockpit store (SQLite file by default), then measures:
integrate (sequencer batches, signed checkpoints), export (the NDJSON stream of
/v1/audit/export, in-process), and offline verify (einmal_client.audit.verify_bundle on the written
bundle). Peak memory is tracemalloc's peak during each phase (Python allocations), to show it
stays flat in N. Not part of the test suite.
"""

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from cockpit.log import TransferLog
from cockpit.store import open_store
from cockpit.tables import COCKPIT_TABLES, ENTRY
from einmal.keys import load_or_create_signing_key
from einmal.store import create_engine, dispose
from einmal_client import tlog
from einmal_client.audit import verify_bundle


def _leaf(i: int) -> bytes:
    entry = {"v": 1, "id": str(uuid.UUID(int=i)), "occurred_at": "2026-11-28T12:00:00.000000Z",
             "outcome": "delivered", "error_type": None, "proof_type": "birth",
             "data_categories": ["birth_date", "parents"], "purpose": "kindergeld-antrag",
             "service": {"id": "familienkasse", "name": "Kindergeld online",
                         "authority": "Familienkasse", "land": "DE"},
             "register": {"id": "standesamt:04011000", "name": "Standesamt Bremen"},
             "intermediaries": ["einmal-broker"], "legal_basis": "§ 68 EStG",
             "consent_id": None, "subject": f"{i:064x}", "retention_until": None,
             "correlation_id": None}
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()


async def _drop_cockpit_tables(engine: AsyncEngine) -> None:
    """An empty PostgreSQL database for the run: the cockpit's tables are made anew."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: SQLModel.metadata.drop_all(sync, tables=COCKPIT_TABLES))
        await conn.execute(text("DROP TABLE IF EXISTS cockpit_alembic_version"))


async def _seed(engine: AsyncEngine, n: int) -> float:
    started = time.perf_counter()
    now = datetime.now(UTC)
    chunk = 20_000
    for start in range(0, n, chunk):
        rows = []
        for i in range(start, min(n, start + chunk)):
            leaf = _leaf(i)
            rows.append({"id": str(uuid.UUID(int=i)), "occurred_at": now, "received_at": now,
                         "subject_ref": f"{i % 100_000:064x}", "body": b"{}", "leaf": leaf,
                         "leaf_hash": tlog.leaf_hash(leaf), "service_id": "familienkasse",
                         "register_id": "standesamt:04011000"})
        async with engine.begin() as conn:
            await conn.execute(insert(ENTRY), rows)
    return time.perf_counter() - started


async def main(entries: int, database_url: str | None, *, memory: bool) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="einmal-log-bench-"))
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'cockpit.db'}"
    if database_url and database_url.startswith("postgres"):
        url = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        await _drop_cockpit_tables(engine)
    key = load_or_create_signing_key(workdir, "cockpit-log")
    store = open_store(engine)  # the SQLite writer's fast path on a file, as in the server
    await store.create_schema()
    transfer_log = TransferLog(store=store, key=key, origin="bench/log", batch_size=20_000)
    await transfer_log.initialise()
    seed_s = await _seed(engine, entries)
    print(f"seeded {entries:,} entries in {seed_s:.1f} s")

    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    while await transfer_log.integrate():
        pass
    integrate_s = time.perf_counter() - started
    integrate_peak = (tracemalloc.get_traced_memory()[1] if memory else 0)
    if memory:
        tracemalloc.reset_peak()
    print(f"integrate: {entries / integrate_s:,.0f} entries/s")

    bundle = workdir / "bundle"
    bundle.mkdir()
    size, note = await transfer_log.checkpoint()
    (bundle / "checkpoint").write_text(note)
    (bundle / "verifier-key").write_text(transfer_log.verifier_key)
    (bundle / "export.json").write_text(json.dumps({"filters": {}, "tree_size": size}))
    started = time.perf_counter()
    written = 0
    with (bundle / "entries.ndjson").open("wb") as sink:
        async for line in transfer_log.export(tree_size=size, chunk=5000):
            sink.write(line)
            written += 1
    export_s = time.perf_counter() - started
    export_peak = (tracemalloc.get_traced_memory()[1] if memory else 0)
    if memory:
        tracemalloc.reset_peak()
    print(f"export: {written / export_s:,.0f} entries/s")

    started = time.perf_counter()
    report = verify_bundle(bundle)
    verify_s = time.perf_counter() - started
    verify_peak = (tracemalloc.get_traced_memory()[1] if memory else 0)
    if memory:
        tracemalloc.stop()
    print(f"verify: {entries / verify_s:,.0f} entries/s ok={report.ok}")
    await dispose(engine)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "python": platform.python_version(), "store": url.split(":")[0], "entries": entries,
        "seed_s": round(seed_s, 1),
        "integrate_entries_per_s": round(entries / integrate_s),
        "export_entries_per_s": round(written / export_s),
        "verify_entries_per_s": round(entries / verify_s), "verify_ok": report.ok,
        "memory_traced": memory,
        "peak_mib": {"integrate": round(integrate_peak / 2**20, 1),
                     "export": round(export_peak / 2**20, 1),
                     "verify": round(verify_peak / 2**20, 1)},
        "bundle_mib": round(sum(p.stat().st_size for p in bundle.iterdir()) / 2**20, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/log.json"))
    parser.add_argument("--memory", action="store_true",
                        help="trace peak memory (tracemalloc; slows every phase about 2x)")
    args = parser.parse_args()
    result = asyncio.run(main(args.entries, args.database_url, memory=args.memory))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
