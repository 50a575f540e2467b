"""The witness over HTTP (Litestar's test client): statuses and content types as tlog-witness
states them, problem details for refusals, and the component's start-up checks."""

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from einmal_client.cosignature import verify_cosignatures
from tests.unit.witness.signed_log import SignedLog, add_checkpoint_body
from witness import WitnessComponent, WitnessConfig, WitnessConfigError, create_app
from witness.app import MAX_BODY_BYTES
from witness.identity import NAME_FILE, load_or_create_identity

NAME = "witness.example/w1"
PROBLEM = "application/problem+json"


@pytest.fixture(name="log")
def fx_log() -> SignedLog:
    return SignedLog()


@pytest.fixture(name="component")
def fx_component(tmp_path: Path, log: SignedLog) -> WitnessComponent:
    return WitnessComponent(WitnessConfig(data_dir=tmp_path / "w", name=NAME,
                                          log_keys=(log.vkey,)))


@pytest.fixture(name="client")
async def fx_client(component: WitnessComponent) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(component)) as client:
        yield client


class TestAddCheckpoint:
    async def test_refusals_are_problems_with_the_specs_statuses(
            self, client: AsyncTestClient[Litestar], log: SignedLog) -> None:
        other = SignedLog(origin="other.example/log")
        cases = [
            (b"old 0\nnot a proof line\n\n" + log.note(1).encode(), 400, "invalid-request"),
            (add_checkpoint_body(0, [], log.note(1, key=SignedLog(seed=9).key)), 403,
             "forbidden"),
            (other.request(0, 1), 404, "not-found"),
            (add_checkpoint_body(0, [bytes(32)], log.note(1)), 422, "invalid-request"),
        ]
        for body, status, slug in cases:
            response = await client.post("/add-checkpoint", content=body)
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["type"] == f"urn:einmal:problem:{slug}"
        # nothing was stored: the first checkpoint still starts from 0
        assert (await client.post("/add-checkpoint", content=log.request(0, 1))).status_code == 200

    async def test_a_stale_old_size_is_409_with_the_latest_size_as_text_x_tlog_size(
            self, client: AsyncTestClient[Litestar], log: SignedLog) -> None:
        assert (await client.post("/add-checkpoint", content=log.request(0, 6))).status_code == 200
        response = await client.post("/add-checkpoint", content=log.request(0, 9))
        assert response.status_code == 409
        assert response.headers["content-type"] == "text/x.tlog.size"
        assert response.content == b"6\n"

    async def test_a_fork_is_409_as_a_problem_not_a_size(
            self, client: AsyncTestClient[Litestar], log: SignedLog) -> None:
        assert (await client.post("/add-checkpoint", content=log.request(0, 6))).status_code == 200
        fork = SignedLog(fork="rewritten ")
        response = await client.post("/add-checkpoint", content=fork.request(6, 6))
        assert response.status_code == 409
        assert response.headers["content-type"] == PROBLEM
        assert "forked" in response.json()["detail"]

    async def test_an_oversized_body_is_413_and_stores_nothing(
            self, client: AsyncTestClient[Litestar], log: SignedLog) -> None:
        body = log.request(0, 3) + b"x" * MAX_BODY_BYTES
        response = await client.post("/add-checkpoint", content=body)
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM
        assert (await client.post("/add-checkpoint", content=log.request(0, 3))).status_code == 200

    async def test_only_post(self, client: AsyncTestClient[Litestar]) -> None:
        response = await client.get("/add-checkpoint")
        assert response.status_code == 405

    async def test_the_answer_is_cosignature_lines_that_verify(
            self, client: AsyncTestClient[Litestar], component: WitnessComponent,
            log: SignedLog) -> None:
        response = await client.post("/add-checkpoint", content=log.request(0, 4))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text.startswith(f"\u2014 {NAME} ") and response.text.endswith("\n")
        assert verify_cosignatures(log.note(4) + response.text, [component.vkey], 1) == [NAME]

    async def test_health(self, client: AsyncTestClient[Litestar]) -> None:
        assert (await client.get("/health/live")).json() == {"status": "ok"}
        assert (await client.get("/health/ready")).json() == {"status": "ok"}


class TestComponent:
    def test_the_key_is_private_and_the_identity_survives(self, tmp_path: Path,
                                                          log: SignedLog) -> None:
        data = tmp_path / "w"
        first = WitnessComponent(WitnessConfig(data_dir=data, name=NAME, log_keys=(log.vkey,)))
        key_file = data / "keys" / "witness.jwk.json"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        again = WitnessComponent(WitnessConfig(data_dir=data, log_keys=(log.vkey,)))
        assert again.vkey == first.vkey
        assert (data / NAME_FILE).read_text() == NAME + "\n"

    def test_another_name_for_an_existing_witness_is_refused(self, tmp_path: Path) -> None:
        load_or_create_identity(tmp_path, NAME)
        with pytest.raises(WitnessConfigError, match="a new name is a new witness"):
            load_or_create_identity(tmp_path, "witness.example/w2")

    @pytest.mark.parametrize("name", ["two words", "a+b", ""])
    def test_a_bad_name_is_refused(self, tmp_path: Path, name: str) -> None:
        with pytest.raises(WitnessConfigError, match="witness name"):
            load_or_create_identity(tmp_path, name)

    def test_its_own_key_as_a_log_key_is_refused(self, tmp_path: Path) -> None:
        identity = load_or_create_identity(tmp_path, NAME)
        own = SignedLog()
        own.key = identity.private_key
        with pytest.raises(WitnessConfigError, match="own key"):
            WitnessComponent(WitnessConfig(data_dir=tmp_path, log_keys=(own.vkey,)))

    def test_no_log_keys_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(WitnessConfigError, match="at least one log"):
            WitnessComponent(WitnessConfig(data_dir=tmp_path, log_keys=()))

    async def test_a_failing_store_reports_not_ready(self, tmp_path: Path,
                                                     log: SignedLog) -> None:
        # a database without the witness's table (the component was never started); a path
        # that cannot be opened would do too, but aiosqlite's failed connect finishes on its
        # thread after the test's event loop is gone
        component = WitnessComponent(WitnessConfig(
            data_dir=tmp_path, log_keys=(log.vkey,),
            database_url=f"sqlite:///{tmp_path / 'empty.db'}"))
        assert (await component.health())["witness_store"].startswith("error")
        await component.stop()
