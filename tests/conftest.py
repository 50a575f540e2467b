"""Shared fixtures: settings for a throw-away data dir, and a real server over real HTTP.

The suite runs on SQLite by default and on PostgreSQL when EINMAL_TEST_DATABASE_URL is set
(.ci/run does both).
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

TEST_DATABASE_URL = os.environ.get("EINMAL_TEST_DATABASE_URL") or None

# Every event is produced (so capture_logs sees them all) but written nowhere.
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the test session
atexit.register(_DEVNULL.close)
configure_logging(level="debug", cache=False, stream=_DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
