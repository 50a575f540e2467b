"""``einmal log monitor`` over real HTTP: against a stub log that serves two forks (crafted with
``einmal_client.tlog`` in tests/tiled_log.py) it exits 1 with one line; against a live cockpit
and a folder published from it (served by http.server) it passes and follows the growth; a
cockpit whose stored tree was altered is caught."""

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from einmal.settings import load_settings
from einmal_app.cli import main
from tests.conftest import TEST_DATABASE_URL, free_port, start_server
from tests.integration.live_log import fill, publish_args, static_server
from tests.tiled_log import CraftedLog, entry_leaf, serve

LEAVES = [entry_leaf(n) for n in range(600)]


def _monitor(url: str, state: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["log", "monitor", "--url", url, "--state", str(state),
                                     *extra])


class Switchable:
    """What the stub log serves: the files of ``leaves``, switched by the test."""

    def __init__(self, log: CraftedLog, leaves: list[bytes]) -> None:
        self.log = log
        self.leaves = leaves

    def files(self) -> dict[str, bytes]:
        return self.log.files(self.leaves)


@pytest.fixture(name="stub")
def fx_stub() -> Iterator[tuple[Switchable, str]]:
    served = Switchable(CraftedLog(), LEAVES[:300])
    with serve(served.files) as url:
        yield served, url


class TestForks:
    def test_a_log_that_serves_two_forks_fails_in_one_line(
            self, stub: tuple[Switchable, str], tmp_path: Path) -> None:
        served, url = stub
        first = _monitor(url, tmp_path)
        assert first.exit_code == 0, first.output
        assert first.stdout == ("OK test.example/log: size 300 (first run), 300 new entries "
                                "checked\n")
        assert "trust on first use" in first.stderr
        served.leaves = [*LEAVES[:150], entry_leaf(9999), *LEAVES[151:450]]  # the other fork
        forked = _monitor(url, tmp_path)
        assert forked.exit_code == 1
        assert forked.stdout == ""
        assert forked.stderr.startswith("FAIL split view: the checkpoint of size 450 does not "
                                        "extend the checkpoint of size 300 seen before")
        assert forked.stderr.count("\n") == 1
        served.leaves = LEAVES[:450]  # back on the first fork: the evidence stays
        assert _monitor(url, tmp_path).exit_code == 0
        assert len(list((tmp_path / "evidence").iterdir())) == 1

    def test_a_rewrite_to_a_smaller_tree_fails(self, stub: tuple[Switchable, str],
                                               tmp_path: Path) -> None:
        served, url = stub
        assert _monitor(url, tmp_path).exit_code == 0
        served.leaves = LEAVES[:200]
        result = _monitor(url, tmp_path)
        assert result.exit_code == 1
        assert result.stderr.startswith("FAIL rewrite: the log now shows a tree of size 200, "
                                        "smaller than the size 300 it signed before")

    def test_the_same_size_with_another_root_fails(self, stub: tuple[Switchable, str],
                                                   tmp_path: Path) -> None:
        served, url = stub
        assert _monitor(url, tmp_path).exit_code == 0
        served.leaves = [*LEAVES[:299], entry_leaf(9999)]
        result = _monitor(url, tmp_path)
        assert result.exit_code == 1
        assert "FAIL split view: two signed checkpoints of size 300" in result.stderr

    def test_a_checkpoint_by_another_key_fails(self, stub: tuple[Switchable, str],
                                               tmp_path: Path) -> None:
        _, url = stub
        impostor = CraftedLog()
        result = _monitor(url, tmp_path, "--verifier-key", impostor.verifier_key)
        assert result.exit_code == 1
        assert result.stderr.startswith("FAIL the checkpoint does not verify")

    def test_an_unreachable_log_is_exit_3(self, tmp_path: Path) -> None:
        result = _monitor(f"http://127.0.0.1:{free_port()}/log", tmp_path)
        assert result.exit_code == 3
        assert result.stderr.startswith("UNAVAILABLE cannot fetch")
        assert not (tmp_path / "state.json").exists()


@pytest.fixture(name="live", scope="module")
def fx_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings = load_settings({}, data_dir=tmp_path_factory.mktemp("einmal"), demo=True,
                             simulator_families=20, port=free_port(),
                             database_url=TEST_DATABASE_URL)
    live = start_server(settings)
    try:
        yield live
    finally:
        live.stop()


class TestTheCockpit:
    def test_the_monitor_follows_a_live_cockpit(self, live: Any, tmp_path: Path) -> None:
        size = fill(live, 300)
        result = _monitor(f"{live.base_url}/log", tmp_path)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"OK {_origin(live)}: size {size} (first run), "
                                        f"{size} new entries checked")
        grown = fill(live, 400)
        result = _monitor(f"{live.base_url}/log", tmp_path)
        assert result.exit_code == 0, result.output
        assert f"size {grown} (was {size}), {grown - size} new entries checked" in result.stdout

    def test_the_monitor_follows_a_published_folder(self, live: Any, tmp_path: Path) -> None:
        fill(live, 10)
        folder = tmp_path / "published"
        assert CliRunner().invoke(main, publish_args(live, folder)).exit_code == 0
        with static_server(folder) as url:
            key = httpx.get(f"{live.base_url}/v1/log/verifier-key").text
            result = _monitor(url, tmp_path / "state", "--verifier-key", key)
            assert result.exit_code == 0, result.output
            assert "trust on first use" not in result.stderr
            fill(live, 300)
            assert CliRunner().invoke(main, publish_args(live, folder)).exit_code == 0
            again = _monitor(url, tmp_path / "state")
            assert again.exit_code == 0, again.output
            assert "new entries checked" in again.stdout


def _origin(live: Any) -> str:
    return httpx.get(f"{live.base_url}/log/checkpoint").text.split("\n", 1)[0]


def test_a_cockpit_whose_stored_tree_was_altered_is_caught(
        start_live_server: Callable[..., Any], tmp_path: Path) -> None:
    live = start_live_server(simulator_families=20)
    size = fill(live, 40)
    engine = live.component("cockpit").engine

    async def alter() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE cockpit_tree_node SET hash = :forged "
                                    "WHERE level = 0 AND idx = :last"),
                               {"forged": b"\x00" * 32, "last": size - 1})

    # before any tile is read: the tile API caches what it served (a tile never changes)
    asyncio.run_coroutine_threadsafe(alter(), live.loop).result(timeout=30)
    result = _monitor(f"{live.base_url}/log", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith("FAIL the log's tiles do not hash to its checkpoint")
