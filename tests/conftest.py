"""Shared fixtures: settings for a throw-away data dir, and a real server over real HTTP.

The suite runs on SQLite by default and on PostgreSQL when EINMAL_TEST_DATABASE_URL is set
(.ci/run does both), in pytest-xdist workers under `make test`: each worker has its own
PostgreSQL database and its own share of the free ports.
"""

import asyncio
import atexit
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlmodel import SQLModel

import broker.tables  # noqa: F401 - registers the tables that reset_database drops
import cockpit.tables  # noqa: F401 - registers the tables that reset_database drops
from einmal.keys import public_jwk
from einmal.logging import configure_logging
from einmal.settings import Settings, load_settings
from einmal.store import create_engine
from einmal_app.server import build_components, create_app
from policies import DOCUMENTS_DIR

#: Under pytest-xdist (`make test` runs the suite in worker processes): this process's worker,
#: "gw0", "gw1", ... (None when the suite runs in one process, as with `-n 0`).
WORKER = os.environ.get("PYTEST_XDIST_WORKER") or None
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) if WORKER else 1
_WORKER_INDEX = int(WORKER.removeprefix("gw")) if WORKER else 0


def _worker_database(url: str | None) -> str | None:
    """The worker's own PostgreSQL database beside the given one (``test`` -> ``test_gw0``),
    created if missing: each server start drops Einmal's tables (``reset_database``), so two
    workers must never share one. None, SQLite and a single process keep the URL as it is."""
    if not url or not WORKER or not url.startswith("postgres"):
        return url
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    if name.endswith(f"_{WORKER}"):  # already the worker's (a pytest started by a test)
        return url
    own = f"{name}_{WORKER}"

    async def create() -> None:
        admin = await asyncpg.connect(url.replace("+asyncpg", "", 1))
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", own):
                await admin.execute(f'CREATE DATABASE "{own}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()

    asyncio.run(create())
    return urlunsplit(parts._replace(path=f"/{own}"))


TEST_DATABASE_URL = _worker_database(os.environ.get("EINMAL_TEST_DATABASE_URL") or None)
if TEST_DATABASE_URL:  # what the tests' own processes (einmal serve, witnesses) are given
    os.environ["EINMAL_TEST_DATABASE_URL"] = TEST_DATABASE_URL

# Every event is produced (so capture_logs sees them all) but written nowhere.
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the test session
atexit.register(_DEVNULL.close)
configure_logging(level="debug", cache=False, stream=_DEVNULL)


def free_port() -> int:
    """A port on 127.0.0.1 that is free now (the caller's server binds it a moment later).

    Under pytest-xdist each worker takes only its share of the ports, so two workers never pick
    the same one in that moment: (port // 2) % workers, as Linux hands out odd ports first for
    bind(0) (port % 2 would leave one of two workers none)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if (port // 2) % _WORKERS == _WORKER_INDEX:
            return port


def reset_database(url: str) -> None:
    """Drop Einmal's tables in a shared test database so each server starts empty.

    Runs in its own thread: callers may already be inside an event loop."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_drop_async(url))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


async def _drop_async(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.drop_all)
        for version_table in ("broker_alembic_version", "cockpit_alembic_version"):
            await conn.execute(text(f"DROP TABLE IF EXISTS {version_table}"))
    await engine.dispose()


@pytest.fixture(name="make_settings")
def fx_make_settings(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path_factory.mktemp("einmal"), "demo": True,
                                  "simulator_families": 60, "delivery_interval_s": 0.2,
                                  "database_url": TEST_DATABASE_URL}
        values.update(overrides)
        return load_settings({}, **values)

    return make


@dataclass
class LiveServer:
    settings: Settings
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread
    components: list[Any]
    loop: Any = None

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def component(self, name: str) -> Any:
        return next(c for c in self.components if c.name == name)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


def start_server(settings: Settings) -> LiveServer:
    if settings.database_url and settings.database_url.startswith("postgres"):
        reset_database(settings.database_url)
    components = build_components(settings)
    app = create_app(settings, components)
    loops: list[asyncio.AbstractEventLoop] = []

    async def remember_loop() -> None:
        loops.append(asyncio.get_running_loop())

    app.on_startup.append(remember_loop)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            msg = "test server did not start"
            raise RuntimeError(msg)
        time.sleep(0.02)
    return LiveServer(settings=settings, base_url=settings.base_url, server=server,
                      thread=thread, components=components, loop=loops[0] if loops else None)


@pytest.fixture(name="start_live_server")
def fx_start_live_server(
        make_settings: Callable[..., Settings]) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        overrides.setdefault("port", free_port())
        live = start_server(make_settings(**overrides))
        servers.append(live)
        return live

    yield start
    for live in servers:
        live.stop()


@pytest.fixture(name="live_server")
def fx_live_server(start_live_server: Callable[..., LiveServer]) -> LiveServer:
    """A fresh demo server (broker + cockpit + registers) on a free port."""
    return start_live_server()


def serve_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A demo server as ``live_server`` starts it, for a fixture of a wider scope: a class or
    module whose tests leave nothing another of them could see shares one (a start costs half a
    second of CPU). On PostgreSQL no other server of the worker may start while it runs (a start
    empties the database)."""
    settings = load_settings({}, data_dir=tmp_path_factory.mktemp("einmal"), demo=True,
                             simulator_families=60, delivery_interval_s=0.2,
                             database_url=TEST_DATABASE_URL, port=free_port())
    live = start_server(settings)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(name="production_policies")
def fx_production_policies(tmp_path: Path) -> Path:
    """A policy directory as a real deployment has it: no demo documents, a fresh key."""
    directory = tmp_path / "policies"
    directory.mkdir()
    document = (DOCUMENTS_DIR / "familienkasse.toml").read_text()
    key = public_jwk(Ed25519PrivateKey.generate().public_key(), "familienkasse-2026-1")
    start = document.index('x = "')
    end = document.index("\n", start)
    document = document[:start] + f"x = {json.dumps(key['x'])}" + document[end:]
    document = document.replace("demo = true", "demo = false").replace(
        'kid = "familienkasse-demo-1"', 'kid = "familienkasse-2026-1"')
    (directory / "familienkasse.toml").write_text(document)
    return directory
