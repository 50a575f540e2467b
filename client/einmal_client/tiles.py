"""C2SP tlog-tiles, the client side: tile paths, hash tiles, entry bundles, and a tree read
from tiles over HTTP (any proof or root computed from them by ``einmal_client.tlog``).

A log serves its Merkle tree as *tiles*: the tile at level ``L`` and index ``N`` holds up to
256 consecutive hashes of tree level ``8 * L`` (level 0: the leaf hashes), so any perfect
subtree's hash is one tile read plus at most 255 node hashes. Entry bundles hold the leaves
themselves, each a big-endian uint16 length and the exact bytes the tree hashes.
Paths: ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]`` with ``N`` in groups of three
digits, all but the last prefixed with ``x`` (1234067 -> ``x001/x234/067``).

Errors:

* TileError - a malformed tile, bundle or path (``TilePathError``)
* TileFetchError - a tile or checkpoint could not be fetched (HTTP status, network)
"""

import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx

from einmal_client import tlog

__all__ = ["HASH_SIZE", "MAX_ENTRY_SIZE", "MAX_LEVEL", "TILE_HEIGHT", "TILE_WIDTH", "Tile",
           "TileClient", "TileError", "TileFetchError", "TilePathError", "TileTree",
           "bundle_entries", "encode_bundle", "format_index", "hash_tile", "parse_tile_path",
           "perfect_root", "tile_hashes", "tile_width", "tiles_of"]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = 32
#: the spec's largest level; a tree of up to 2**64 leaves has tiles at levels 0 to 7 only
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF
_MAX_INDEX = 2**64 - 1
_PATH = re.compile(r"tile/(?P<level>entries|[0-9]{1,2})/(?P<index>(?:x[0-9]{3}/){0,6}[0-9]{3})"
                   r"(?:\.p/(?P<width>[0-9]{1,3}))?")


class TileError(ValueError):
    """A tile, an entry bundle or a tile path is malformed."""


class TilePathError(TileError):
    """A path is not a canonical tlog-tiles path."""


class TileFetchError(Exception):
    """A resource of the log could not be fetched. ``status``: the HTTP status, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Tile:
    """A hash tile (``level`` 0 to 63) or, with ``level`` None, an entry bundle."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``."""
        level = "entries" if self.level is None else str(self.level)
        partial = "" if self.full else f".p/{self.width}"
        return f"tile/{level}/{format_index(self.index)}{partial}"

    @property
    def start(self) -> int:
        """The first leaf index the tile covers."""
        return self.index << (TILE_HEIGHT * ((self.level or 0) + 1))


def format_index(index: int) -> str:
    """A tile index in groups of three digits, all but the last prefixed with ``x``."""
    if not 0 <= index <= _MAX_INDEX:
        msg = f"a tile index is between 0 and 2**64 - 1, not {index}"
        raise TilePathError(msg)
    groups = [f"{index % 1000:03d}"]
    while index >= 1000:
        index //= 1000
        groups.append(f"x{index % 1000:03d}")
    return "/".join(reversed(groups))


def parse_tile_path(path: str) -> Tile:
    """The tile a canonical path names (relative to the log's prefix, ``tile/...``).

    Anything but the one form ``Tile.path`` writes is refused: leading zeros in the level, an
    index group or the width, a missing or misplaced ``x``, ``x000`` groups in front, a width
    of 0 or 256 and more, a level above 63, an index no tree of up to 2**64 leaves has."""
    match = _PATH.fullmatch(path)
    if match is None:
        msg = "not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])"
        raise TilePathError(msg)
    raw_level, raw_width = match["level"], match["width"]
    level = None if raw_level == "entries" else int(raw_level)
    if level is not None and level > MAX_LEVEL:
        msg = f"a tile level is between 0 and {MAX_LEVEL}"
        raise TilePathError(msg)
    width = TILE_WIDTH if raw_width is None else int(raw_width)
    if raw_width is not None and not 1 <= width < TILE_WIDTH:
        msg = "a partial tile's width is between 1 and 255"
        raise TilePathError(msg)
    index = int(match["index"].replace("x", "").replace("/", ""))
    if index > _MAX_INDEX >> (TILE_HEIGHT * ((level or 0) + 1)):
        msg = "no tree of up to 2**64 leaves has a tile of this index"
        raise TilePathError(msg)
    tile = Tile(level=level, index=index, width=width)
    if tile.path != path:
        msg = "not the canonical form of this tile's path"
        raise TilePathError(msg)
    return tile


def tile_width(size: int, level: int, index: int) -> int:
    """The width of tile ``index`` at ``level`` in a tree of ``size`` leaves (0: none)."""
    nodes = size >> (TILE_HEIGHT * level)  # complete nodes at tree level 8 * level
    return max(0, min(TILE_WIDTH, nodes - index * TILE_WIDTH))


def tiles_of(size: int, *, since: int = 0) -> Iterator[Tile]:
    """The hash tiles of a tree of ``size`` leaves, level by level: the full tiles a tree of
    ``since`` leaves does not have yet, then each level's partial tile, if any. (Entry bundles
    are the level-0 tiles' namesakes: ``Tile(None, t.index, t.width)``.)"""
    level = 0
    while size >> (TILE_HEIGHT * level):
        nodes = size >> (TILE_HEIGHT * level)
        done = (since >> (TILE_HEIGHT * level)) // TILE_WIDTH
        for index in range(done, nodes // TILE_WIDTH):
            yield Tile(level=level, index=index)
        if nodes % TILE_WIDTH:
            yield Tile(level=level, index=nodes // TILE_WIDTH, width=nodes % TILE_WIDTH)
        level += 1


def hash_tile(hashes: Sequence[bytes]) -> bytes:
    """A hash tile's bytes: the hashes concatenated."""
    if not 1 <= len(hashes) <= TILE_WIDTH or any(len(h) != HASH_SIZE for h in hashes):
        msg = "a tile holds 1 to 256 hashes of 32 bytes"
        raise TileError(msg)
    return b"".join(hashes)


def tile_hashes(data: bytes, width: int) -> list[bytes]:
    """The hashes of a hash tile of ``width`` (its length is checked)."""
    if len(data) != width * HASH_SIZE:
        msg = f"a tile of width {width} has {width * HASH_SIZE} bytes, not {len(data)}"
        raise TileError(msg)
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes."""
    if len(entries) > TILE_WIDTH:
        msg = "an entry bundle holds at most 256 entries"
        raise TileError(msg)
    parts: list[bytes] = []
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            msg = f"an entry of {len(entry)} bytes does not fit a bundle (at most 65,535)"
            raise TileError(msg)
        parts += (len(entry).to_bytes(2, "big"), entry)
    return b"".join(parts)


def bundle_entries(data: bytes, width: int) -> list[bytes]:
    """The entries of a bundle that must hold ``width`` of them."""
    entries: list[bytes] = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            msg = "an entry bundle ends inside a length prefix"
            raise TileError(msg)
        end = at + 2 + int.from_bytes(data[at:at + 2], "big")
        if end > len(data):
            msg = "an entry runs past the end of its bundle"
            raise TileError(msg)
        entries.append(data[at + 2:end])
        at = end
    if len(entries) != width:
        msg = f"the entry bundle holds {len(entries)} entries, not {width}"
        raise TileError(msg)
    return entries


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The hash of a perfect subtree over ``hashes`` (a power of two of them)."""
    level = list(hashes)
    if not level or len(level) & (len(level) - 1):
        msg = "a perfect subtree has a power of two of hashes"
        raise TileError(msg)
    while len(level) > 1:
        level = [tlog.node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class TileClient:
    """Reads a tiled log at ``prefix`` (the cockpit's ``.../log`` or a published folder) over
    HTTP. Full tiles are cached (they never change), up to ``cache_tiles`` of them."""

    def __init__(self, prefix: str, *, http: httpx.Client | None = None,
                 cache_tiles: int = 1024, timeout: float = 30) -> None:
        self.prefix = prefix.rstrip("/")
        self._http = http or httpx.Client(timeout=timeout)
        self._own_http = http is None
        self._cache: OrderedDict[Tile, list[bytes]] = OrderedDict()
        self._cache_tiles = cache_tiles
        self.fetches = 0

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> "TileClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _get(self, path: str) -> bytes:
        url = f"{self.prefix}/{path}"
        self.fetches += 1
        try:
            response = self._http.get(url, headers={"accept-encoding": "gzip, identity"})
        except httpx.HTTPError as exc:
            msg = f"cannot fetch {url}: {type(exc).__name__}"
            raise TileFetchError(msg) from exc
        if response.status_code != 200:
            msg = f"{url} answered {response.status_code}"
            raise TileFetchError(msg, status=response.status_code)
        return response.content

    def checkpoint(self) -> str:
        """The log's current signed checkpoint note (unverified)."""
        return self._text("checkpoint")

    def verifier_key(self) -> str:
        """``<prefix>/verifier-key`` (served by the cockpit and by ``einmal log publish``; not
        part of tlog-tiles): trust it only on first use, pin it."""
        return self._text("verifier-key").strip()

    def _text(self, path: str) -> str:
        try:
            return self._get(path).decode()
        except UnicodeDecodeError as exc:
            msg = f"{self.prefix}/{path} is not UTF-8 text"
            raise TileError(msg) from exc

    def hashes(self, tile: Tile) -> list[bytes]:
        """The hashes of a hash tile (checked to be ``tile.width`` of them)."""
        if tile.level is None:
            msg = "an entry bundle holds entries, not hashes"
            raise TypeError(msg)
        found = self._cache.get(tile)
        if found is not None:
            self._cache.move_to_end(tile)
            return found
        hashes = tile_hashes(self._get(tile.path), tile.width)
        self._cache[tile] = hashes
        if len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)
        return hashes

    def entries(self, index: int, width: int = TILE_WIDTH) -> list[bytes]:
        """The entries of entry bundle ``index`` (checked to be ``width`` of them)."""
        return bundle_entries(self._get(Tile(level=None, index=index, width=width).path), width)

    def tree(self, size: int) -> "TileTree":
        return TileTree(self, size)


class TileTree:
    """The tree of ``size`` leaves as its tiles show it: ``subtree`` is an
    ``einmal_client.tlog.HashAt``, so roots and proofs come from ``tlog``'s functions. Nothing
    read here is trusted until a root computed from it matches a verified checkpoint."""

    def __init__(self, client: TileClient, size: int) -> None:
        self._client = client
        self.size = size

    def subtree(self, start: int, end: int) -> bytes:
        """The hash of the perfect, aligned subtree over leaves ``[start, end)``."""
        count = end - start
        if count <= 0 or count & (count - 1) or start % count or end > self.size:
            msg = f"[{start}, {end}) is not a perfect subtree of a tree of size {self.size}"
            raise TileError(msg)
        height = count.bit_length() - 1
        level, below = divmod(height, TILE_HEIGHT)
        first = start >> (TILE_HEIGHT * level)  # the first node at tree level 8 * level
        index, offset = divmod(first, TILE_WIDTH)
        width = tile_width(self.size, level, index)
        hashes = self._client.hashes(Tile(level=level, index=index, width=width))
        return perfect_root(hashes[offset:offset + (1 << below)])

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all), from this tree's tiles."""
        return tlog.mth_from(self.size if size is None else size, self.subtree)

    def inclusion(self, index: int) -> list[bytes]:
        return tlog.inclusion_path(index, self.size, self.subtree)

    def consistency(self, old: int) -> list[bytes]:
        return tlog.consistency_proof(old, self.size, self.subtree)
