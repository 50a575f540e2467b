"""The tile API's reads on every cockpit store backend (cockpit/store/base.py: ``tree_nodes``,
``shredded_groups``) and the tiles it serves from them: the spec's bytes, one query per tile."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cockpit.errors import NotFoundError
from cockpit.log import TransferLog
from cockpit.store import CockpitStore, NewEntry
from cockpit.tiles import LogTiles
from cockpit.vault import CitizenVault
from einmal.keys import SigningKey
from einmal_client import tiles, tlog
from einmal_client.tiles import Tile
from tests.integration.cockpit_stores import BACKENDS, open_backend
from tests.tiled_log import entry_leaf, tile_files

T0 = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
LOG_KEY = SigningKey(kid="log-test", private_key=Ed25519PrivateKey.from_private_bytes(
    bytes(range(32))))


def _entries(leaves: list[bytes], first: int = 0) -> list[NewEntry]:
    return [NewEntry(id=str(uuid.UUID(int=first + n + 1)),
                     occurred_at=T0 + timedelta(seconds=first + n), subject_ref=f"{n % 7:064x}",
                     view=b"{}", leaf=leaf, leaf_hash=tlog.leaf_hash(leaf), service_id="s",
                     register_id=None) for n, leaf in enumerate(leaves)]


class Log:
    def __init__(self, store: CockpitStore) -> None:
        self.store = store
        self.log = TransferLog(store=store, key=LOG_KEY, origin="test.example/log",
                               batch_size=20_000, clock=lambda: T0)
        self.tiles = LogTiles(store, self.log.checkpoint, verifier_key=self.log.verifier_key)
        self.leaves: list[bytes] = []

    async def add(self, leaves: list[bytes]) -> None:
        await self.store.ingest(_entries(leaves, len(self.leaves)), received_at=T0,
                                keys=CitizenVault(b"m" * 32))
        self.leaves += leaves
        while await self.log.integrate():
            pass


@pytest.fixture(name="log", params=BACKENDS)
async def fx_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Log]:
    async with open_backend(request.param, tmp_path) as (store, _):
        log = Log(store)
        await log.log.initialise()
        yield log


class TestStoreReads:
    async def test_tree_nodes_are_a_range_in_index_order(self, log: Log) -> None:
        await log.add([entry_leaf(n) for n in range(20)])
        hashes = [tlog.leaf_hash(leaf) for leaf in log.leaves]
        assert await log.store.tree_nodes(0, 3, 9) == hashes[3:9]
        assert await log.store.tree_nodes(0, 15, 40) == hashes[15:]  # as many as stored
        assert await log.store.tree_nodes(0, 20, 30) == []
        assert await log.store.tree_nodes(2, 0, 10) == [
            tlog.mth(hashes[i:i + 4]) for i in range(0, 20, 4)]
        assert await log.store.tree_nodes(5, 0, 1) == []

    async def test_shredded_groups_name_the_bundles_with_shredded_entries(self, log: Log,
                                                                          ) -> None:
        await log.add([entry_leaf(n) for n in range(600)])
        assert await log.store.shredded_groups(tree_size=600, group=256) == []
        # entries occurred one second apart: [0, 10) and nothing else, then up to 300
        await log.store.shred(T0 + timedelta(seconds=10))
        assert await log.store.shredded_groups(tree_size=600, group=256) == [0]
        await log.store.shred(T0 + timedelta(seconds=300))
        assert await log.store.shredded_groups(tree_size=600, group=256) == [0, 1]
        assert await log.store.shredded_groups(tree_size=200, group=256) == [0]
        assert await log.store.shredded_groups(tree_size=600, group=100) == [0, 1, 2]


class TestTilesFromTheStore:
    async def test_every_tile_is_the_specs_and_the_checkpoint_the_logs(self, log: Log) -> None:
        await log.add([entry_leaf(n) for n in range(300)])
        await log.add([entry_leaf(n) for n in range(300, 777)])
        expected = tile_files(log.leaves)
        size, note = await log.tiles.checkpoint()
        assert size == 777
        for tile in tiles.tiles_of(size):
            assert await log.tiles.read(tile) == expected[tile.path], tile.path
            if tile.level == 0:
                bundle = Tile(level=None, index=tile.index, width=tile.width)
                assert await log.tiles.read(bundle) == expected[bundle.path], bundle.path
        assert await log.tiles.read(Tile(0, 1, 44)) == expected["tile/0/001"][:44 * 32]
        checkpoint = tlog.parse_checkpoint(note[:note.index("\n\n") + 1])
        assert checkpoint.root == tlog.mth([tlog.leaf_hash(leaf) for leaf in log.leaves])
        assert await log.tiles.root(300) == tlog.mth(
            [tlog.leaf_hash(leaf) for leaf in log.leaves[:300]])
        with pytest.raises(NotFoundError):
            await log.tiles.read(Tile(0, 3, 10))

    async def test_a_shredded_bundle_is_withheld_its_tile_stays(self, log: Log) -> None:
        await log.add([entry_leaf(n) for n in range(300)])
        await log.store.shred(T0 + timedelta(seconds=1))
        with pytest.raises(NotFoundError, match="shredded"):
            await log.tiles.read(Tile(None, 0))
        assert await log.tiles.read(Tile(0, 0)) == tile_files(log.leaves)["tile/0/000"]
        assert await log.tiles.read(Tile(None, 1, 44)) == tile_files(
            log.leaves)["tile/entries/001.p/44"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_specs_tree_of_70000(backend: str, tmp_path: Path) -> None:
    """The spec's example: 273 full level-0 tiles and one of 112, a full level-1 tile and one
    of 17, a level-2 tile of 1 - each equal to the builder's from the spec text."""
    async with open_backend(backend, tmp_path) as (store, _):
        log = Log(store)
        await log.log.initialise()
        await log.add([f"entry {n}".encode() for n in range(70_000)])
        expected = tile_files(log.leaves)
        served = {t.path: await log.tiles.read(t) for t in tiles.tiles_of(70_000)}
        assert served == {k: v for k, v in expected.items() if not k.startswith("tile/entries")}
        assert sorted(p for p in served if p.startswith(("tile/1/", "tile/2/"))) == [
            "tile/1/000", "tile/1/001.p/17", "tile/2/000.p/1"]
