"""CPU time per proof request of the broker's app alone, driven in-process over raw ASGI.

No HTTP server and no load generator in the measured process: what is measured is the
application (middleware, Litestar, the proof handler, the service, the group commit and its
writer thread) as ``bench.run``'s variant ``b`` runs it - the in-memory birth register
(bench/servers.py) - with the broker as the only component;
the delivery worker sends to a transport that accepts every batch (no HTTP, no cockpit).

``time.process_time`` covers every thread of the process (the SQLite writer thread too).
Rounds of ``--requests`` requests from ``--concurrency`` concurrent callers; the median round
is the figure. Use it to compare two versions of the code A/B on the same machine minutes
apart; ``bench.run`` gives the figures of record.

    .venv/bin/python -m bench.proof_cpu --rounds 7 --requests 3000
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvloop

from bench.servers import einmal_memory_app
from broker.service import ConsentIn
from connectors.simulators.population import generate_population
from einmal.domain.proofs import ProofType
from einmal.settings import load_settings

SERVICE = "standesamt-namensdienst-bremen"
PURPOSE = "namensbestimmung"


def _citizen(role: str) -> dict[str, Any]:
    settings = load_settings({}, demo=True)
    population = generate_population(seed=settings.simulator_seed,
                                     families=settings.simulator_families)
    return next(msgspec.to_builtins(c) for c in population.demo_citizens()
                if c.family == "elfe" and c.role == role)


class _Call:
    """One ASGI request: the body once, the answer collected."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.answer = b""

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self._body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        else:
            self.answer += message.get("body", b"")


async def _watchdog(seconds: float) -> None:
    """A run that hangs says where: every task's stack, then the process ends."""
    await asyncio.sleep(seconds)
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()
    os._exit(2)


async def _main(args: argparse.Namespace, app: Any) -> dict[str, Any]:
    watchdog = asyncio.create_task(_watchdog(args.timeout))
    try:
        return await _measure(args, app)
    finally:
        watchdog.cancel()


async def _measure(args: argparse.Namespace, app: Any) -> dict[str, Any]:
    child = _citizen("child")
    async with app.lifespan():
        broker = _broker_of(app)
        # the cockpit: a transport that accepts every batch (the broker's side of delivery
        # is measured: outbox read, opening the records, the batch body, the marks)
        broker.delivery._http = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda _request: httpx.Response(200)))
        if args.no_commit:
            broker.store.commit_transfer = _committed  # the request path alone, no SQLite
        service, purpose, consent_id = SERVICE, PURPOSE, None
        if args.consent:  # the Familienkasse's birth proof needs the parent's consent
            service, purpose = "familienkasse", "kindergeld-antrag"
            consent = await broker.service.grant_consent(_citizen("parent")["idnr"], ConsentIn(
                service_id=service, proof_types=[ProofType.BIRTH], purpose=purpose,
                valid_until=datetime.now(UTC) + timedelta(days=30), subject=child["idnr"]))
            consent_id = consent.id
        token = broker.service._access_tokens.issue(service)
        body = json.dumps({"proof_type": "birth", "subject": child["idnr"],
                           "purpose": purpose, "consent_id": consent_id,
                           "parameters": {"place_of_birth": child["place_of_birth"],
                                          "birth_date": child["birth_date"]}},
                          separators=(",", ":")).encode()
        headers = [(b"host", b"127.0.0.1:8001"),
                   (b"authorization", f"Bearer {token}".encode()),
                   (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        if args.idempotency:
            headers.append((b"idempotency-key", b"KEY"))

        async def one(index: int) -> _Call:
            call = _Call(body)
            scope_headers = headers
            if args.idempotency:
                scope_headers = [*headers[:-1],
                                 (b"idempotency-key", f"k-{index}".encode())]
            scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                     "http_version": "1.1", "method": "POST", "scheme": "http",
                     "path": "/v1/proof-requests", "raw_path": b"/v1/proof-requests",
                     "query_string": b"", "root_path": "", "headers": scope_headers,
                     "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8001),
                     "state": {}}
            await app(scope, call.receive, call.send)
            return call

        first = await one(0)
        if first.status != 200:
            msg = f"proof request failed: {first.status} {first.answer[:300]!r}"
            raise RuntimeError(msg)
        counter = iter(range(1, 10**9))

        async def caller(count: int) -> None:
            for _ in range(count):
                call = await one(next(counter))
                if call.status != 200:
                    msg = f"proof request failed: {call.status} {call.answer[:300]!r}"
                    raise RuntimeError(msg)

        per_caller = args.requests // args.concurrency
        await asyncio.gather(*(caller(per_caller // 4) for _ in range(args.concurrency)))
        rounds = []
        for _ in range(args.rounds):
            cpu = time.process_time()
            await asyncio.gather(*(caller(per_caller) for _ in range(args.concurrency)))
            rounds.append((time.process_time() - cpu) / (per_caller * args.concurrency))
        return {"cpu_us_per_request": round(statistics.median(rounds) * 1e6, 1),
                "rounds_us": [round(r * 1e6, 1) for r in rounds],
                "response_headers": [(k.decode(), v.decode()[:40])
                                     for k, v in first.headers],
                "answer_bytes": len(first.answer)}


async def _committed(*_args: Any) -> bool:
    return True


def _broker_of(app: Any) -> Any:
    """The broker component behind the app (its on_startup closure holds the components)."""
    for hook in app.on_startup:
        for cell in hook.__closure__ or ():
            value = cell.cell_contents
            if isinstance(value, list):
                found = next((c for c in value if getattr(c, "name", "") == "broker"), None)
                if found is not None:
                    return found
    msg = "no broker component found"
    raise RuntimeError(msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000, help="per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--idempotency", action="store_true",
                        help="send a fresh Idempotency-Key with every request")
    parser.add_argument("--consent", action="store_true",
                        help="a proof that needs the citizen's consent (the Familienkasse's)")
    parser.add_argument("--no-commit", action="store_true",
                        help="the store commits nothing (measures the request path alone: "
                             "steadier figures for A/B of the handler, not of the store)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds after which a hanging run prints its tasks and ends")
    args = parser.parse_args()
    # as bench.run's servers: the service's bucket still runs, its limit does not cap the run
    os.environ["EINMAL_RATE_LIMIT_SERVICE_PER_S"] = "1000000"
    os.environ["EINMAL_RATE_LIMIT_SERVICE_BURST"] = "1000000"
    with tempfile.TemporaryDirectory() as tmp:
        # built before the loop runs: it fetches one proof on a loop of its own
        app = einmal_memory_app(0, Path(tmp), "broker", "http://127.0.0.1:9")
        print(json.dumps(uvloop.run(_main(args, app)), indent=1))


if __name__ == "__main__":
    main()
