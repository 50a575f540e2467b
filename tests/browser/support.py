"""What the browser tests and the screenshot script share: Chromium, the demo, the scenario."""

import asyncio
import io
import os
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from einmal.settings import load_settings
from einmal_app.scenario import run_scenario
from tests.conftest import TEST_DATABASE_URL, LiveServer, free_port, start_server

CHROMIUM = os.environ.get("EINMAL_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("EINMAL_REQUIRE_BROWSER") == "1"
#: What the machine notes prescribe: headless, and no background connections (the sandboxed
#: network refuses them, many at a time). Playwright adds --headless itself.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
#: axe-core impacts that fail a test (minor and moderate are reported by the scan but tolerated).
BLOCKING_IMPACTS = frozenset({"serious", "critical"})


def start_demo(data_dir: Path, **overrides: Any) -> LiveServer:
    values: dict[str, Any] = {"data_dir": data_dir, "demo": True, "simulator_families": 60,
                              "delivery_interval_s": 0.2, "database_url": TEST_DATABASE_URL,
                              "port": free_port()}
    values.update(overrides)
    return start_server(load_settings({}, **values))


def run_elfe(base_url: str, credentials: dict[str, Any]) -> tuple[bool, str]:
    """Play ``einmal scenario elfe`` against the server; returns (all checks held, its output)."""
    out = io.StringIO()
    result: list[bool] = []
    errors: list[BaseException] = []

    def play() -> None:  # own thread: the caller may be inside Playwright's greenlet loop
        try:
            result.append(asyncio.run(run_scenario("elfe", base_url, credentials,
                                                   console=Console(file=out, width=200))))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=play)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return result[0], out.getvalue()


