"""The tile API of a live cockpit over real HTTP (uvicorn): the tiles are the spec's for the
entries the bundles hold, proofs from tiles equal the proof endpoints' (which keep working),
bad paths are 4xx problems, and ``einmal log publish`` writes the same tree to a folder that a
plain static web server (``python -m http.server``) serves."""

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from einmal.settings import load_settings
from einmal_app.cli import main
from einmal_client import tiles, tlog
from einmal_client.tiles import Tile, TileClient
from tests.conftest import TEST_DATABASE_URL, free_port, start_server
from tests.integration.live_log import fill, publish_args, static_server
from tests.tiled_log import tile_files

COUNT = 600


@pytest.fixture(name="live", scope="module")
def fx_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    """One live server for the module (starting one costs seconds), its log filled."""
    settings = load_settings({}, data_dir=tmp_path_factory.mktemp("einmal"), demo=True,
                             simulator_families=20, port=free_port(),
                             database_url=TEST_DATABASE_URL)
    live = start_server(settings)
    try:
        yield live, fill(live, COUNT)
    finally:
        live.stop()


def _note_text(note: str) -> str:
    return note[:note.index("\n\n") + 1]


def _leaves(client: TileClient, size: int) -> list[bytes]:
    return [leaf for t in tiles.tiles_of(size) if t.level == 0
            for leaf in client.entries(t.index, t.width)]


@pytest.fixture(name="client")
def fx_client(live: tuple[Any, int]) -> Iterator[TileClient]:
    with TileClient(f"{live[0].base_url}/log") as client:
        yield client


class TestServed:
    def test_tiles_are_the_specs_for_the_entries_served(self, live: tuple[Any, int],
                                                        client: TileClient) -> None:
        server, size = live
        leaves = _leaves(client, size)
        checkpoint = tlog.parse_checkpoint(_note_text(client.checkpoint()))
        assert checkpoint.size == size
        assert tlog.mth([tlog.leaf_hash(leaf) for leaf in leaves]) == checkpoint.root
        expected = tile_files(leaves)
        for tile in tiles.tiles_of(size):
            response = httpx.get(f"{server.base_url}/log/{tile.path}")
            assert response.content == expected[tile.path], tile.path

    def test_the_checkpoint_is_the_one_of_the_v1_api(self, live: tuple[Any, int]) -> None:
        server, _ = live
        tiled = httpx.get(f"{server.base_url}/log/checkpoint")
        assert tiled.headers["content-type"] == "text/plain; charset=utf-8"
        assert tiled.headers["cache-control"] == "no-cache"
        assert tiled.text == httpx.get(f"{server.base_url}/v1/log/checkpoint").text
        key = httpx.get(f"{server.base_url}/log/verifier-key").text
        assert key == httpx.get(f"{server.base_url}/v1/log/verifier-key").text
        tlog.verify_note(tiled.text, *tlog.parse_verifier_key(key))

    def test_proofs_from_tiles_equal_the_proof_endpoints(self, live: tuple[Any, int],
                                                         client: TileClient) -> None:
        server, size = live
        tree = client.tree(size)
        for index in (0, 255, 256, size - 1):
            proof = httpx.get(f"{server.base_url}/v1/log/proof/inclusion",
                              params={"index": index, "tree_size": size}).json()
            assert tlog.hashes_b64(tree.inclusion(index)) == proof["hashes"]
        proof = httpx.get(f"{server.base_url}/v1/log/proof/consistency",
                          params={"from": 300, "to": size}).json()
        assert tlog.hashes_b64(tree.consistency(300)) == proof["hashes"]
        leaf = client.entries(1)[0]
        assert base64.b64encode(tlog.leaf_hash(leaf)).decode() == httpx.get(
            f"{server.base_url}/v1/log/proof/inclusion",
            params={"index": 256, "tree_size": size}).json()["leaf_hash"]

    def test_headers_over_http(self, live: tuple[Any, int]) -> None:
        server, size = live
        full = httpx.get(f"{server.base_url}/log/tile/0/000")
        assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert full.headers["content-type"] == "application/octet-stream"
        assert len(full.content) == 8192
        edge = tiles.tile_width(size, 0, size // 256)
        partial = httpx.get(f"{server.base_url}/log/{Tile(0, size // 256, edge).path}")
        assert len(partial.content) == edge * 32
        assert "immutable" not in partial.headers["cache-control"]
        with httpx.Client() as http:
            raw = http.get(f"{server.base_url}/log/tile/entries/000",
                           headers={"accept-encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        assert int(raw.headers["content-length"]) < len(raw.content) / 3


class TestRefused:
    @pytest.mark.parametrize("path", [
        "tile/0/x1/2", "tile/0/1", "tile/0/x000/000", "tile/0/000.p/0", "tile/0/000.p/256",
        "tile/0/000.p/05", "tile/64/000", "tile/0/000/", "tile//0/000", "tile/entries/00",
    ])
    def test_a_malformed_path_is_400(self, live: tuple[Any, int], path: str) -> None:
        response = httpx.get(f"{live[0].base_url}/log/{path}")
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:einmal:problem:invalid-request"

    @pytest.mark.parametrize("path", ["tile/0/005", "tile/1/000", "tile/entries/003",
                                      "tile/0/002.p/89", "tile/7/000"])
    def test_beyond_the_tree_is_404(self, live: tuple[Any, int], path: str) -> None:
        response = httpx.get(f"{live[0].base_url}/log/{path}")
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "urn:einmal:problem:not-found"
        assert response.headers["cache-control"] == "no-store"


@pytest.fixture(name="static")
def fx_static(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder and the URL a plain static web server (http.server's) serves it at."""
    folder = tmp_path / "published"
    folder.mkdir()
    with static_server(folder) as url:
        yield folder, url


class TestPublished:
    def test_a_published_folder_serves_the_same_tree(self, live: tuple[Any, int],
                                                     static: tuple[Path, str]) -> None:
        server, size = live
        folder, url = static
        result = CliRunner().invoke(main, publish_args(server, folder))
        assert result.exit_code == 0, result.output
        assert f"published the log of size {size}" in result.output
        with TileClient(url) as client:
            note = client.checkpoint()
            assert note == httpx.get(f"{server.base_url}/log/checkpoint").text
            checkpoint = tlog.parse_checkpoint(_note_text(note))
            assert client.tree(size).root() == checkpoint.root
            for tile in tiles.tiles_of(size):
                assert client.hashes(tile) == tiles.tile_hashes(httpx.get(
                    f"{server.base_url}/log/{tile.path}").content, tile.width)
            with TileClient(f"{server.base_url}/log") as cockpit:
                assert _leaves(client, size) == _leaves(cockpit, size)
        again = CliRunner().invoke(main, publish_args(server, folder))
        assert again.exit_code == 0, again.output
        assert "full tiles kept" in again.output
        assert f"{2 * (size // 256)} full tiles kept" in again.output

    def test_publish_without_cockpit_data_fails_in_one_line(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(main, ["log", "publish", "--out", str(tmp_path / "o"),
                                           "--data-dir", str(tmp_path / "empty")])
        assert result.exit_code == 1
        assert "no cockpit data" in result.output
        assert not (tmp_path / "o").exists()
