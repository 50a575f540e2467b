"""The transfer log as C2SP tlog-tiles, read from the stored tree (decision 0010): a tile at
level ``L`` is a range of the stored nodes of tree level ``8 * L``, an entry bundle a range of
the stored leaves - one indexed query each, nothing rehashed. A hash tile never changes (a
partial one of a given width neither: stored nodes are never rewritten), so hash tiles are kept
in a bounded LRU cache; entry bundles are not (retention shreds what they hold). Everything is
bounded by the size of the latest checkpoint the log publishes (``TransferLog.checkpoint``), so
no tile shows more than a checkpoint commits to."""

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from cockpit import tree
from cockpit.errors import CockpitError, NotFoundError, TreeIntegrityError
from cockpit.store.base import LogStore
from einmal_client import tlog
from einmal_client.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    TileError,
    encode_bundle,
    tile_width,
)

__all__ = ["BundleShreddedError", "EntryTooLongError", "LogTiles"]

#: Hash tiles kept in memory (at most 8 KiB each): 4,096 are 32 MiB at most and hold the full
#: tiles of a log of a million entries four times over (3,907 level-0 tiles, 16 above).
CACHE_TILES = 4096
Checkpoint = Callable[[], Awaitable[tuple[int, str]]]


class BundleShreddedError(NotFoundError):
    """Entries of the bundle were shredded (retention): it can no longer be served; their
    hashes stay in the level-0 tile, so every root and proof still verifies."""


class EntryTooLongError(CockpitError):
    """A leaf longer than an entry bundle's uint16 length prefix allows (65,535 bytes)."""


class LogTiles:
    """Tiles, entry bundles and the checkpoint of one log. ``checkpoint``: the log's latest
    published (size, signed note), ``TransferLog.checkpoint``."""

    def __init__(self, store: LogStore, checkpoint: Checkpoint, *, verifier_key: str,
                 cache_tiles: int = CACHE_TILES) -> None:
        self._store = store
        self._checkpoint = checkpoint
        self.verifier_key = verifier_key
        self._cache: OrderedDict[Tile, bytes] = OrderedDict()
        self._cache_tiles = cache_tiles
        #: the largest published size seen (it only grows)
        self._published = 0

    async def checkpoint(self) -> tuple[int, str]:
        """(tree size, signed note) of the latest published checkpoint."""
        return await self._checkpoint()

    async def root(self, size: int) -> bytes:
        """The stored tree's root at ``size`` (at most the checkpoint's)."""
        def root_of(hash_at: tlog.HashAt) -> bytes:
            return tlog.mth_from(size, hash_at)

        return tree.compute(root_of, await self._store.nodes(tree.needed(root_of)))

    async def shredded_bundles(self, size: int) -> set[int]:
        """The entry bundles of a tree of ``size`` with a shredded entry."""
        return set(await self._store.shredded_groups(tree_size=size, group=TILE_WIDTH))

    async def read(self, tile: Tile, *, size: int | None = None) -> bytes:
        """A hash tile or an entry bundle; ``size``: of the tree to read it from (default: the
        latest checkpoint's). ``NotFoundError`` if that tree has no such tile."""
        if tile.level is None:
            return await self.entry_bundle(tile, size=size)
        return await self.hash_tile(tile, size=size)

    async def _available(self, tile: Tile, size: int | None) -> None:
        """``NotFoundError`` unless the tree of ``size`` (default: the published one) has the
        tile. The published size only grows, so a tile within a size seen before needs no
        query; only a tile beyond it asks for the latest checkpoint."""
        if size is None:
            if tile_width(self._published, tile.level or 0, tile.index) >= tile.width:
                return
            size, _ = await self._checkpoint()
            self._published = max(self._published, size)
        if tile_width(size, tile.level or 0, tile.index) < tile.width:
            msg = f"{tile.path} is beyond the tree of size {size} (the latest checkpoint)."
            raise NotFoundError(msg)

    async def hash_tile(self, tile: Tile, *, size: int | None = None) -> bytes:
        if tile.level is None:
            msg = "an entry bundle is not a hash tile"
            raise TypeError(msg)
        cached = self._cache.get(tile)
        if cached is not None:
            self._cache.move_to_end(tile)
            return cached
        await self._available(tile, size)
        start = tile.index * TILE_WIDTH
        hashes = await self._store.tree_nodes(tile.level * TILE_HEIGHT, start,
                                              start + tile.width)
        if len(hashes) != tile.width:
            msg = f"the stored tree lacks nodes of {tile.path}"
            raise TreeIntegrityError(msg)
        data = b"".join(hashes)
        self._cache[tile] = data  # a partial tile of a given width never changes either
        if len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)
        return data

    async def entry_bundle(self, tile: Tile, *, size: int | None = None) -> bytes:
        """An entry bundle. Not cached: shredding (retention) removes what it holds."""
        if tile.level is not None:
            msg = "a hash tile is not an entry bundle"
            raise TypeError(msg)
        await self._available(tile, size)
        start = tile.index * TILE_WIDTH
        rows = await self._store.log_lines(after=start - 1, tree_size=start + tile.width,
                                           limit=tile.width)
        if len(rows) != tile.width:
            msg = f"the stored log lacks entries of {tile.path}"
            raise TreeIntegrityError(msg)
        leaves = [leaf for _, leaf, _ in rows if leaf is not None]
        if len(leaves) != tile.width:
            msg = (f"Entries of {tile.path} were shredded (retention); their hashes stay in "
                   f"tile/0/{tile.path.removeprefix('tile/entries/')}.")
            raise BundleShreddedError(msg)
        try:
            return encode_bundle(leaves)
        except TileError as exc:
            msg = f"an entry of {tile.path} is too long for an entry bundle"
            raise EntryTooLongError(msg) from exc
