"""Benchmark server processes, started by ``bench.run`` as subprocesses.

* ``echo``: a raw Litestar msgspec JSON echo endpoint - the ceiling any Python handler reaches.
* ``floor``: the HTTP plumbing of a proof request and nothing else - the proof request's JSON
  in, one XPersonenstand query of the real size out through the broker's ``RegisterClient``, the
  JSON back; ``floor-register`` answers that query with a fixed XPersonenstand answer of the
  real size (built once). What any Python broker on this stack pays before it checks, fetches,
  signs or records anything: the ceiling of the proof variants with an HTTP register.
  ``floor --register-url`` names a register elsewhere (variant ``f``); without it the same
  process also serves the register and calls itself over loopback (``f2``, the shape of
  ``einmal serve --demo``).
* ``einmal-memory``: the default ``einmal serve --demo`` composition (or, with
  ``--components broker --cockpit-url URL``, the broker alone), except that the broker's
  birth connector is replaced by an in-memory one (no HTTP) that returns the ``ProofData`` a real
  fetch returned once at start-up (fetched from the register simulator through an in-process
  ASGI transport, before the server starts).

Both run like ``einmal serve`` (einmal_app/run.py), on the server named by ``--server``:
``uvicorn`` (uvloop + httptools, in this process: as ``einmal serve`` ships it), ``granian``
(one worker process below a supervisor, uvloop) or ``uvicorn-h11`` (the stdlib asyncio loop and
h11: how ``einmal serve`` ran before decision 0029). One worker, no access log; the application
log level is ``warning``.
"""

import argparse
import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvicorn
from granian.constants import HTTPModes, Interfaces, Loops
from granian.log import LogLevels
from granian.server import Server as Granian
from litestar import Litestar, Response, get, post

from connectors import xpersonenstand as messages
from connectors._http import RegisterClient
from connectors.factory import build_connectors
from connectors.simulators.app import SimulatorSettings, create_registers_router
from connectors.simulators.population import generate_population
from einmal.domain.proofs import ProofType
from einmal.domain.registers import RecordNotFoundError
from einmal.logging import configure_logging
from einmal.settings import load_settings
from einmal_app.server import build_components, create_app, freeze_startup_heap

UVICORN_OPTIONS: dict[str, Any] = {"log_level": "warning", "access_log": False,
                                   "timeout_graceful_shutdown": 10}
SERVERS = ("uvicorn", "granian", "uvicorn-h11")
#: the factory's arguments, for a worker process (granian)
_ARGS_ENV = "EINMAL_BENCH_SERVER_ARGS"


class EchoIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The same body the proof request sends."""

    proof_type: str
    subject: str
    purpose: str
    consent_id: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


def echo_app() -> Any:
    @post("/echo", status_code=200)
    async def echo(data: EchoIn) -> EchoIn:
        return data

    @post("/v1/proof-requests", status_code=200)  # same path and body as the broker
    async def echo_proof(data: EchoIn) -> EchoIn:
        return data

    @get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(route_handlers=[echo, echo_proof, ready], logging_config=None, debug=False,
                    openapi_config=None)


#: where the floor's register answers (the real Standesamt route of Bremen)
FLOOR_PATH = "/registers/standesamt/04011000/geburt"
#: the floor's query and answer: XPersonenstand messages of the size the Standesamt exchanges
FLOOR_QUERY = messages.build_request(idnr="12345678901", birth_date="2025-01-01",
                                     family_name=None, reader="standesamt:04011000")
FLOOR_ANSWER = messages.build_answer(
    author="standesamt:04011000", register_number="G 1234/2025",
    child={"idnr": "12345678901", "vornamen": "Mia Sophie", "familienname": "Beispiel",
           "geschlecht": "w", "geburtsdatum": "2025-01-01"},
    place_name="Bremen", ags="04011000",
    parents=[{"idnr": "98765432109", "vornamen": "Anna", "familienname": "Beispiel"},
             {"idnr": "98765432108", "vornamen": "Jonas", "familienname": "Beispiel"}])


def _floor_register() -> Any:
    @post(FLOOR_PATH, status_code=200)
    async def register(body: bytes) -> Response[bytes]:
        return Response(content=FLOOR_ANSWER, media_type="application/xml")

    return register


def floor_app(port: int, register_url: str | None) -> Any:
    """See the module's docstring: ``floor``."""
    handlers: list[Any] = [_ready]
    if register_url is None:
        handlers.append(_floor_register())
        register_url = f"http://127.0.0.1:{port}{FLOOR_PATH}"
    client = RegisterClient(timeout_s=5.0, retries=2)
    headers = {"content-type": "application/xml", "accept": "application/xml"}
    url = register_url

    @post("/v1/proof-requests", status_code=200)
    async def relay(data: EchoIn) -> EchoIn:
        answer = await client.request("POST", url, register="standesamt", content=FLOOR_QUERY,
                                      headers=headers)
        if answer.status_code != 200:  # a benchmark that measured failures would mislead
            msg = f"the floor's register answered {answer.status_code}"
            raise RuntimeError(msg)
        return data

    async def close() -> None:
        await client.aclose()

    return Litestar(route_handlers=[relay, *handlers], logging_config=None, debug=False,
                    openapi_config=None, on_shutdown=[close])


def floor_register_app() -> Any:
    return Litestar(route_handlers=[_floor_register(), _ready], logging_config=None,
                    debug=False, openapi_config=None)


@get("/health/ready")
async def _ready() -> dict[str, str]:
    return {"status": "ok"}


class InMemoryBirthConnector:
    """An in-process register: answers with a ``ProofData`` captured from one real fetch."""

    def __init__(self, real: Any, answers: Mapping[str, Any]) -> None:
        self.proof_type = ProofType.BIRTH
        self._real = real
        self._answers = dict(answers)

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        self._real.check_parameters(parameters)  # pure, no I/O

    async def fetch(self, subject: str, parameters: Mapping[str, Any], *,
                    requester: Any = None) -> Any:
        self.check_parameters(parameters)
        answer = self._answers.get(subject)
        if answer is None:
            msg = "the in-memory register holds no record for the subject"
            raise RecordNotFoundError(msg)
        return answer

    async def aclose(self) -> None:
        await self._real.aclose()


async def _capture_birth_proof(settings: Any, child: dict[str, Any]) -> Any:
    """One real fetch through the birth connector, against the simulator app in-process."""
    registers = Litestar(route_handlers=[create_registers_router(SimulatorSettings(
        seed=settings.simulator_seed, families=settings.simulator_families))],
        logging_config=None, openapi_config=None)
    transport = httpx.ASGITransport(app=registers)
    connectors = build_connectors("http://registers.invalid/registers", transport=transport)
    try:
        return await connectors[ProofType.BIRTH].fetch(
            child["idnr"], {"place_of_birth": child["place_of_birth"],
                            "birth_date": child["birth_date"]})
    finally:
        for connector in connectors.values():
            await connector.aclose()


def einmal_memory_app(port: int, data_dir: Path, components_: str | None = None,
                      cockpit_url: str | None = None) -> Any:
    settings = load_settings(os.environ, port=port, data_dir=data_dir, demo=True,
                             log_level="warning", components=components_,
                             cockpit_url=cockpit_url)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    components = build_components(settings)
    broker = next(c for c in components if c.name == "broker")
    population = generate_population(seed=settings.simulator_seed,
                                     families=settings.simulator_families)
    child = next(msgspec.to_builtins(c) for c in population.demo_citizens()
                 if c.family == "elfe" and c.role == "child")
    # a loop of its own, not asyncio.run: in a granian worker the serving loop is already set
    loop = asyncio.new_event_loop()
    try:
        proof = loop.run_until_complete(_capture_birth_proof(settings, child))
    finally:
        loop.close()
    real = broker.connectors[ProofType.BIRTH]
    broker.use_connector(ProofType.BIRTH, InMemoryBirthConnector(real, {child["idnr"]: proof}))
    assert broker.service.connectors[ProofType.BIRTH] is not real  # noqa: S101 - swapped in
    return create_app(settings, components)


def build(args: dict[str, Any]) -> Any:
    if args["kind"] == "echo":
        return echo_app()
    if args["kind"] == "floor":
        return floor_app(args["port"], args["register_url"])
    if args["kind"] == "floor-register":
        return floor_register_app()
    return einmal_memory_app(args["port"], Path(args["data_dir"]), args["components"],
                             args["cockpit_url"])


def worker_app() -> Any:
    """The app of a granian worker process (factory): built from the parent's arguments."""
    app = build(json.loads(os.environ[_ARGS_ENV]))
    freeze_startup_heap()  # as `einmal serve` does
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["echo", "floor", "floor-register", "einmal-memory"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--components", help="e.g. broker (default: the demo composition)")
    parser.add_argument("--cockpit-url", help="the cockpit's base URL when it runs elsewhere")
    parser.add_argument("--register-url", help="floor: the floor-register's query URL "
                        "(default: this process answers the queries itself)")
    parser.add_argument("--server", choices=SERVERS, default="uvicorn")
    args = parser.parse_args()
    spec = {"kind": args.kind, "port": args.port, "components": args.components,
            "cockpit_url": args.cockpit_url, "register_url": args.register_url,
            "data_dir": str(args.data_dir) if args.data_dir else None}
    if args.server == "granian":
        os.environ[_ARGS_ENV] = json.dumps(spec)
        Granian("bench.servers:worker_app", factory=True, address="127.0.0.1", port=args.port,
                interface=Interfaces.ASGI, workers=1, loop=Loops.uvloop, http=HTTPModes.http1,
                websockets=False, log_level=LogLevels.warning, log_access=False).serve()
        return
    app = build(spec)
    freeze_startup_heap()  # as `einmal serve` does
    fast = args.server == "uvicorn"
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop" if fast else "asyncio",
                http="httptools" if fast else "h11", **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
