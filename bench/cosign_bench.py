"""Append to cosigned checkpoint: how long from an entry's ingest until a checkpoint that
includes it is published with a witness's cosignature (issue 16 item 7: p99 <= 2 s at 1,000
entries/s with one witness over HTTP).

    .venv/bin/python -m bench.cosign_bench [--rate 1000] [--seconds 30] [--batch 10]

One witness as its own process (``python -m einmal_app witness serve``, SQLite), asked over
HTTP on loopback; the cockpit's log in this process as the server runs it (SQLite store,
sequencer and cosigner workers, default settings); entries ingested through the cockpit
service at ``--rate`` in batches of ``--batch`` (the broker delivers batches). Each entry's
latency is the time from its ingest call returning to the commit of the first published
checkpoint that covers it. Not part of the test suite; writes bench/results/cosign.json.
"""

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cockpit.log import TransferLog
from cockpit.log.witnesses import WitnessEndpoint, WitnessPolicy
from cockpit.service import CockpitService
from cockpit.store import SqliteCockpitStore
from cockpit.vault import CitizenVault
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.keys import load_or_create_signing_key
from einmal.logging import configure_logging
from einmal.store import create_engine, dispose
from einmal_client import tlog

ORIGIN = "bench.example/einmal-transfer-log"
REPO = Path(__file__).resolve().parents[1]
SUBJECTS = [f"{n:011d}" for n in range(10_000_000_000, 10_000_000_000 + 500)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _record(n: int) -> TransferRecord:
    subject = SUBJECTS[n % len(SUBJECTS)]
    return TransferRecord(
        id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), outcome=Outcome.DELIVERED,
        proof_type="birth", purpose="kindergeld-antrag", subject=subject,
        service=ServiceRef(id="familienkasse", name="Kindergeld online", authority="Familienkasse",
                           land="DE"),
        register=RegisterRef(id="standesamt:04011000", name="Standesamt Bremen"),
        concerned=(Concerned(idnr=subject, relation="self"),))


def _start_witness(folder: Path, log_vkey: str) -> tuple[subprocess.Popen[bytes], str, str]:
    data = folder / "witness"
    name = "bench.example/witness"
    vkey = subprocess.run([sys.executable, "-m", "einmal_app", "witness", "key", "--data-dir",
                           str(data), "--name", name], cwd=REPO, check=True,
                          capture_output=True).stdout.decode().strip()
    port = _free_port()
    with (folder / "witness.log").open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "einmal_app", "witness", "serve", "--data-dir", str(data),
             "--port", str(port), "--log-key", log_vkey, "--log-format", "json"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return process, vkey, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    msg = "the witness did not start"
    raise RuntimeError(msg)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _run(folder: Path, rate: int, seconds: float, batch: int) -> dict[str, Any]:
    key = load_or_create_signing_key(folder / "keys", "cockpit-log")
    process, vkey, url = _start_witness(folder, tlog.verifier_key(ORIGIN, key.private_key
                                                                  .public_key()))
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'cockpit.db'}")
    store = SqliteCockpitStore(engine)
    published: list[tuple[float, int]] = []  # (monotonic time of the commit, tree size)
    publish = store.publish_checkpoint

    async def timed_publish(**kwargs: Any) -> bool:
        done = await publish(**kwargs)
        published.append((time.monotonic(), kwargs["tree_size"]))
        return done

    store.publish_checkpoint = timed_publish  # type: ignore[method-assign]  # measured here
    transfer_log = TransferLog(store=store, key=key, origin=ORIGIN, witnesses=WitnessPolicy(
        witnesses=(WitnessEndpoint.of(vkey, url),), quorum=1))
    service = CockpitService(store=store, pseudonym_key=b"p" * 32, vault=CitizenVault(b"m" * 32),
                             on_ingested=transfer_log.notify)
    appended: list[float] = []
    try:
        await store.create_schema()
        await transfer_log.initialise()
        await transfer_log.first_round()
        transfer_log.start()
        started = time.monotonic()
        total = int(rate * seconds)
        n = 0
        while n < total:
            due = started + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            count = min(batch, total - n)
            await service.ingest([_record(n + i) for i in range(count)])
            now = time.monotonic()
            appended.extend([now] * count)
            n += count
        ingest_s = time.monotonic() - started
        deadline = time.monotonic() + 60
        while (not published or published[-1][1] < total) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await transfer_log.stop()
        await dispose(engine)
        process.terminate()
        process.wait(timeout=15)
    latencies = []
    cursor = 0
    for index, at in enumerate(appended):
        while cursor < len(published) and published[cursor][1] <= index:
            cursor += 1
        if cursor == len(published):
            break
        latencies.append(published[cursor][0] - at)
    rounds = len(published)
    return {
        "entries": len(appended), "covered": len(latencies), "rate_asked": rate,
        "rate_achieved": round(len(appended) / ingest_s, 1), "batch": batch,
        "published_checkpoints": rounds,
        "latency_s": {"p50": round(_percentile(latencies, 0.50), 3),
                      "p95": round(_percentile(latencies, 0.95), 3),
                      "p99": round(_percentile(latencies, 0.99), 3),
                      "max": round(max(latencies), 3),
                      "mean": round(statistics.fmean(latencies), 3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="entries per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=10, help="entries per ingest call")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/cosign.json")
    args = parser.parse_args()
    configure_logging(level="warning")  # a log line per ingest would be measured too
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="einmal-cosign-bench-") as folder:
        result = asyncio.run(_run(Path(folder), args.rate, args.seconds, args.batch))
    result.update({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "aim": "p99 <= 2 s at 1000 entries/s, one witness over HTTP"})
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
