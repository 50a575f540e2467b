"""``einmal log publish --out DIR``: the log's tiles written to a folder that any static web
server or object store serves as the C2SP tlog-tiles API (``DIR`` is the log's prefix).

Every file is written whole or not at all (a temporary file, then a rename), the checkpoint
last: a reader never sees a checkpoint whose tiles are missing. Full tiles are written once
(a run skips those already there, so an interrupted run resumes); partial tiles are written
for the current size, and a tile's partial versions are removed once it is full. Entry bundles
with shredded entries (retention) are not written, and removed if they were. A folder that
holds another log, or another history of this one, is refused.
"""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cockpit.tiles.reader import BundleShreddedError, LogTiles
from einmal_client import tlog
from einmal_client.tiles import Tile, tiles_of

__all__ = ["PublishError", "PublishReport", "publish"]


class PublishError(Exception):
    """The folder cannot be published to (one clear line for the CLI)."""


@dataclass
class PublishReport:
    tree_size: int
    #: tiles and entry bundles written by this run
    written: int = 0
    #: full ones that were there already
    kept: int = 0
    #: entry bundles not published because entries of them were shredded
    withheld: int = 0
    #: files removed: partial tiles of tiles now full, bundles with shredded entries
    removed: int = 0


def _text(note: str) -> str:
    """A signed note's text (its lines up to the blank line)."""
    return note[:note.index("\n\n") + 1]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _plan(size: int) -> list[Tile]:
    """Every tile and entry bundle of a tree of ``size``, hash tiles level by level."""
    hashes = list(tiles_of(size))
    return [*hashes, *(Tile(level=None, index=t.index, width=t.width)
                       for t in hashes if t.level == 0)]


async def _check_folder(tiles: LogTiles, out: Path, checkpoint: tlog.Checkpoint) -> None:
    """Refuse a folder with another log's files, or with a history this log does not extend."""
    key_file, checkpoint_file = out / "verifier-key", out / "checkpoint"
    if key_file.exists():
        origin = key_file.read_text().strip().split("+", 1)[0]
        if origin != checkpoint.origin:
            msg = f"{out} holds the log {origin!r}, not {checkpoint.origin!r}"
            raise PublishError(msg)
    if not checkpoint_file.exists():
        return
    try:
        published = tlog.parse_checkpoint(_text(checkpoint_file.read_text()))
    except (ValueError, UnicodeDecodeError) as exc:
        msg = f"{checkpoint_file} is not a checkpoint: {exc}"
        raise PublishError(msg) from exc
    if published.origin != checkpoint.origin:
        msg = f"{out} holds the log {published.origin!r}, not {checkpoint.origin!r}"
        raise PublishError(msg)
    if published.size > checkpoint.size:
        msg = (f"{out} holds a checkpoint of size {published.size}, larger than this log's "
               f"{checkpoint.size}: a rolled-back store?")
        raise PublishError(msg)
    if published.size and await tiles.root(published.size) != published.root:
        msg = (f"{out} holds a checkpoint of size {published.size} that this log's tree does "
               "not extend: another history")
        raise PublishError(msg)


async def publish(tiles: LogTiles, out: Path, *,
                  progress: Callable[[int, int], None] = lambda done, total: None,
                  ) -> PublishReport:
    """Write (or bring up to date) the tiles of the latest checkpoint in ``out``."""
    size, note = await tiles.checkpoint()
    try:
        checkpoint = tlog.parse_checkpoint(tlog.verify_note(
            note, *tlog.parse_verifier_key(tiles.verifier_key)))
    except tlog.NoteError as exc:
        msg = f"the log's checkpoint does not verify with its verifier key: {exc}"
        raise PublishError(msg) from exc
    if size and await tiles.root(size) != checkpoint.root:
        msg = "the stored tree does not match its latest checkpoint: nothing published"
        raise PublishError(msg)
    await _check_folder(tiles, out, checkpoint)
    _write(out / "verifier-key", (tiles.verifier_key + "\n").encode())
    report = PublishReport(tree_size=size)
    shredded = await tiles.shredded_bundles(size)
    plan = _plan(size)
    progress(0, len(plan))
    for done, tile in enumerate(plan, 1):
        path = out / tile.path
        if tile.level is None and tile.index in shredded:
            report.withheld += 1
            if path.exists():
                path.unlink()
                report.removed += 1
        elif tile.full and path.exists():
            report.kept += 1
        else:
            try:
                _write(path, await tiles.read(tile, size=size))
                report.written += 1
            except BundleShreddedError:  # shredded since this run began
                report.withheld += 1
        partials = out / f"{tile.path}.p"
        if tile.full and partials.is_dir():
            report.removed += sum(1 for p in partials.iterdir() if p.is_file())
            shutil.rmtree(partials)
        progress(done, len(plan))
    _write(out / "checkpoint", note.encode())
    return report
