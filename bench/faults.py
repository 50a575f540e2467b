"""Fault-injection run: real processes on PostgreSQL, a burst of proof requests, and faults.

    .venv/bin/python -m bench.faults --postgres postgresql://postgres@127.0.0.1:5432/test \
        [--seconds 30]

Starts register simulators, one cockpit and two brokers as separate `einmal serve` processes
sharing one PostgreSQL database and one key folder, drives proof requests at both brokers, and
meanwhile: kill -9 the cockpit and bring it back; make the registers fail and time out;
kill -9 a broker mid-burst and bring it back; drop every database connection; deliver one batch
twice. Then it checks, and prints as figures: released proofs = delivered log entries (exactly
once each), every broker record reached the log, refusals and failures are logged as such, no
5xx but 502/503/504 problems, and the exported log verifies. Exit 0 only if all holds.
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from sqlalchemy import text

from einmal.domain.contract import CHANNEL_AUDIENCE
from einmal.domain.transfer import Concerned, Outcome, ServiceRef, TransferBatch, TransferRecord
from einmal.keys import load_or_create_signing_key
from einmal.store import create_engine
from einmal.tokens import TokenIssuer
from einmal_client.audit import export_bundle, verify_bundle
from tests.conftest import free_port, reset_database
from tests.e2e.conftest import assertion

EINMAL = [sys.executable, "-m", "einmal_app", "serve", "--demo"]
PUBLIC_BROKER = "http://broker.einmal.test"  # both brokers sit behind one public name


class Cluster:
    def __init__(self, pg: str, data: Path) -> None:
        self.pg, self.data = pg, data
        self.ports = {"registers": free_port(), "cockpit": free_port(), "broker1": free_port(),
                      "broker2": free_port()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def args(self, name: str) -> list[str]:
        common = ["--data-dir", str(self.data), "--database-url", self.pg, "--families", "60",
                  "--port", str(self.ports[name]), "--log-format", "json"]
        if name == "registers":
            return [*common, "--components", "registers"]
        if name == "cockpit":
            return [*common, "--components", "cockpit", "--broker-url", PUBLIC_BROKER]
        return [*common, "--components", "broker", "--public-url", PUBLIC_BROKER,
                "--cockpit-url", self.url("cockpit"),
                "--registers-url", f"{self.url('registers')}/registers"]

    def start(self, name: str) -> None:
        env = {**os.environ, "EINMAL_LOG_LEVEL": "warning", "EINMAL_REGISTER_TIMEOUT_S": "1.0",
               "EINMAL_REGISTER_RETRIES": "1", "EINMAL_RATE_LIMIT_SERVICE_PER_S": "0"}
        log = (self.data / f"{name}.log").open("ab")
        # a session of its own: kill -9 takes the whole service (supervisor and worker
        # processes, `einmal serve --workers`), as a crash of the host or systemd would
        self.procs[name] = subprocess.Popen([*EINMAL, *self.args(name)], stdout=log, stderr=log,
                                            env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url(name)}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        msg = f"{name} did not start (see {self.data / (name + '.log')})"
        raise RuntimeError(msg)

    def kill9(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _drive(cluster: Cluster, creds: dict[str, Any], seconds: float,
                 stats: Counter[str], released: set[str]) -> None:
    service = next(s for s in creds["services"]
                   if s["client_id"] == "standesamt-namensdienst-bremen")
    child = next(c for c in creds["citizens"] if c["family"] == "elfe" and c["role"] == "child")
    body = {"proof_type": "birth", "subject": child["idnr"], "purpose": "namensbestimmung",
            "parameters": {"place_of_birth": child["place_of_birth"],
                           "birth_date": child["birth_date"]}}
    tokens: dict[str, str] = {}
    deadline = time.monotonic() + seconds

    async def worker(broker: str) -> None:
        async with httpx.AsyncClient(base_url=cluster.url(broker), timeout=10) as http:
            while time.monotonic() < deadline:
                try:
                    if broker not in tokens:
                        form = {"grant_type": "client_credentials",
                                "client_assertion_type":
                                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                "client_assertion": assertion(
                                    service["client_id"], service["private_jwk"],
                                    f"{PUBLIC_BROKER}/v1/token")}
                        answer = await http.post("/v1/token", data=form)
                        if answer.status_code != 200:
                            stats[f"token {answer.status_code}"] += 1
                            await asyncio.sleep(0.2)
                            continue
                        tokens[broker] = answer.json()["access_token"]
                    stats["sent"] += 1
                    refuse = stats["sent"] % 20 == 0  # now and then a purpose outside the policy
                    response = await http.post(
                        "/v1/proof-requests",
                        json={**body, "purpose": "steuerpruefung"} if refuse else body,
                        headers={"authorization": f"Bearer {tokens[broker]}",
                                 "idempotency-key": str(uuid.uuid4())})
                except httpx.HTTPError:
                    stats["unreachable (process down)"] += 1
                    await asyncio.sleep(0.1)
                    continue
                stats["requests"] += 1
                stats[f"status {response.status_code}"] += 1
                if response.status_code == 200:
                    released.add(response.json()["transfer_id"])
                elif response.status_code >= 500 and not response.headers.get(
                        "content-type", "").startswith("application/problem+json"):
                    stats["5xx without problem+json"] += 1

    await asyncio.gather(*(worker(b) for b in ("broker1", "broker2") for _ in range(4)))


async def _faults(cluster: Cluster, seconds: float, events: list[str]) -> None:
    step = seconds / 8
    knobs = f"{cluster.url('registers')}/registers/_knobs"
    async with httpx.AsyncClient(timeout=5) as http:
        await asyncio.sleep(step)
        cluster.kill9("cockpit")
        events.append("kill -9 cockpit")
        await asyncio.sleep(step / 2)
        await asyncio.to_thread(cluster.start, "cockpit")
        events.append("cockpit restarted")
        await asyncio.sleep(step / 2)
        await http.put(knobs, json={"failure_rate": 0.5})
        events.append("registers fail 50%")
        await asyncio.sleep(step / 2)
        await http.put(knobs, json={"failure_rate": 0.0, "latency_ms": 1500})
        events.append("registers time out")
        await asyncio.sleep(step / 2)
        await http.put(knobs, json={"latency_ms": 0})
        cluster.kill9("broker2")
        events.append("kill -9 broker2 mid-burst")
        await asyncio.sleep(step / 2)
        await asyncio.to_thread(cluster.start, "broker2")
        events.append("broker2 restarted")
        await asyncio.sleep(step / 2)
        engine = create_engine(cluster.pg.replace("postgresql://", "postgresql+asyncpg://", 1))
        async with engine.connect() as conn:
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        await engine.dispose()
        events.append("all database connections dropped")


async def _duplicate_batch(cluster: Cluster, creds: dict[str, Any],
                           ) -> tuple[dict[str, int], dict[str, int], set[str]]:
    """Deliver one batch twice, as a retrying outbox would after a lost answer: the second
    time nothing may be accepted. The broker keeps only the protocol entry of a delivered
    record (decision 0031), so the batch is made here: records of the broker's own shape,
    for a demo citizen, sent on the broker's channel. Returns both answers and their ids
    (kept out of the broker-vs-log accounting)."""
    subject = next(c for c in creds["citizens"] if c.get("family"))["idnr"]
    service = creds["services"][0]
    now = datetime.now(UTC)
    records = [TransferRecord(
        id=str(uuid.uuid4()), occurred_at=now, outcome=Outcome.REFUSED, proof_type="birth",
        purpose="fault-run-duplicate", error_type="permission-denied",
        service=ServiceRef(id=service["client_id"], name=service["name"],
                           authority=service["authority"], land="HB"),
        subject=subject, concerned=(Concerned(idnr=subject, relation="self"),))
        for _ in range(20)]
    body = msgspec.json.encode(TransferBatch(records=records))
    key = load_or_create_signing_key(cluster.data / "keys", "broker-channel")
    token = TokenIssuer(key=key, issuer=PUBLIC_BROKER, audience=CHANNEL_AUDIENCE,
                        ttl_s=60).issue("einmal-broker")
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    url = f"{cluster.url('cockpit')}/v1/transfer-records"
    async with httpx.AsyncClient(timeout=10) as http:
        first = (await http.post(url, content=body, headers=headers)).json()
        again = (await http.post(url, content=body, headers=headers)).json()
    return first, again, {r.id for r in records}


async def _counts(pg: str, exclude: set[str]) -> dict[str, Any]:
    engine = create_engine(pg.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with engine.connect() as conn:
        broker_ids = {r[0] for r in (await conn.execute(text("SELECT id FROM broker_transfer")))}
        pending = (await conn.execute(text(
            "SELECT count(*) FROM broker_transfer WHERE delivered_at IS NULL"))).scalar_one()
        entries = [e for e in (await conn.execute(text("SELECT id, leaf FROM cockpit_entry")))
                   if e[0] not in exclude]
    await engine.dispose()
    outcomes = Counter(json.loads(bytes(leaf))["outcome"] for _, leaf in entries)
    return {"broker_ids": broker_ids, "pending": pending,
            "entry_ids": [r[0] for r in entries], "outcomes": outcomes}


async def main(pg: str, seconds: float, output: Path) -> int:
    reset_database(pg)
    data = Path(tempfile.mkdtemp(prefix="einmal-faults-"))
    cluster = Cluster(pg, data)
    stats: Counter[str] = Counter()
    released: set[str] = set()
    events: list[str] = []
    try:
        for name in ("registers", "cockpit", "broker1", "broker2"):
            cluster.start(name)
        creds = json.loads((data / "demo-credentials.json").read_text())
        print(f"cluster up in {data}: {cluster.ports}")
        await asyncio.gather(_drive(cluster, creds, seconds, stats, released),
                             _faults(cluster, seconds, events))
        first, duplicate, synthetic = await _duplicate_batch(cluster, creds)
        deadline = time.monotonic() + 60
        while (counts := await _counts(pg, synthetic))["pending"] and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # the sequencer integrates within about a second
        counts = await _counts(pg, synthetic)
        auditor = creds["auditors"][0]["private_jwk"]
        report = await asyncio.to_thread(
            lambda: verify_bundle(_export(cluster, auditor, data / "bundle")))
    finally:
        cluster.stop_all()
    entry_ids = counts["entry_ids"]
    lost = len(counts["broker_ids"] - set(entry_ids)) + len(released - set(entry_ids))
    doubled = len(entry_ids) - len(set(entry_ids))
    figures = {
        "seconds": seconds, "faults": events, "requests": stats["requests"],
        "released": len(released), "refused": counts["outcomes"]["refused"],
        "failed": counts["outcomes"]["failed"],
        "log_entries": len(entry_ids), "broker_records": len(counts["broker_ids"]),
        "lost": lost, "doubled": doubled, "batch_first": first, "duplicate_batch": duplicate,
        "statuses": {k: v for k, v in stats.items() if k.startswith("status")},
        "unreachable_while_down": stats["unreachable (process down)"],
        "5xx_without_problem": stats["5xx without problem+json"],
        "500s": stats["status 500"], "log_verifies": report.ok,
        "log_problems": report.problems[:5],
    }
    print(json.dumps(figures, indent=2))
    out = output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    ok = (lost == 0 and doubled == 0 and stats["status 500"] == 0 and report.ok
          and stats["5xx without problem+json"] == 0 and len(released) > 0
          and counts["outcomes"]["delivered"] == len(released)
          and counts["outcomes"]["refused"] == stats["status 403"]
          and counts["outcomes"]["failed"] == stats["status 502"] + stats["status 504"]
          and first.get("accepted") == len(synthetic)
          and duplicate.get("accepted") == 0 and duplicate.get("duplicates") == len(synthetic))
    print("ALL HELD" if ok else "SOMETHING FAILED")
    return 0 if ok else 1


def _export(cluster: Cluster, auditor: dict[str, Any], out: Path) -> Path:
    export_bundle(cluster.url("cockpit"), out, auditor, {})
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default=os.environ.get(
        "EINMAL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--output", type=Path, default=Path("bench/results/faults.json"))
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.postgres, args.seconds, args.output)))
