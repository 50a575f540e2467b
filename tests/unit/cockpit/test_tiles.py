"""The tile API (cockpit/tiles) on an in-memory log store: tiles are ranges of stored nodes,
bounded by the published checkpoint; bad paths are 400, tiles beyond the tree 404, neither
cached; full tiles are immutable and cached in memory; entry bundles gzip on request; a folder
written by ``publish`` is the same tree, written once, resumed, refused for another history."""

import gzip
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar
from litestar.testing import AsyncTestClient

from cockpit import tree
from cockpit.errors import NotFoundError, TreeIntegrityError
from cockpit.store.base import LogLine
from cockpit.tiles import LogTiles, PublishError, create_tiles_router, publish
from cockpit.tiles.http import FULL_TILE_CACHE, PARTIAL_TILE_CACHE
from einmal.problems import exception_handlers
from einmal.store import StoreError
from einmal_client import tiles, tlog
from einmal_client.tiles import Tile
from tests.tiled_log import entry_leaf, tile_files

ORIGIN = "test.example/log"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VKEY = tlog.verifier_key(ORIGIN, KEY.public_key())


class FakeLog:
    """The reads of ``LogStore`` the tiles need, over nodes built by ``cockpit.tree.extend``;
    ``size`` is the published checkpoint's (the tree may be larger: integrated, not yet
    published)."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves: list[bytes | None] = list(leaves)
        self.hashes = [tlog.leaf_hash(leaf) for leaf in leaves]
        self.nodes_: dict[tree.Node, bytes] = {}
        self.size = 0
        self.reads = 0
        self.failure: Exception | None = None
        self.grow(len(leaves))

    def grow(self, size: int, *, publish: bool = True) -> None:
        """Integrate up to ``size`` leaves (and publish their checkpoint)."""
        current = sum(1 for level, _ in self.nodes_ if level == 0)
        frontier = {k: self.nodes_[k] for k in tree.frontier(current)}
        _, new, _ = tree.extend(current, self.hashes[current:size], frontier)
        self.nodes_.update(new)
        if publish:
            self.size = size

    def note(self, size: int | None = None) -> str:
        size = self.size if size is None else size
        text = tlog.format_checkpoint(tlog.Checkpoint(ORIGIN, size, tlog.mth(self.hashes[:size])))
        return tlog.sign_note(text, ORIGIN, KEY)

    def _read(self) -> None:
        self.reads += 1
        if self.failure is not None:
            raise self.failure

    async def checkpoint(self) -> tuple[int, str]:
        self._read()
        return self.size, self.note()

    async def nodes(self, wanted: Iterable[tree.Node]) -> dict[tree.Node, bytes]:
        self._read()
        return {k: self.nodes_[k] for k in wanted}

    async def tree_nodes(self, level: int, start: int, end: int) -> list[bytes]:
        self._read()
        found = []
        for idx in range(start, end):
            if (level, idx) not in self.nodes_:
                break
            found.append(self.nodes_[(level, idx)])
        return found

    async def log_lines(self, *, after: int, tree_size: int, limit: int,
                        since: datetime | None = None, until: datetime | None = None,
                        service: str | None = None, register: str | None = None,
                        ) -> list[LogLine]:
        self._read()
        integrated = sum(1 for level, _ in self.nodes_ if level == 0)
        return [(i, self.leaves[i], self.hashes[i])
                for i in range(after + 1, min(tree_size, integrated))][:limit]

    async def shredded_groups(self, *, tree_size: int, group: int) -> list[int]:
        self._read()
        return sorted({i // group for i in range(tree_size) if self.leaves[i] is None})


def _tiles(log: FakeLog, cache_tiles: int = 16) -> LogTiles:
    return LogTiles(log, log.checkpoint, verifier_key=VKEY,  # type: ignore[arg-type]  # the reads used
                    cache_tiles=cache_tiles)


def _app(log: FakeLog) -> Litestar:
    return Litestar(route_handlers=[create_tiles_router(_tiles(log))],
                    exception_handlers=exception_handlers())  # type: ignore[arg-type]  # as einmal_app/server.py


LEAVES = [entry_leaf(n) for n in range(600)]


class TestRefused:
    @pytest.mark.parametrize("path", [
        "/log/tile/0/x1/2", "/log/tile/0/1", "/log/tile/0/x000/000", "/log/tile/0/000.p/0",
        "/log/tile/0/000.p/256", "/log/tile/0/000.p/05", "/log/tile/64/000",
        "/log/tile/00/000", "/log/tile/entries/001.p/0", "/log/tile/x/000",
        "/log/tile/0/x072/x057/x594/x037/x927/936", "/log/tile/entries/0",
        "/log/tile/0/000/", "/log/tile//0/000", "/log/tile/0//000",  # routing normalises them
    ])
    async def test_a_malformed_path_is_400_problem_json(self, path: str) -> None:
        log = FakeLog(LEAVES)
        async with AsyncTestClient(_app(log)) as client:
            response = await client.get(path)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:einmal:problem:invalid-request"
        assert response.headers["cache-control"] == "no-store"
        assert log.reads == 0  # refused before the store is asked

    @pytest.mark.parametrize("path", [
        "/log/tile/0/003", "/log/tile/0/002", "/log/tile/0/002.p/89", "/log/tile/1/000",
        "/log/tile/1/000.p/3", "/log/tile/2/000.p/1", "/log/tile/8/000",
        "/log/tile/entries/002", "/log/tile/entries/003.p/1", "/log/tile/63/000",
    ])
    async def test_a_tile_beyond_the_tree_is_404(self, path: str) -> None:
        async with AsyncTestClient(_app(FakeLog(LEAVES))) as client:
            response = await client.get(path)
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "urn:einmal:problem:not-found"
        assert "beyond the tree of size 600" in response.json()["detail"]
        assert response.headers["cache-control"] == "no-store"

    async def test_integrated_but_unpublished_entries_are_not_served(self) -> None:
        log = FakeLog(LEAVES)
        log.size = 0
        log.grow(300, publish=True)
        log.grow(600, publish=False)  # integrated, its checkpoint not published yet
        async with AsyncTestClient(_app(log)) as client:
            assert (await client.get("/log/tile/0/001")).status_code == 404
            assert (await client.get("/log/tile/0/001.p/44")).status_code == 200
            assert (await client.get("/log/tile/entries/001.p/45")).status_code == 404

    async def test_a_damaged_store_is_500_and_a_failing_one_503(self) -> None:
        log = FakeLog(LEAVES)
        del log.nodes_[(0, 5)]
        async with AsyncTestClient(_app(log)) as client:
            response = await client.get("/log/tile/0/000")
            assert response.status_code == 500
            assert response.json()["type"] == "urn:einmal:problem:internal"
            log.failure = StoreError("cockpit store failed: OperationalError")
            response = await client.get("/log/tile/0/001")
            assert response.status_code == 503
            assert response.json()["type"] == "urn:einmal:problem:store-unavailable"

    async def test_a_shredded_bundle_is_404_its_hashes_stay(self) -> None:
        log = FakeLog(LEAVES)
        log.leaves[3] = None
        async with AsyncTestClient(_app(log)) as client:
            response = await client.get("/log/tile/entries/000")
            assert response.status_code == 404
            assert "shredded" in response.json()["detail"]
            assert (await client.get("/log/tile/0/000")).status_code == 200
            assert (await client.get("/log/tile/entries/001")).status_code == 200


class TestServed:
    async def test_tiles_and_bundles_are_the_specs_bytes(self) -> None:
        expected = tile_files(LEAVES)
        async with AsyncTestClient(_app(FakeLog(LEAVES))) as client:
            for path, body in expected.items():
                response = await client.get(f"/log/{path}", headers={
                    "accept-encoding": "identity"})
                assert response.status_code == 200, path
                assert response.content == body, path
                assert response.headers["content-type"] == "application/octet-stream"

    async def test_cache_headers(self) -> None:
        async with AsyncTestClient(_app(FakeLog(LEAVES))) as client:
            full = await client.get("/log/tile/0/001")
            partial = await client.get("/log/tile/0/002.p/88")
            checkpoint = await client.get("/log/checkpoint")
            bundle = await client.get("/log/tile/entries/000")
        assert full.headers["cache-control"] == FULL_TILE_CACHE
        assert FULL_TILE_CACHE == "public, max-age=31536000, immutable"
        assert partial.headers["cache-control"] == PARTIAL_TILE_CACHE
        assert "immutable" not in bundle.headers["cache-control"]
        assert checkpoint.headers["cache-control"] == "no-cache"

    async def test_the_checkpoint_is_the_published_signed_note(self) -> None:
        log = FakeLog(LEAVES)
        async with AsyncTestClient(_app(log)) as client:
            response = await client.get("/log/checkpoint")
            key = await client.get("/log/verifier-key")
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.text == log.note()
        assert key.text == VKEY + "\n"

    async def test_a_partial_tile_of_an_earlier_checkpoint_stays_readable(self) -> None:
        log = FakeLog(LEAVES)
        async with AsyncTestClient(_app(log)) as client:
            response = await client.get("/log/tile/0/002.p/10")
        assert response.content == b"".join(log.hashes[512:522])

    @pytest.mark.parametrize(("accept", "gzipped"), [
        ("gzip", True), ("gzip, identity", True), ("br;q=1, gzip;q=0.5", True),
        ("*", True), ("identity", False), ("gzip;q=0", False), ("*;q=0", False), ("", False),
        ("gzip;q=0.000, *", False),
    ])
    async def test_entry_bundles_are_gzipped_when_asked(self, accept: str,
                                                        gzipped: bool) -> None:
        async with AsyncTestClient(_app(FakeLog(LEAVES))) as client:
            response = await client.get("/log/tile/entries/000", headers={
                "accept-encoding": accept})
        assert response.headers.get("content-encoding") == ("gzip" if gzipped else None)
        assert response.headers["vary"] == "accept-encoding"
        assert response.content == tile_files(LEAVES)["tile/entries/000"]  # decoded by httpx

    async def test_a_hash_tile_is_read_from_the_store_once(self) -> None:
        log = FakeLog(LEAVES)
        tiles_ = _tiles(log)
        first = await tiles_.read(Tile(0, 1))
        reads = log.reads
        for _ in range(5):
            assert await tiles_.read(Tile(0, 1)) == first
        assert log.reads == reads
        await tiles_.read(Tile(0, 2, 88))
        await tiles_.read(Tile(0, 2, 88))
        assert log.reads == reads + 1  # a partial tile of a width never changes either

    async def test_the_checkpoint_is_asked_only_for_a_tile_beyond_the_size_seen(self) -> None:
        log = FakeLog(LEAVES)
        log.size = 0
        log.grow(300)
        tiles_ = _tiles(log)
        await tiles_.read(Tile(0, 1, 44))
        reads = log.reads
        await tiles_.read(Tile(0, 1, 40))  # within the size seen: the nodes only
        assert log.reads == reads + 1
        with pytest.raises(NotFoundError):
            await tiles_.read(Tile(0, 1, 45))
        assert log.reads == reads + 2  # the checkpoint asked again: still 300
        log.grow(600)
        assert await tiles_.read(Tile(0, 2, 88)) == b"".join(log.hashes[512:600])

    async def test_the_cache_is_bounded(self) -> None:
        log = FakeLog([entry_leaf(n) for n in range(256 * 4)])
        tiles_ = _tiles(log, cache_tiles=2)
        for index in (0, 1, 2):
            await tiles_.read(Tile(0, index))
        reads = log.reads
        await tiles_.read(Tile(0, 0))  # evicted: read again
        assert log.reads == reads + 1

    async def test_missing_nodes_below_the_checkpoint_are_a_damaged_tree(self) -> None:
        log = FakeLog(LEAVES)
        del log.nodes_[(8, 1)]
        log.grow(600)
        with pytest.raises(TreeIntegrityError):
            await _tiles(log).read(Tile(1, 0, 2))
        with pytest.raises(NotFoundError):
            await _tiles(log).read(Tile(1, 0, 3))


class TestPublish:
    async def test_a_published_folder_holds_the_specs_files(self, tmp_path: Path) -> None:
        log = FakeLog(LEAVES)
        report = await publish(_tiles(log), tmp_path)
        written = {str(p.relative_to(tmp_path)): p.read_bytes()
                   for p in tmp_path.rglob("*") if p.is_file()}
        assert written == {**tile_files(LEAVES), "checkpoint": log.note().encode(),
                           "verifier-key": (VKEY + "\n").encode()}
        assert (report.tree_size, report.written, report.kept) == (600, 7, 0)

    async def test_publishing_again_writes_only_what_changed(self, tmp_path: Path) -> None:
        log = FakeLog([entry_leaf(n) for n in range(700)])
        log.size = 0
        log.grow(300)
        await publish(_tiles(log), tmp_path)
        (tmp_path / "tile/0/000").write_bytes(b"kept: a full tile is never rewritten")
        log.grow(700)
        report = await publish(_tiles(log), tmp_path)
        assert (report.written, report.kept, report.removed) == (5, 2, 2)
        assert not (tmp_path / "tile/0/001.p").exists()  # its partial 44 is gone: now full
        assert (tmp_path / "tile/0/002.p/188").exists()
        assert (tmp_path / "tile/0/000").read_bytes().startswith(b"kept")
        assert (tmp_path / "checkpoint").read_text() == log.note()

    async def test_an_interrupted_publish_resumes_and_its_checkpoint_comes_last(
            self, tmp_path: Path) -> None:
        log = FakeLog(LEAVES)
        calls = 0

        def interrupt(done: int, total: int) -> None:
            nonlocal calls
            calls += 1
            if done == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await publish(_tiles(log), tmp_path, progress=interrupt)
        assert not (tmp_path / "checkpoint").exists()
        report = await publish(_tiles(log), tmp_path)
        assert (report.kept, report.written) == (2, 5)
        assert (tmp_path / "checkpoint").read_text() == log.note()

    async def test_shredded_bundles_are_withheld_and_removed(self, tmp_path: Path) -> None:
        log = FakeLog(LEAVES)
        await publish(_tiles(log), tmp_path)
        log.leaves[300] = None
        report = await publish(_tiles(log), tmp_path)
        assert (report.withheld, report.removed) == (1, 1)
        assert not (tmp_path / "tile/entries/001").exists()
        assert (tmp_path / "tile/0/001").exists()

    async def test_a_folder_of_another_history_is_refused(self, tmp_path: Path) -> None:
        other = FakeLog([entry_leaf(n + 1) for n in range(300)])
        await publish(_tiles(other), tmp_path)
        before = sorted(tmp_path.rglob("*"))
        with pytest.raises(PublishError, match="another history"):
            await publish(_tiles(FakeLog(LEAVES)), tmp_path)
        assert sorted(tmp_path.rglob("*")) == before

    async def test_a_folder_with_a_larger_tree_is_refused(self, tmp_path: Path) -> None:
        await publish(_tiles(FakeLog(LEAVES)), tmp_path)
        with pytest.raises(PublishError, match="larger"):
            await publish(_tiles(FakeLog(LEAVES[:10])), tmp_path)

    async def test_a_folder_of_another_log_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "verifier-key").write_text("other.example/log+00000000+AAAA\n")
        with pytest.raises(PublishError, match=r"other\.example/log"):
            await publish(_tiles(FakeLog(LEAVES)), tmp_path)

    async def test_a_checkpoint_that_does_not_verify_publishes_nothing(
            self, tmp_path: Path) -> None:
        log = FakeLog(LEAVES)
        other_name = tlog.verifier_key("other.example/log", KEY.public_key())
        tiles_ = LogTiles(log, log.checkpoint, verifier_key=other_name)  # type: ignore[arg-type]  # the reads used
        with pytest.raises(PublishError, match="does not verify"):
            await publish(tiles_, tmp_path)
        assert list(tmp_path.iterdir()) == []

    async def test_a_store_that_does_not_match_its_checkpoint_publishes_nothing(
            self, tmp_path: Path) -> None:
        log = FakeLog(LEAVES)
        log.nodes_[(9, 0)] = b"\x00" * 32
        with pytest.raises(PublishError, match="does not match"):
            await publish(_tiles(log), tmp_path)
        assert list(tmp_path.iterdir()) == []


def test_a_gzipped_bundle_is_deterministic() -> None:
    data = tile_files(LEAVES)["tile/entries/000"]
    assert gzip.compress(data, mtime=0) == gzip.compress(data, mtime=0)
    assert tiles.bundle_entries(data, 256) == LEAVES[:256]
