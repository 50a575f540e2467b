"""C2SP tlog-tiles on the client side: paths (the spec's examples, every non-canonical form
refused), hash tiles and entry bundles, and roots and proofs computed from tiles read over HTTP,
checked against ``einmal_client.tlog`` and a tile builder written from the spec text."""

import gzip
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einmal_client import tiles, tlog
from einmal_client.tiles import Tile, TileClient, TileError, TileFetchError, TilePathError
from tests.tiled_log import index_path, tile_files

MAX_INDEX_AT_0 = (2**64 - 1) >> 8


def _leaves(count: int, tag: str = "") -> list[bytes]:
    return [f"leaf {tag}{i}".encode() for i in range(count)]


def _client(files: dict[str, bytes], *, seen: list[str] | None = None,
            status: Callable[[str], int] = lambda path: 200,
            cache_tiles: int = 1024) -> TileClient:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/log/")
        if seen is not None:
            seen.append(path)
        if status(path) != 200:
            return httpx.Response(status(path))
        if path not in files:
            return httpx.Response(404)
        return httpx.Response(200, content=files[path])

    http = httpx.Client(transport=httpx.MockTransport(handle))
    return TileClient("http://log.test/log/", http=http, cache_tiles=cache_tiles)


class TestPathsRefused:
    @pytest.mark.parametrize("path", [
        "tile/0/x1/2",                  # groups of one digit
        "tile/0/1",                     # no zero padding
        "tile/0/0001",                  # four digits
        "tile/0/x000/005",              # a leading zero group
        "tile/0/x001/x234/x067",        # the last element x-ed
        "tile/0/001/234",               # a non-last element without x
        "tile/00/000",                  # a level with a leading zero
        "tile/01/000",
        "tile/64/000",                  # above the spec's 63
        "tile/100/000",
        "tile/0/000.p/0",               # width 0
        "tile/0/000.p/256",             # width 256 is the full tile
        "tile/0/000.p/05",              # a width with a leading zero
        "tile/0/000.p/+5",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/005/",                  # a trailing slash
        "/tile/0/005",
        "tile/0/",
        "tile/0",
        "tile/entries/x000/000",
        "tile/entries/000.p/256",
        "tile/data/000",
        "tile/0/0a0",
        "tile/-1/000",
        "tile/0/x001/x000/x000/x000/x000/x000/000",  # beyond 2**64 leaves at level 0
        "tile/7/001",                   # level 7 has one tile in a tree of 2**64 leaves
        "tile/0/x072/x057/x594/x037/x927/936",
        "",
    ])
    def test_a_non_canonical_path_is_refused(self, path: str) -> None:
        with pytest.raises(TilePathError):
            tiles.parse_tile_path(path)

    def test_an_index_out_of_range_cannot_be_formatted(self) -> None:
        with pytest.raises(TilePathError):
            tiles.format_index(-1)
        with pytest.raises(TilePathError):
            tiles.format_index(2**64)


class TestPaths:
    def test_the_spec_example_index(self) -> None:
        assert tiles.format_index(1234067) == "x001/x234/067"
        assert Tile(level=0, index=1234067).path == "tile/0/x001/x234/067"
        assert tiles.parse_tile_path("tile/0/x001/x234/067") == Tile(level=0, index=1234067)

    @pytest.mark.parametrize(("tile", "path"), [
        (Tile(0, 0), "tile/0/000"),
        (Tile(0, 5, 17), "tile/0/005.p/17"),
        (Tile(3, 999), "tile/3/999"),
        (Tile(1, 1000, 1), "tile/1/x001/000.p/1"),
        (Tile(None, 1234067), "tile/entries/x001/x234/067"),
        (Tile(None, 0, 255), "tile/entries/000.p/255"),
        (Tile(63, 0), "tile/63/000"),
        (Tile(0, MAX_INDEX_AT_0), "tile/0/x072/x057/x594/x037/x927/935"),
    ])
    def test_paths_round_trip(self, tile: Tile, path: str) -> None:
        assert tile.path == path
        assert tiles.parse_tile_path(path) == tile

    @given(level=st.integers(0, 7) | st.none(), width=st.integers(1, 256), data=st.data())
    def test_every_tile_round_trips(self, level: int | None, width: int,
                                    data: st.DataObject) -> None:
        index = data.draw(st.integers(0, (2**64 - 1) >> (8 * ((level or 0) + 1))))
        tile = Tile(level=level, index=index, width=width)
        assert tiles.parse_tile_path(tile.path) == tile
        assert tile.path.split("/", 2)[2].split(".p/")[0] == index_path(index)

    def test_the_tiles_of_a_tree_of_70000_are_the_specs(self) -> None:
        found = list(tiles.tiles_of(70_000))
        by_level = {level: [t for t in found if t.level == level] for level in (0, 1, 2)}
        assert len(found) == 273 + 1 + 1 + 1 + 1
        assert [t.width for t in by_level[0]] == [256] * 273 + [112]
        assert [t.width for t in by_level[1]] == [256, 17]
        assert [t.width for t in by_level[2]] == [1]

    def test_a_tree_of_256_has_a_full_tile_and_a_partial_level_1_tile(self) -> None:
        assert list(tiles.tiles_of(256)) == [Tile(0, 0), Tile(1, 0, 1)]
        assert list(tiles.tiles_of(0)) == []

    def test_tiles_since_a_smaller_tree_are_only_the_new_full_ones_and_the_edge(self) -> None:
        assert list(tiles.tiles_of(600, since=300)) == [Tile(0, 1), Tile(0, 2, 88),
                                                         Tile(1, 0, 2)]

    @pytest.mark.parametrize(("size", "level", "index", "width"), [
        (70_000, 0, 273, 112), (70_000, 0, 272, 256), (70_000, 0, 274, 0),
        (70_000, 1, 1, 17), (70_000, 2, 0, 1), (70_000, 3, 0, 0), (255, 1, 0, 0),
    ])
    def test_tile_width(self, size: int, level: int, index: int, width: int) -> None:
        assert tiles.tile_width(size, level, index) == width


class TestEncodings:
    def test_a_malformed_bundle_is_refused(self) -> None:
        with pytest.raises(TileError, match="length prefix"):
            tiles.bundle_entries(b"\x00\x01a\x00", 2)
        with pytest.raises(TileError, match="past the end"):
            tiles.bundle_entries(b"\x00\x05ab", 1)
        with pytest.raises(TileError, match="holds 1 entries, not 2"):
            tiles.bundle_entries(b"\x00\x01a", 2)

    def test_an_entry_longer_than_a_uint16_does_not_fit(self) -> None:
        with pytest.raises(TileError, match="65,535"):
            tiles.encode_bundle([b"x" * 65_536])
        assert len(tiles.encode_bundle([b"x" * 65_535])) == 65_537

    def test_a_tile_of_the_wrong_length_is_refused(self) -> None:
        with pytest.raises(TileError):
            tiles.tile_hashes(b"\x00" * 33, 1)
        with pytest.raises(TileError):
            tiles.hash_tile([b"\x00" * 31])
        with pytest.raises(TileError):
            tiles.perfect_root([b"\x00" * 32] * 3)

    def test_bundles_and_tiles_round_trip(self) -> None:
        entries = [b"", b"a", b"\xff" * 300]
        data = tiles.encode_bundle(entries)
        assert data[:2] == b"\x00\x00" and data[2:4] == b"\x00\x01"
        assert tiles.bundle_entries(data, 3) == entries
        hashes = [tlog.leaf_hash(e) for e in entries]
        assert tiles.tile_hashes(tiles.hash_tile(hashes), 3) == hashes


class TestTileTree:
    @pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 512, 65_536, 70_000])
    def test_roots_and_proofs_from_tiles_are_rfc_9162s(self, size: int) -> None:
        leaves = _leaves(size)
        hashes = [tlog.leaf_hash(leaf) for leaf in leaves]
        tree = _client(tile_files(leaves)).tree(size)
        assert tree.root() == tlog.mth(hashes)
        for index in {0, size // 3, size - 1}:
            tlog.verify_inclusion(index, size, hashes[index], tree.inclusion(index), tree.root())
        for old in {1, size // 2 or 1, size - 1 or 1}:
            assert tree.root(old) == tlog.mth(hashes[:old])
            if old < size:
                tlog.verify_consistency(old, size, tree.root(old), tree.root(),
                                        tree.consistency(old))

    @settings(max_examples=40, deadline=None)
    @given(size=st.integers(1, 1300), data=st.data())
    def test_any_size(self, size: int, data: st.DataObject) -> None:
        leaves = _leaves(size)
        hashes = [tlog.leaf_hash(leaf) for leaf in leaves]
        tree = _client(tile_files(leaves)).tree(size)
        old = data.draw(st.integers(1, size))
        assert tree.root(old) == tlog.mth(hashes[:old])

    def test_an_earlier_partial_tile_serves_a_smaller_tree(self) -> None:
        files = tile_files(_leaves(300))  # only the partial tiles of size 300
        assert _client(files).tree(300).root() == tlog.mth(
            [tlog.leaf_hash(leaf) for leaf in _leaves(300)])
        with pytest.raises(TileFetchError) as caught:
            _client(files).tree(290).root()  # its tile/0/001.p/34 is not there
        assert caught.value.status == 404

    def test_a_subtree_that_is_not_perfect_and_aligned_is_refused(self) -> None:
        tree = _client({}).tree(16)
        for start, end in [(0, 3), (1, 3), (8, 24), (4, 4)]:
            with pytest.raises(TileError):
                tree.subtree(start, end)


class TestTileClient:
    def test_a_failed_fetch_names_the_url_and_status(self) -> None:
        client = _client({}, status=lambda path: 503)
        with pytest.raises(TileFetchError, match=r"http://log.test/log/checkpoint answered 503"):
            client.checkpoint()

    def test_a_network_failure_is_a_fetch_error(self) -> None:
        def fail(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        client = TileClient("http://log.test/log",
                            http=httpx.Client(transport=httpx.MockTransport(fail)))
        with pytest.raises(TileFetchError, match="ConnectError") as caught:
            client.hashes(Tile(0, 0))
        assert caught.value.status is None

    def test_a_tile_of_the_wrong_size_is_refused(self) -> None:
        client = _client({"tile/0/000": b"\x00" * 8191})
        with pytest.raises(TileError):
            client.hashes(Tile(0, 0))

    def test_full_tiles_are_fetched_once_partial_ones_by_width(self) -> None:
        seen: list[str] = []
        client = _client(tile_files(_leaves(600)), seen=seen)
        for _ in range(3):
            client.hashes(Tile(0, 0))
            client.hashes(Tile(0, 2, 88))
        assert seen.count("tile/0/000") == 1
        assert seen.count("tile/0/002.p/88") == 1

    def test_the_cache_is_bounded(self) -> None:
        seen: list[str] = []
        files = tile_files(_leaves(768))
        client = _client(files, seen=seen, cache_tiles=2)
        for index in (0, 1, 2, 0):
            client.hashes(Tile(0, index))
        assert seen.count("tile/0/000") == 2

    def test_a_gzipped_bundle_is_read(self) -> None:
        entries = _leaves(3)
        body = gzip.compress(tiles.encode_bundle(entries))

        def handle(request: httpx.Request) -> httpx.Response:
            assert "gzip" in request.headers["accept-encoding"]
            return httpx.Response(200, content=body, headers={"content-encoding": "gzip"})

        client = TileClient("http://log.test/log",
                            http=httpx.Client(transport=httpx.MockTransport(handle)))
        assert client.entries(0, 3) == entries

    def test_an_entry_bundle_is_not_a_hash_tile(self) -> None:
        with pytest.raises(TypeError):
            _client({}).hashes(Tile(None, 0))
