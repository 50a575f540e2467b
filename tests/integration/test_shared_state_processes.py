"""Several processes, no sticky sessions (decision 0032): two real `einmal serve` processes on
one database, as behind a plain round-robin proxy. A login on one cockpit process is valid on
the other and a logout on one ends it on both; two broker processes allow a limit once.

On PostgreSQL when EINMAL_TEST_DATABASE_URL is set (what a scale-out deployment has), else on
one shared SQLite file with ``EINMAL_SHARED_STATE=database``."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, reset_database
from tests.e2e.web_support import Browser, form
from tests.waiting import wait_until

EINMAL = [sys.executable, "-m", "einmal_app", "serve", "--demo"]
_OPS = "test-operator-token"


def _env(data: Path, **extra: str) -> dict[str, str]:
    url = os.environ.get("EINMAL_TEST_DATABASE_URL") or f"sqlite:///{data / 'shared.db'}"
    return {**os.environ, "EINMAL_DATABASE_URL": url, "EINMAL_SHARED_STATE": "database",
            "EINMAL_OPS_TOKEN": _OPS, "EINMAL_SIMULATOR_FAMILIES": "20", **extra}


class Processes:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def start(self, port: int, components: str, **env: str) -> str:
        log = (self.data / f"serve-{port}.log").open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            [*EINMAL, "--port", str(port), "--data-dir", str(self.data),
             "--components", components, "--workers", "1"],  # one process each
            stdout=log, stderr=subprocess.STDOUT, env=_env(self.data, **env))
        self.procs.append(proc)
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                msg = (self.data / f"serve-{port}.log").read_text()[-3000:]
                raise AssertionError(f"server on {port} exited:\n{msg}")
            try:
                return httpx.get(f"{base}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, what=f"server on port {port}", timeout=60)
        return base

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


@pytest.fixture(name="processes")
def fx_processes(tmp_path: Path) -> Iterator[Processes]:
    if os.environ.get("EINMAL_TEST_DATABASE_URL"):
        reset_database(os.environ["EINMAL_TEST_DATABASE_URL"])
    processes = Processes(tmp_path)
    yield processes
    processes.stop()


def test_a_login_holds_on_both_cockpits_and_a_logout_ends_it_on_both(
        processes: Processes) -> None:
    first_port, second_port = free_port(), free_port()
    public = f"http://127.0.0.1:{first_port}"  # what the proxy in front of both would be
    first = processes.start(first_port, "cockpit", EINMAL_PUBLIC_URL=public)
    second = processes.start(second_port, "cockpit", EINMAL_PUBLIC_URL=public)
    citizens = httpx.get(f"{first}/demo/credentials", timeout=10).json()["citizens"]
    anna = next(c for c in citizens if c["family"] == "elfe" and c["role"] == "parent")

    browser = Browser(first)  # cookies are per host, not per port: both processes see it
    try:
        landed = browser.login(anna["idnr"])
        assert landed.url.path == "/"
        on_second = browser.get(f"{second}/")
        assert on_second.status_code == 200
        assert on_second.url.path == "/", "the other process did not know the session"
        assert "/logout" in on_second.text

        logout = form(on_second.text, "/logout")  # log out on the second process
        ended = browser.post(f"{second}/logout", data=dict(logout.fields))
        assert ended.status_code == 200
        back = browser.get(f"{first}/")
        assert back.url.path == "/login", "the first process still knew the session"
    finally:
        browser.close()


def test_two_brokers_allow_a_limit_once(processes: Processes) -> None:
    limits = {"EINMAL_RATE_LIMIT_TOKEN_PER_S": "0.001", "EINMAL_RATE_LIMIT_TOKEN_BURST": "3"}
    bases = [processes.start(free_port(), "broker,registers", **limits),
             processes.start(free_port(), "broker,registers", **limits)]
    statuses = [httpx.post(f"{bases[i % 2]}/v1/token", data={"grant_type": "x"},
                           timeout=10).status_code for i in range(8)]
    # the bucket (3 tokens) is taken before the form is read: 3 answers, then 429 from both
    assert statuses.count(429) == 5, statuses
    assert all(status != 429 for status in statuses[:3]), statuses
