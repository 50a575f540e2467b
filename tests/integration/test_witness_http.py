"""The witness as its own process over real HTTP: ``python -m einmal_app witness serve``, driven
with httpx by a log whose checkpoints are signed with ``einmal_client.tlog``. Its state survives
a restart; of two submissions from the same old size exactly one is cosigned."""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from einmal_client.cosignature import append_signatures, verify_cosignatures
from einmal_client.tlog import verify_note
from tests.conftest import free_port
from tests.unit.witness.signed_log import SignedLog

NAME = "witness.example/supervisor"
REPO = Path(__file__).resolve().parents[2]


def _einmal(*args: str) -> list[str]:
    return [sys.executable, "-m", "einmal_app", *args]


class WitnessProcess:
    def __init__(self, data_dir: Path, log_keys: list[str]) -> None:
        self.data_dir = data_dir
        self.log_keys = log_keys
        self.port = 0
        self.log_file = data_dir.parent / "witness.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        args = ["witness", "serve", "--data-dir", str(self.data_dir), "--name", NAME,
                "--port", str(self.port), "--log-format", "json"]
        for key in self.log_keys:
            args += ["--log-key", key]
        # its log goes to a file: a pipe nobody reads would block the server once full
        self.log_file = self.data_dir.parent / f"witness-{self.port}.log"
        with self.log_file.open("wb") as stderr:
            self.process = subprocess.Popen(_einmal(*args), cwd=REPO, stdout=subprocess.DEVNULL,
                                            stderr=stderr, env={**os.environ})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the witness exited: {self.log_file.read_text()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling for the condition (the port answering), not a fixed wait
        pytest.fail("the witness did not become ready within 30 s")

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (a graceful stop) or SIGKILL (nothing after the last answer runs)."""
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None


@pytest.fixture(name="log")
def fx_log() -> SignedLog:
    return SignedLog(origin="cockpit.example/einmal-log")


@pytest.fixture(name="witness")
def fx_witness(tmp_path: Path, log: SignedLog) -> Iterator[WitnessProcess]:
    process = WitnessProcess(tmp_path / "witness", [log.vkey])
    process.start()
    yield process
    process.stop()


def _post(witness: WitnessProcess, body: bytes) -> httpx.Response:
    return httpx.post(f"{witness.url}/add-checkpoint", content=body, timeout=10)


def _vkey(data_dir: Path) -> str:
    done = subprocess.run(_einmal("witness", "key", "--data-dir", str(data_dir)), cwd=REPO,
                          capture_output=True, check=True, timeout=60)
    return done.stdout.decode().strip()


class TestWitnessProcess:
    def test_a_log_is_cosigned_and_a_fork_is_not(self, witness: WitnessProcess,
                                                  log: SignedLog) -> None:
        vkey = _vkey(witness.data_dir)
        assert vkey.startswith(f"{NAME}+")
        first = _post(witness, log.request(0, 3))
        assert first.status_code == 200, first.text
        note = append_signatures(log.note(3), first.text)
        verify_note(note, log.origin, log.key.public_key())
        assert verify_cosignatures(note, [vkey], 1) == [NAME]

        assert _post(witness, log.request(3, 40)).status_code == 200
        fork = SignedLog(origin=log.origin, fork="rewritten ")
        for body in (fork.request(40, 40), fork.request(40, 41)):
            refused = _post(witness, body)
            assert refused.status_code in (409, 422)
            assert refused.headers["content-type"] == "application/problem+json"
            assert "\u2014" not in refused.text
        stale = _post(witness, log.request(3, 41))
        assert (stale.status_code, stale.headers["content-type"], stale.text) == (
            409, "text/x.tlog.size", "40\n")

    def test_the_state_survives_a_restart(self, witness: WitnessProcess, log: SignedLog) -> None:
        vkey = _vkey(witness.data_dir)
        assert _post(witness, log.request(0, 17)).status_code == 200
        witness.stop(kill=True)
        witness.start()
        assert _vkey(witness.data_dir) == vkey
        asked = _post(witness, log.request(0, 20))
        assert (asked.status_code, asked.text) == (409, "17\n")
        fork = SignedLog(origin=log.origin, fork="rewritten ")
        assert _post(witness, fork.request(17, 17)).status_code == 409
        resumed = _post(witness, log.request(17, 20))
        assert resumed.status_code == 200
        assert verify_cosignatures(log.note(20) + resumed.text, [vkey], 1) == [NAME]
        witness.stop()  # graceful this time
        witness.start()
        assert _post(witness, log.request(0, 20)).text == "20\n"

    def test_of_two_submissions_from_the_same_size_exactly_one_wins(
            self, witness: WitnessProcess, log: SignedLog) -> None:
        assert _post(witness, log.request(0, 10)).status_code == 200

        async def race(old: int) -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=witness.url, timeout=10) as client:
                return list(await asyncio.gather(
                    client.post("/add-checkpoint", content=log.request(old, old + 1)),
                    client.post("/add-checkpoint", content=log.request(old, old + 2))))

        old = 10
        for _ in range(10):
            answers = asyncio.run(race(old))
            assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
            winner, loser = sorted(answers, key=lambda a: a.status_code)
            assert winner.text.startswith(f"\u2014 {NAME} ")
            assert loser.headers["content-type"] == "text/x.tlog.size"
            latest = int(loser.text)  # the winner's size, whichever it was
            assert latest in (old + 1, old + 2)
            old = latest
        assert _post(witness, log.request(0, old)).text == f"{old}\n"

    def test_an_unusable_log_key_stops_the_start_with_one_line(self, tmp_path: Path) -> None:
        done = subprocess.run(_einmal("witness", "serve", "--data-dir", str(tmp_path / "w"),
                                      "--log-key", "not-a-key", "--port", str(free_port())),
                              cwd=REPO, capture_output=True, timeout=60, check=False)
        assert done.returncode == 1
        assert done.stderr.decode().startswith("Error: cannot start: log key")
        assert "Traceback" not in done.stderr.decode()
