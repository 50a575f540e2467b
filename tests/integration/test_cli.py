"""The console script as a user runs it: real processes, real HTTP."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from einmal.migrate import head
from tests.conftest import free_port, reset_database

EINMAL = [sys.executable, "-m", "einmal_app"]


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 30,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EINMAL, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


class TestServeRefusesBadInput:
    def test_unknown_component_is_one_clear_line(self, tmp_path: Path) -> None:
        result = _run("serve", "--components", "broker,cockpitt", "--data-dir", str(tmp_path))
        assert result.returncode != 0
        assert "cockpitt" in result.stderr
        assert "Traceback" not in result.stderr

    def test_bad_policy_document_stops_start_up_naming_the_file(self, tmp_path: Path) -> None:
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "broken.toml").write_text('id = "broken-service"\nname = 3\n')
        result = _run("serve", "--policies-dir", str(policies), "--data-dir",
                      str(tmp_path / "data"), "--port", str(free_port()))
        assert result.returncode != 0
        assert "broken.toml" in result.stderr
        assert "Traceback" not in result.stderr

    def test_bad_port_from_environment(self, tmp_path: Path) -> None:
        result = _run("serve", "--data-dir", str(tmp_path), env={"EINMAL_PORT": "eighty"})
        assert result.returncode != 0
        assert "port" in result.stderr
        assert "Traceback" not in result.stderr


class TestScenarioCommand:
    def test_no_server_is_one_clear_line(self) -> None:
        result = _run("scenario", "elfe", "--base-url", f"http://127.0.0.1:{free_port()}")
        assert result.returncode != 0
        assert "einmal serve --demo" in result.stderr
        assert "Traceback" not in result.stderr

    def test_unknown_story(self) -> None:
        result = _run("scenario", "wedding")
        assert result.returncode == 2
        assert "wedding" in result.stderr


class TestServeAndScenario:
    def test_demo_server_and_every_story_passes(self, tmp_path: Path) -> None:
        port = free_port()
        env = {**os.environ, "EINMAL_SIMULATOR_FAMILIES": "60", "EINMAL_OPS_TOKEN": _OPS}
        if os.environ.get("EINMAL_TEST_DATABASE_URL"):
            reset_database(os.environ["EINMAL_TEST_DATABASE_URL"])
            env["EINMAL_DATABASE_URL"] = os.environ["EINMAL_TEST_DATABASE_URL"]
        server = subprocess.Popen(
            [*EINMAL, "serve", "--demo", "--port", str(port), "--data-dir", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, server)
            assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o777 == 0o600
            for story in ("elfe", "uvo", "dsc"):
                result = _run("scenario", story, "--base-url", base, timeout=120)
                assert result.returncode == 0, result.stdout + result.stderr
                assert "✗" not in result.stdout
        finally:
            server.send_signal(signal.SIGINT)
            try:
                _, stderr = server.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                _, stderr = server.communicate()
        assert "Traceback" not in stderr
        assert "scenario elfe --base-url" in stderr  # the welcome text says what to try next


_OPS = "test-operator-token"


def _wait_ready(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(server.stderr.read() if server.stderr else "server exited")
        try:
            if httpx.get(f"{base}/health/ready", timeout=1,
                         headers={"authorization": f"Bearer {_OPS}"}).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not become ready")


class TestServeOutsideDemoMode:
    def test_refuses_the_shipped_demo_documents(self, tmp_path: Path) -> None:
        result = _run("serve", "--data-dir", str(tmp_path), "--port", str(free_port()))
        assert result.returncode != 0
        assert "public knowledge" in result.stderr
        assert "Traceback" not in result.stderr


class TestLogShredCommand:
    def test_bad_date_is_one_line(self, tmp_path: Path) -> None:
        result = _run("log", "shred", "--before", "soon", "--data-dir", str(tmp_path), "--yes")
        assert result.returncode == 2
        assert "--before" in result.stderr
        assert "Traceback" not in result.stderr

    def test_no_cockpit_data(self, tmp_path: Path) -> None:
        result = _run("log", "shred", "--before", "2025-01-01", "--data-dir", str(tmp_path),
                      "--yes")
        assert result.returncode == 1
        assert "no cockpit data" in result.stderr


class TestDbUpgrade:
    def test_upgrade_is_idempotent_and_serve_refuses_a_stale_schema(self, tmp_path: Path) -> None:
        first = _run("db", "upgrade", "--data-dir", str(tmp_path))
        assert first.returncode == 0, first.stderr
        broker_head, cockpit_head = head("broker"), head("cockpit")
        assert f"broker: empty -> {broker_head}" in first.stdout
        assert f"cockpit: empty -> {cockpit_head}" in first.stdout
        again = _run("db", "upgrade", "--data-dir", str(tmp_path))
        assert f"broker: {broker_head} -> {broker_head}" in again.stdout

        with sqlite3.connect(tmp_path / "broker.db") as db:  # as if made by an older Einmal
            db.execute("DELETE FROM broker_alembic_version")
        behind = _run("serve", "--demo", "--data-dir", str(tmp_path), "--port", str(free_port()))
        assert behind.returncode != 0
        assert "einmal db upgrade" in behind.stderr
        assert "Traceback" not in behind.stderr

        with sqlite3.connect(tmp_path / "broker.db") as db:
            db.execute("INSERT INTO broker_alembic_version VALUES ('9999')")
        ahead = _run("serve", "--demo", "--data-dir", str(tmp_path), "--port", str(free_port()))
        assert ahead.returncode != 0
        assert "newer than this version" in ahead.stderr
