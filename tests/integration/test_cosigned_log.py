"""The transfer log with witnesses as their own processes over real HTTP (``python -m einmal_app
witness serve``): a checkpoint is published once cosigned; a witness that is down, or that saw a
fork, or answers with another key, gets nothing published; entries are accepted meanwhile and
the log catches up when the witness is back; readiness says so. Then the same through a live
server, and the cockpit's migration 0003."""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, inspect
from sqlmodel import SQLModel
from structlog.testing import capture_logs

import cockpit.tables  # noqa: F401 - registers the tables
from cockpit.log import TransferLog
from cockpit.log.cosigner import QuorumError
from cockpit.log.witnesses import WitnessEndpoint, WitnessPolicy
from cockpit.service import VISIBLE_FOR, CockpitService
from cockpit.store import SqliteCockpitStore
from cockpit.vault import CitizenVault
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.keys import SigningKey, load_or_create_signing_key
from einmal.migrate import _config
from einmal.store import create_engine, dispose
from einmal_client import tlog
from einmal_client.cosignature import verify_cosignatures
from einmal_client.receipt import verify_receipt
from tests.conftest import TEST_DATABASE_URL, LiveServer, free_port, reset_database
from tests.e2e.conftest import Demo
from tests.e2e.helpers import NAMENSDIENST, birth_request
from tests.unit.witness.signed_log import SignedLog
from witness.identity import load_or_create_identity

REPO = Path(__file__).resolve().parents[2]
ORIGIN = "cockpit.test/einmal-transfer-log"
#: SignedLog(seed=7)'s key: a fork signed with the log's own key can be shown to a witness
LOG_KEY = SigningKey(kid="log", private_key=Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32))
LOG_VKEY = tlog.verifier_key(ORIGIN, LOG_KEY.private_key.public_key())
CHILD = "86095742719"
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _einmal(*args: str) -> list[str]:
    return [sys.executable, "-m", "einmal_app", *args]


class Witness:
    """``einmal witness serve`` in a process of its own, on a port it keeps across restarts."""

    def __init__(self, data_dir: Path, name: str, log_keys: list[str]) -> None:
        self.data_dir, self.name, self.log_keys = data_dir, name, log_keys
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # its key and name, made as `einmal witness key` makes them (the process finds them)
        self.vkey = load_or_create_identity(data_dir, name).vkey

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> WitnessEndpoint:
        return WitnessEndpoint.of(self.vkey, self.url)

    def start(self) -> None:
        args = ["witness", "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
                "--log-format", "json"]
        for key in self.log_keys:
            args += ["--log-key", key]
        log_file = self.data_dir.parent / f"{self.data_dir.name}-{time.monotonic_ns()}.log"
        with log_file.open("wb") as stderr:  # a file: a pipe nobody reads would block it
            self.process = subprocess.Popen(_einmal(*args), cwd=REPO, stdout=subprocess.DEVNULL,
                                            stderr=stderr, env={**os.environ})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the witness exited: {log_file.read_text()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling for the condition (the port answering)
        pytest.fail("the witness did not become ready within 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None


@pytest.fixture(name="witnesses")
def fx_witnesses(tmp_path: Path) -> Iterator[list[Witness]]:
    """Two witnesses following the test log (started by the tests that need them)."""
    made = [Witness(tmp_path / f"witness{n}", f"witness{n}.test/supervisor", [LOG_VKEY])
            for n in (1, 2)]
    yield made
    for witness in made:
        witness.stop()


@dataclass
class Cockpit:
    service: CockpitService
    log: TransferLog
    count: int = 0

    async def add(self, count: int) -> list[str]:
        """Ingest ``count`` transfers about the child and integrate them."""
        records = []
        for _ in range(count):
            self.count += 1
            records.append(TransferRecord(
                id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), outcome=Outcome.DELIVERED,
                proof_type="birth", purpose="elterngeld-antrag", subject=CHILD,
                service=ServiceRef(id="elterngeld", name="Elterngeldstelle", authority="Bremen",
                                   land="HB"),
                register=RegisterRef(id="standesamt:04011000", name="Standesamt Bremen"),
                concerned=(Concerned(idnr=CHILD, relation="self"),)))
        await self.service.ingest(records)
        while await self.log.integrate():
            pass
        return [record.id for record in records]

    async def published(self) -> int:
        return (await self.log.checkpoint())[0]


@asynccontextmanager
async def _cockpit(folder: Path, witnesses: list[WitnessEndpoint], quorum: int,
                   ) -> AsyncIterator[Cockpit]:
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'cockpit.db'}")
    store = SqliteCockpitStore(engine)
    transfer_log = TransferLog(store=store, key=LOG_KEY, origin=ORIGIN, witness_timeout_s=5,
                               witnesses=WitnessPolicy(witnesses=tuple(witnesses),
                                                       quorum=quorum))
    service = CockpitService(store=store, pseudonym_key=b"p" * 32,
                             vault=CitizenVault(b"m" * 32))
    try:
        await store.create_schema()
        await transfer_log.initialise()
        yield Cockpit(service=service, log=transfer_log)
    finally:
        await transfer_log.stop()
        await dispose(engine)


def _events(logs: list[Any], name: str) -> list[Any]:
    return [event for event in logs if event["event"] == name]


class TestWitnessProcesses:
    async def test_published_once_cosigned_and_a_receipt_verifies_offline(
            self, tmp_path: Path, witnesses: list[Witness]) -> None:
        witness = witnesses[0]
        witness.start()
        async with _cockpit(tmp_path, [witness.endpoint], 1) as cockpit:
            ids = await cockpit.add(5)
            with pytest.raises(Exception, match="cosigned by its witnesses"):
                await cockpit.log.checkpoint()  # signed, not yet cosigned: not published
            assert await cockpit.log.cosign()
            size, note = await cockpit.log.checkpoint()
            assert size == 5
            assert verify_cosignatures(note, [witness.vkey], 1) == [witness.name]
            tlog.verify_note(note, ORIGIN, LOG_KEY.private_key.public_key())
            receipt = await cockpit.log.receipt(cockpit.service.pseudonym(CHILD), ids[3],
                                                visible_for=VISIBLE_FOR)
            verified = verify_receipt(receipt, verifier_keys=[LOG_VKEY],
                                      witness_keys=[witness.vkey])
            assert (verified.index, verified.entry["id"]) == (3, ids[3])
            assert list(verified.cosigned_by) == [witness.name]
            assert await cockpit.log.witness_status() == (
                "ok: 1 of 1 cosigned (quorum 1), published checkpoint is 0 entries behind")

    async def test_a_witness_down_holds_publication_back_and_the_log_catches_up(
            self, tmp_path: Path, witnesses: list[Witness]) -> None:
        witness = witnesses[0]
        witness.start()
        async with _cockpit(tmp_path, [witness.endpoint], 1) as cockpit:
            await cockpit.add(3)
            assert await cockpit.log.cosign()
            witness.stop()
            await cockpit.add(4)  # accepted and integrated all the same
            assert await cockpit.log.status() == (7, 0)
            with capture_logs() as logs, pytest.raises(QuorumError):
                await cockpit.log.cosign()
            assert _events(logs, "log.witness_unreachable")
            assert await cockpit.published() == 3
            assert await cockpit.log.witness_status() == (
                "error: 0 of 1 cosigned (quorum 1), published checkpoint is 4 entries behind")
            witness.start()  # back, with the state it persisted
            await cockpit.add(2)
            assert await cockpit.log.cosign()
            assert await cockpit.published() == 9
            _, note = await cockpit.log.checkpoint()
            assert verify_cosignatures(note, [witness.vkey], 1) == [witness.name]
            assert str(await cockpit.log.witness_status()).startswith("ok: 1 of 1")

    async def test_a_witness_that_saw_a_fork_never_cosigns_this_history(
            self, tmp_path: Path, witnesses: list[Witness]) -> None:
        witness = witnesses[0]
        witness.start()
        fork = SignedLog(origin=ORIGIN, seed=7, fork="rewritten ")  # signed with the log's key
        shown = httpx.post(f"{witness.url}/add-checkpoint", content=fork.request(0, 3),
                           timeout=10)
        assert shown.status_code == 200, shown.text
        async with _cockpit(tmp_path, [witness.endpoint], 1) as cockpit:
            await cockpit.add(5)
            with capture_logs() as logs, pytest.raises(QuorumError):
                await cockpit.log.cosign()
            refused = _events(logs, "log.witness_refused")
            assert refused[0]["status"] == 422  # asked from its size 3: the proof fails
            assert refused[0]["old_size"] == 3
            with pytest.raises(Exception, match="cosigned by its witnesses"):
                await cockpit.log.checkpoint()  # nothing published: not even the empty log
            assert str(await cockpit.log.witness_status()).startswith("error: 0 of 1 cosigned")
            assert await cockpit.log.status() == (5, 0)  # entries accepted all the same

    async def test_a_cosignature_by_another_key_than_the_configured_one_does_not_count(
            self, tmp_path: Path, witnesses: list[Witness]) -> None:
        real, other = witnesses
        real.start()
        impostor = WitnessEndpoint.of(other.vkey, real.url)  # other's key, real's answers
        async with _cockpit(tmp_path, [impostor], 1) as cockpit:
            await cockpit.add(2)
            with capture_logs() as logs, pytest.raises(QuorumError):
                await cockpit.log.cosign()
            assert _events(logs, "log.witness_bad_cosignature")

    async def test_one_of_two_suffices_for_a_quorum_of_one(
            self, tmp_path: Path, witnesses: list[Witness]) -> None:
        up, down = witnesses
        up.start()
        down.port = free_port()  # never started
        async with _cockpit(tmp_path, [up.endpoint, down.endpoint], 1) as cockpit:
            await cockpit.add(4)
            assert await cockpit.log.cosign()
            _, note = await cockpit.log.checkpoint()
            assert verify_cosignatures(note, [up.vkey, down.vkey], 1) == [up.name]
            with pytest.raises(ValueError, match="1 of the required 2"):
                verify_cosignatures(note, [up.vkey, down.vkey], 2)


class TestLiveServer:
    def test_witnesses_listed_publication_waits_readiness_says_so_and_catches_up(
            self, tmp_path: Path, witnesses: list[Witness], start_live_server: Any) -> None:
        data_dir = tmp_path / "einmal"
        key = load_or_create_signing_key(data_dir / "keys", "cockpit-log")
        witness = Witness(tmp_path / "supervisor", "supervisor.test/w",
                          [tlog.verifier_key(ORIGIN, key.private_key.public_key())])
        witnesses.append(witness)  # stopped by the fixture
        witness.start()
        live: LiveServer = start_live_server(
            data_dir=data_dir, log_origin=ORIGIN, log_witness_timeout_s=2,
            log_witnesses=json.dumps([{"name": witness.name, "vkey": witness.vkey,
                                       "url": witness.url}]))
        ops = {"authorization": f"Bearer {_ops_token(live)}"}
        with httpx.Client(base_url=live.base_url, timeout=20) as http:
            listed = http.get("/v1/log/witnesses").json()
            assert listed == {"quorum": 1, "witnesses": [
                {"name": witness.name, "vkey": witness.vkey, "url": witness.url}]}
            note = http.get("/v1/log/checkpoint").text  # cosigned at start-up
            assert verify_cosignatures(note, [witness.vkey], 1) == [witness.name]
            witness.stop()
            _transfer(http, live)
            ready = _until(lambda: _failing(_checks(http, ops)), timeout=30)
            assert ready["log_witnesses"] == ("error: 0 of 1 cosigned (quorum 1), published "
                                              "checkpoint is 1 entries behind")
            assert http.get("/health/ready", headers=ops).status_code == 503
            assert int(http.get("/v1/log/checkpoint").text.split("\n")[1]) == 0
            witness.start()
            _until(lambda: int(http.get("/v1/log/checkpoint").text.split("\n")[1]) == 1,
                   timeout=30)  # the cosigner's backoff is at most 8 s
            note = http.get("/v1/log/checkpoint").text
            assert verify_cosignatures(note, [witness.vkey], 1) == [witness.name]
            assert http.get("/health/ready", headers=ops).status_code == 200


def _ops_token(live: LiveServer) -> str:
    return (live.settings.keys_dir / "ops.token").read_text().strip()


def _checks(http: httpx.Client, ops: dict[str, str]) -> dict[str, Any]:
    body = http.get("/health/ready", headers=ops).json()
    return dict(body.get("checks") or {})


def _failing(checks: dict[str, Any]) -> dict[str, Any] | None:
    return checks if str(checks.get("log_witnesses", "")).startswith("error") else None


def _until(condition: Any, *, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("the condition did not hold in time")
        time.sleep(0.1)  # polling for the condition


def _transfer(http: httpx.Client, live: LiveServer) -> None:
    """One transfer recorded by the broker (the demo's Namensdienst, a birth proof)."""
    credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
    demo = Demo(base_url=live.base_url, credentials=credentials, http=http)
    released = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
    assert released.status_code == 200, released.text
    entry = f"/v1/log/entries/{released.json()['transfer_id']}"
    _until(lambda: http.get(entry).status_code == 200, timeout=20)


# -- migration 0003 ------------------------------------------------------------------------------

def _url(tmp_path: Path) -> str:
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)
        return TEST_DATABASE_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"sqlite+aiosqlite:///{tmp_path / 'cockpit.db'}"


def _run(url: str, fn: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _to(revision: str, *, down: bool = False) -> Any:
    def go(connection: Connection) -> None:
        config = _config("cockpit", connection)
        (command.downgrade if down else command.upgrade)(config, revision)
    return go


def _drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={
        "include_object": lambda obj, name, type_, *_: (
            (name if type_ == "table" else getattr(getattr(obj, "table", None), "name", ""))
            or "").startswith("cockpit_") and name != "cockpit_alembic_version",
        "compare_type": True})
    return compare_metadata(context, SQLModel.metadata)


def test_migration_0003_adds_the_cosigned_checkpoints_and_matches_the_models(
        tmp_path: Path) -> None:
    url = _url(tmp_path)
    _run(url, _to("0002"))
    assert "cockpit_cosigned_checkpoint" not in _run(url, lambda c: inspect(c).get_table_names())
    _run(url, _to("0003"))
    assert "cockpit_cosigned_checkpoint" in _run(url, lambda c: inspect(c).get_table_names())
    assert _run(url, _drift) == []
    _run(url, _to("0002", down=True))
    assert "cockpit_cosigned_checkpoint" not in _run(url, lambda c: inspect(c).get_table_names())
