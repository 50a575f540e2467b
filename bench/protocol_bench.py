"""The register's protocol, CPU time per answered query (issue 14): A/B interleaved in one run.

    .venv/bin/python -m bench.protocol_bench [--queries 4000] [--rounds 5] [--concurrency 1,16]
        [--baseline-protocol FILE] [--baseline-app FILE]

Two measurements, each in this process's CPU time (``time.process_time``: every thread, so
the SQLite writer thread and aiosqlite's thread count too), per query:

* ``record``: ``RegisterProtocol.record`` and the store's durable write, on each backend
  (``sql``: SQLAlchemy over aiosqlite; ``sqlite``: the ``SqliteWriter``; a SQLite file each),
  ``concurrency`` records at a time (they commit together);
* ``handler``: a Standesamt query through the registers' ASGI app, in process (no server, no
  sockets: routing, the handler, XML in and out, the protocol on a SQLite file).

``--baseline-protocol`` / ``--baseline-app``: an older ``protocol.py`` / ``simulators/app.py``
(e.g. ``git show HEAD~1:connectors/protocol/protocol.py > /tmp/old.py``), measured as
variant ``baseline`` beside the current code. Rounds alternate between the variants; the
figure is the median of the rounds. Not part of the test suite.
"""

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from litestar import Litestar

from connectors import xpersonenstand as messages
from connectors.protocol import ProtocolConfig, RegisterProtocol, requester_headers
from connectors.protocol.store import SqliteProtocolStore, SqlProtocolStore
from connectors.simulators import app as simulators
from connectors.simulators.population import generate_population
from einmal.domain.registers import Requester
from einmal.store import create_engine
from einmal_client.sources import content_groups

ASKER = Requester(service_id="elfe-bremen", service_name="ELFE Bremen",
                  authority="Elterngeldstelle Bremen", purpose="elterngeld",
                  legal_basis="§ 25 BEEG", consent_id="consent-1", transfer_id="t-1")
CONTENT = content_groups({
    "Geburtseintrag": {"Registernummer": "G 1234/2026", "Standesamt": "Standesamt Bremen"},
    "Lebensdaten": {"Identifikationsnummer": "84953625010", "Vornamen": "Mia Sophie",
                    "Familienname": "Weber", "Geschlecht": "weiblich",
                    "Geburtsdatum": "2026-10-12", "Geburtsort": "Bremen (04011000)"},
    "Eltern": {"Elternteil": [{"Identifikationsnummer": "81709656328", "Vornamen": "Anna",
                               "Familienname": "Weber"}]}})


def _load(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None  # noqa: S101 - a bench script
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def _cpu_per_call(call: Callable[[], Awaitable[Any]], queries: int,
                        concurrency: int) -> float:
    start = time.process_time()
    for _ in range(queries // concurrency):
        await asyncio.gather(*(call() for _ in range(concurrency)))
    return (time.process_time() - start) / (queries // concurrency * concurrency) * 1e6


async def _interleaved(variants: Mapping[str, Callable[[], Awaitable[Any]]], *, queries: int,
                       rounds: int, concurrency: int) -> dict[str, float]:
    for call in variants.values():  # warm up: tables, caches, the writer thread
        await _cpu_per_call(call, min(queries, 200), concurrency)
    found: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(rounds):
        order = list(variants.items())
        for name, call in order if i % 2 == 0 else reversed(order):
            found[name].append(await _cpu_per_call(call, queries, concurrency))
    return {name: statistics.median(values) for name, values in found.items()}


def _protocols(folder: Path, baseline: ModuleType | None) -> dict[str, RegisterProtocol]:
    made: dict[str, RegisterProtocol] = {}
    for name, kind in (("sql", SqlProtocolStore), ("sqlite", SqliteProtocolStore)):
        config = ProtocolConfig(keys_dir=folder / "keys")
        protocol = RegisterProtocol(config)
        protocol.store = kind(create_engine(f"sqlite+aiosqlite:///{folder / name}.db"))
        made[name] = protocol
    if baseline is not None:
        old = baseline.RegisterProtocol(ProtocolConfig(
            database_url=f"sqlite+aiosqlite:///{folder / 'baseline'}.db",
            keys_dir=folder / "keys"))
        made["baseline"] = old
    return made


async def bench_record(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    baseline = (_load(args.baseline_protocol, "baseline_protocol")
                if args.baseline_protocol else None)
    protocols = _protocols(folder, baseline)
    for protocol in protocols.values():
        await protocol.store.prepare()

    def call(protocol: RegisterProtocol) -> Callable[[], Awaitable[Any]]:
        return lambda: protocol.record(
            register="standesamt:04011000", source_name="Standesamt Bremen",
            subject="84953625010", concerned=("81709656328", "67965208344"), content=CONTENT,
            requester=ASKER, data_categories=("birth_date", "parents"))

    results = {}
    try:
        for concurrency in args.concurrency:
            results[f"concurrency {concurrency}"] = await _interleaved(
                {name: call(p) for name, p in protocols.items()}, queries=args.queries,
                rounds=args.rounds, concurrency=concurrency)
    finally:
        for protocol in protocols.values():
            await protocol.stop()
    return results


class _Asgi:
    """One Standesamt query through an ASGI app, in process."""

    def __init__(self, app: Any, body: bytes) -> None:
        self.app = app
        self.body = body
        headers = {"content-type": "application/xml", "host": "registers",
                   "content-length": str(len(body)), **requester_headers(ASKER)}
        self.headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self) -> int:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "root_path": "",
                 "path": "/registers/standesamt/04011000/geburt", "raw_path": b"",
                 "query_string": b"", "headers": self.headers,
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        status = 0
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        if status != 200:
            msg = f"status {status}"
            raise RuntimeError(msg)
        return status


async def bench_handler(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    population = generate_population(1, 10)
    mia = next(c for c in population.demo_citizens() if c.family == "elfe" and c.role == "child")
    body = messages.build_request(idnr=mia.idnr, birth_date="2026-10-12", family_name=None,
                                  reader="bench")
    modules: dict[str, ModuleType] = {"current": simulators}
    if args.baseline_app:
        modules["baseline"] = _load(args.baseline_app, "baseline_app")
    components = {}
    for name, module in modules.items():
        config = ProtocolConfig(database_url=f"sqlite+aiosqlite:///{folder / name}-app.db",
                                keys_dir=folder / "keys")
        settings = module.SimulatorSettings(families=10, protocol=config)
        components[name] = module.RegistersComponent(settings, population)
        await components[name].start()
    calls = {name: _Asgi(Litestar([c.router], logging_config=None, openapi_config=None), body)
             for name, c in components.items()}
    try:
        return {f"concurrency {concurrency}": await _interleaved(
            calls, queries=args.queries, rounds=args.rounds, concurrency=concurrency)
            for concurrency in args.concurrency}
    finally:
        for component in components.values():
            await component.stop()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="einmal-protocol-bench-") as tmp:
        folder = Path(tmp)
        for name, bench in (("record", bench_record), ("handler", bench_handler)):
            if name not in args.only:
                continue
            for label, figures in (await bench(args, folder)).items():
                line = ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
                print(f"{name}, {label}: CPU-us per query (median of {args.rounds}): {line}")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 16])
    parser.add_argument("--only", type=lambda s: s.split(","), default=["record", "handler"])
    parser.add_argument("--baseline-protocol")
    parser.add_argument("--baseline-app")
    return parser.parse_args()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(_parse()))
    else:
        uvloop.run(main(_parse()))
