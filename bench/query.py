"""Citizen query latency: ``GET /v1/me/transfers?limit=50`` with many entries in the store.

A cockpit-only demo server (``einmal serve --demo --components cockpit``) starts on a fresh
store (it creates the schema and keys); then the cockpit tables are seeded directly, with the
rows ``CockpitService.ingest`` / ``_index`` would write (``cockpit_entry`` with a real
``TransferView`` body, ``cockpit_citizen_entry`` one row per reader), already integrated
(``log_index`` set, so the sequencer has nothing to do). The measured citizen is the first
parent of the demo family ``elfe`` (demo login); the other citizens are random pseudonyms.

SQLite: stdlib ``sqlite3`` ``executemany`` in chunks, ``PRAGMA synchronous=OFF`` on the seeding
connection only. PostgreSQL: asyncpg ``COPY`` into a database ``<name>_einmal_bench`` beside
the given one (its cockpit tables dropped first), then ``ANALYZE``.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from bench.load import percentile
from cockpit.vault import CitizenVault

CHUNK = 20_000
_encoder = msgspec.json.Encoder()


def _pseudonym(key: bytes, idnr: str) -> str:
    return hmac.new(key, idnr.encode(), hashlib.sha256).hexdigest()


def _view(transfer_id: str, occurred: datetime, service: dict[str, str]) -> bytes:
    return _encoder.encode({
        "id": transfer_id, "occurred_at": occurred, "outcome": "delivered", "error_type": None,
        "proof_type": "birth",
        "data_categories": ["birth_date", "child_family_name", "child_given_names", "parents",
                            "register_number"],
        "service": service,
        "register": {"id": "standesamt:04011000", "name": "Standesamt Bremen"},
        "intermediaries": [], "purpose": "elterngeld-antrag",
        "purpose_text": "Wir berechnen Ihr Elterngeld und prüfen, ob Sie Anspruch haben.",
        "legal_basis": "§ 25 BEEG i.V.m. Art. 6 Abs. 1 lit. a DSGVO",
        "consent_id": str(uuid.uuid4()), "subject_masked": "12*******90",
        "retention_until": occurred + timedelta(days=365), "correlation_id": None})


class Keys:
    """Per-citizen view keys as ``cockpit/vault.py`` keeps them (wrapped with the master key)."""

    def __init__(self, master: bytes) -> None:
        self._master = master
        self.raw: dict[str, bytes] = {}
        self.new_rows: list[dict[str, Any]] = []

    def seal(self, citizen_ref: str, transfer_id: str, plaintext: bytes) -> bytes:
        key = self.raw.get(citizen_ref)
        if key is None:
            key = self.raw[citizen_ref] = os.urandom(32)
            self.new_rows.append({"citizen_ref": citizen_ref,
                                  "wrapped_key": aes_key_wrap(self._master, key),
                                  "created_at": datetime.now(UTC)})
        return CitizenVault.seal(key, transfer_id, plaintext)

    def take(self) -> list[dict[str, Any]]:
        rows, self.new_rows = self.new_rows, []
        return rows


def generate(entries: int, citizens: int, target_ref: str, target_entries: int, keys: Keys,
             seed: int = 6) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Entries in log order (time ascending over the last ~700 days) with their index rows;
    the citizen view is sealed with the subject's key (as ``CockpitService.ingest`` does)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by its seed
    refs = [hashlib.sha256(f"citizen-{i}".encode()).hexdigest() for i in range(citizens)]
    target_at = set(rng.sample(range(entries), target_entries))
    services = [{"id": "elterngeldstelle-bremen", "name": "Elterngeld Bremen",
                 "authority": "Amt für Soziale Dienste Bremen", "land": "HB"},
                {"id": "familienkasse", "name": "Kindergeld",
                 "authority": "Familienkasse der Bundesagentur für Arbeit", "land": "DE"}]
    now = datetime.now(UTC)
    start = now - timedelta(days=700)
    step = timedelta(days=700) / entries
    for i in range(entries):
        occurred = start + step * i
        transfer_id = str(uuid.UUID(int=(int(occurred.timestamp() * 1000) << 80) | (7 << 76)
                                    | (2 << 62) | i))
        subject = target_ref if i in target_at else refs[rng.randrange(citizens)]
        service = services[i & 1]
        view = _view(transfer_id, occurred, service)
        body = keys.seal(subject, transfer_id, view)
        # The leaf bytes are not read by the query; a same-sized stand-in.
        entry = {"seq": i + 1, "id": transfer_id, "occurred_at": occurred,
                 "received_at": occurred + timedelta(milliseconds=20), "subject_ref": subject,
                 "body": body, "leaf": view, "leaf_hash": hashlib.sha256(view).digest(),
                 "log_index": i, "service_id": service["id"],
                 "register_id": "standesamt:04011000"}
        index = [{"citizen_ref": subject, "transfer_id": transfer_id, "occurred_at": occurred,
                  "relation": "self"}]
        if rng.random() < 0.3:  # a child's proof: a parent sees it too
            other = refs[rng.randrange(citizens)]
            if other != subject:
                index.append({"citizen_ref": other, "transfer_id": transfer_id,
                              "occurred_at": occurred, "relation": "concerned"})
        yield entry, index


_ENTRY_COLS = ["seq", "id", "occurred_at", "received_at", "subject_ref", "body", "leaf",
               "leaf_hash", "log_index", "service_id", "register_id"]
_INDEX_COLS = ["citizen_ref", "transfer_id", "occurred_at", "relation"]


def _sqlite_time(value: datetime) -> str:
    # What SQLAlchemy's DateTime stores on SQLite (naive UTC text, microseconds).
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _chunks(rows: Iterator[tuple[dict[str, Any], list[dict[str, Any]]]],
            ) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    entries: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    for entry, idx in rows:
        entries.append(entry)
        index.extend(idx)
        if len(entries) >= CHUNK:
            yield entries, index
            entries, index = [], []
    if entries:
        yield entries, index


def seed_sqlite(path: Path, rows: Iterator[Any], keys: Keys) -> tuple[int, int]:
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA synchronous=OFF")  # seeding only; the server keeps FULL
    n_entries = n_index = 0
    e_sql = (f"INSERT INTO cockpit_entry ({','.join(_ENTRY_COLS)}) "  # noqa: S608 - our columns
             f"VALUES ({','.join('?' * len(_ENTRY_COLS))})")
    i_sql = (f"INSERT INTO cockpit_citizen_entry ({','.join(_INDEX_COLS)}) "  # noqa: S608 - ours
             f"VALUES ({','.join('?' * len(_INDEX_COLS))})")
    for entries, index in _chunks(rows):
        conn.executemany(e_sql, [
            tuple(_sqlite_time(e[c]) if c in ("occurred_at", "received_at") else e[c]
                  for c in _ENTRY_COLS) for e in entries])
        conn.executemany(i_sql, [
            (r["citizen_ref"], r["transfer_id"], _sqlite_time(r["occurred_at"]), r["relation"])
            for r in index])
        conn.executemany(
            "INSERT INTO cockpit_citizen_key (citizen_ref, wrapped_key, created_at) "
            "VALUES (?, ?, ?)",
            [(k["citizen_ref"], k["wrapped_key"], _sqlite_time(k["created_at"]))
             for k in keys.take()])
        conn.commit()
        n_entries += len(entries)
        n_index += len(index)
    conn.execute("UPDATE cockpit_log_state SET tree_size = ? WHERE id = 1", (n_entries,))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return n_entries, n_index


async def _seed_postgres(url: str, rows: Iterator[Any], keys: Keys) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    n_entries = n_index = 0
    try:
        for entries, index in _chunks(rows):
            await conn.copy_records_to_table(
                "cockpit_entry", columns=_ENTRY_COLS,
                records=[tuple(e[c] for c in _ENTRY_COLS) for e in entries])
            await conn.copy_records_to_table(
                "cockpit_citizen_entry", columns=_INDEX_COLS,
                records=[tuple(r[c] for c in _INDEX_COLS) for r in index])
            await conn.copy_records_to_table(
                "cockpit_citizen_key", columns=["citizen_ref", "wrapped_key", "created_at"],
                records=[(k["citizen_ref"], k["wrapped_key"], k["created_at"])
                         for k in keys.take()])
            n_entries += len(entries)
            n_index += len(index)
        await conn.execute("SELECT setval(pg_get_serial_sequence('cockpit_entry', 'seq'), $1)",
                           n_entries)
        await conn.execute("UPDATE cockpit_log_state SET tree_size = $1 WHERE id = 1", n_entries)
        await conn.execute("ANALYZE cockpit_entry")
        await conn.execute("ANALYZE cockpit_citizen_entry")
    finally:
        await conn.close()
    return n_entries, n_index


async def _prepare_postgres(url: str) -> str:
    """Create ``<db>_einmal_bench`` beside the given database; drop its cockpit tables."""
    base, _, db = url.rpartition("/")
    bench_db = f"{db.split('?')[0]}_einmal_bench"
    conn = await asyncpg.connect(url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", bench_db)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{bench_db}"')
    finally:
        await conn.close()
    bench_url = f"{base}/{bench_db}"
    conn = await asyncpg.connect(bench_url)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = "
                                  "'public' AND tablename LIKE 'cockpit\\_%'")
        for row in tables:
            await conn.execute(f'DROP TABLE IF EXISTS "{row["tablename"]}" CASCADE')
    finally:
        await conn.close()
    return bench_url


def measure(base_url: str, citizen_idnr: str, requests: int) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        login = http.post("/demo/citizen-token", json={"idnr": citizen_idnr})
        login.raise_for_status()
        headers = {"authorization": f"Bearer {login.json()['access_token']}"}
        first = http.get("/v1/me/transfers", params={"limit": 50}, headers=headers)
        first.raise_for_status()
        page = first.json()
        if not page["items"]:
            msg = f"the citizen's first page is empty: {first.text[:300]}"
            raise RuntimeError(msg)
        for _ in range(20):  # warm-up
            http.get("/v1/me/transfers", params={"limit": 50}, headers=headers)
        latencies = []
        errors = 0
        for _ in range(requests):
            started = time.perf_counter()
            response = http.get("/v1/me/transfers", params={"limit": 50}, headers=headers)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors += 1
    values = sorted(latencies)
    return {"requests": requests, "errors": errors, "page_items": len(page["items"]),
            "has_next_cursor": page["next_cursor"] is not None,
            "p50_ms": round(percentile(values, 50) * 1000, 2),  # type: ignore[operator]  # percentile of a non-empty list
            "p99_ms": round(percentile(values, 99) * 1000, 2),  # type: ignore[operator]  # percentile of a non-empty list
            "max_ms": round(values[-1] * 1000, 2)}


def run_store(store: str, args: argparse.Namespace, workdir: Path,
              database_url: str | None) -> dict[str, Any]:
    from bench.run import (  # noqa: PLC0415 - bench.run imports this module: a cycle at the top
        EINMAL,
        Server,
        free_port,
    )

    data = workdir / f"data-query-{store}"
    data.mkdir()
    port = free_port()
    argv = [EINMAL, "serve", "--demo", "--components", "cockpit", "--port", str(port),
            "--data-dir", str(data)]
    if database_url:
        argv += ["--database-url", database_url]
    server = Server(f"cockpit-{store}", argv, port, workdir / f"server-query-{store}.log")
    try:
        server.wait_ready()
        credentials = httpx.get(f"{server.base_url}/demo/credentials", timeout=10).json()
        parent = next(c for c in credentials["citizens"]
                      if c["family"] == "elfe" and c["role"] == "parent")
        key = (data / "keys" / "cockpit-pseudonym.key").read_bytes()
        keys = Keys((data / "keys" / "cockpit-master.key").read_bytes())
        entries = args.entries
        citizens = max(100, entries // 10)
        target = 120
        rows = generate(entries, citizens, _pseudonym(key, parent["idnr"]), target, keys)
        print(f"[query/{store}] seeding {entries} entries over {citizens} citizens "
              f"(measured citizen: {target}) ...", flush=True)
        started = time.perf_counter()
        if database_url:
            n_entries, n_index = asyncio.run(_seed_postgres(database_url, rows, keys))
        else:
            n_entries, n_index = seed_sqlite(data / "cockpit.db", rows, keys)
        seed_s = round(time.perf_counter() - started, 1)
        print(f"[query/{store}] seeded in {seed_s} s; measuring {args.query_requests} "
              f"sequential requests ...", flush=True)
        result = measure(server.base_url, parent["idnr"], args.query_requests)
        result.update(entries=n_entries, index_rows=n_index, citizens=citizens,
                      citizen_entries=target, seed_s=seed_s)
        print(f"    {store}: p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
              f"max {result['max_ms']} ms  errors {result['errors']}  "
              f"page {result['page_items']} items", flush=True)
        return result
    finally:
        server.stop()


def run_queries(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    args.query_requests = getattr(args, "query_requests", None) or (200 if args.quick else 500)
    results: dict[str, Any] = {}
    results["sqlite"] = run_store("sqlite", args, workdir, None)
    if args.postgres:
        try:
            url = asyncio.run(_prepare_postgres(args.postgres))
        except Exception as exc:
            results["postgresql"] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            results["postgresql"] = run_store("postgresql", args, workdir, url)
            results["postgresql"]["database"] = url.rsplit("@", 1)[-1]
    return results


if __name__ == "__main__":
    print(json.dumps({"note": "run via python -m bench.run --only query"}))
