"""A monitor of a tiled transfer log (C2SP tlog-tiles): it follows the signed checkpoint,
checks that each new one extends the last one it saw, and reads every new entry - its bytes
hash to the tree, its form is the log's entry format (decision 0009).

What it keeps (``state.json`` in its state folder): the verifier key it trusts (given, or
fetched once and pinned), the last checkpoint it accepted, and the compact range of the
entries it checked (the hashes of at most 64 perfect subtrees), so each run reads only what
is new and an interrupted run resumes. Two signed checkpoints that contradict each other are
proof that the log misbehaved: the monitor keeps both in ``evidence/`` and fails every run
after that until someone looks.

Errors:

* MonitorError - base; a one-line message
  x LogMisbehaved - the log showed something a correct log never does: a split view, a
    rewrite, a bad signature, tiles or entries that do not hash to the checkpoint
  x MonitorUnavailable - the log could not be read (network, HTTP status); no verdict
"""

import base64
import binascii
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from einmal_client import tlog
from einmal_client.tiles import (
    TILE_WIDTH,
    Tile,
    TileClient,
    TileError,
    TileFetchError,
    tile_width,
)

__all__ = ["EntryFormError", "LogMisbehaved", "Monitor", "MonitorError", "MonitorReport",
           "MonitorUnavailable", "check_entry"]

STATE_VERSION = 1
T = TypeVar("T")
_HTTP_NOT_FOUND = 404


# -- the entry format (cockpit/leaf.py, decision 0009), without the cockpit -----------------

class EntryFormError(ValueError):
    """A leaf is not an entry of the log's format."""


_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")
_OUTCOMES = frozenset({"delivered", "refused", "failed"})
_SERVICE = frozenset({"id", "name", "authority", "land"})
_REGISTER = frozenset({"id", "name"})
_FIELDS = frozenset({"v", "id", "occurred_at", "outcome", "error_type", "proof_type",
                     "data_categories", "service", "register", "intermediaries", "purpose",
                     "legal_basis", "consent_id", "subject", "retention_until",
                     "correlation_id"})


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        msg = "a member name appears twice"
        raise EntryFormError(msg)
    return dict(pairs)


def _no_number(text: str) -> Any:
    msg = f"a number that is not an integer: {text[:20]}"
    raise EntryFormError(msg)


def _is_str(value: object, *, empty: bool = True) -> bool:
    return isinstance(value, str) and (empty or bool(value))


def _is_time(value: object) -> bool:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    return True


def _is_strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_object(value: object, members: frozenset[str]) -> bool:
    return (isinstance(value, dict) and set(value) == members
            and all(isinstance(v, str) for v in value.values()))


_CHECKS: dict[str, Callable[[object], bool]] = {
    "id": lambda v: _is_str(v, empty=False),
    "occurred_at": _is_time,
    "outcome": lambda v: v in _OUTCOMES,
    "error_type": lambda v: v is None or _is_str(v),
    "proof_type": lambda v: _is_str(v, empty=False),
    "data_categories": _is_strings,
    "service": lambda v: _is_object(v, _SERVICE),
    "register": lambda v: v is None or _is_object(v, _REGISTER),
    "intermediaries": _is_strings,
    "purpose": _is_str,
    "legal_basis": _is_str,
    "consent_id": lambda v: v is None or _is_str(v),
    "subject": lambda v: isinstance(v, str) and bool(_PSEUDONYM.fullmatch(v)),
    "retention_until": lambda v: v is None or _is_time(v),
    "correlation_id": lambda v: v is None or _is_str(v),
}


def check_entry(leaf: bytes) -> dict[str, Any]:
    """The entry a leaf holds, if it is one of the log's format (version 1): canonical JSON
    (UTF-8, sorted keys, no insignificant whitespace, no floats), exactly the members of
    decision 0009, each of its type, times as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, the subject a
    pseudonym (64 hex digits, never an IdNr). ``EntryFormError`` says what is wrong."""
    try:
        value = json.loads(leaf.decode("utf-8"), object_pairs_hook=_no_duplicates,
                           parse_float=_no_number, parse_constant=_no_number)
    except UnicodeDecodeError as exc:
        msg = "not UTF-8"
        raise EntryFormError(msg) from exc
    except json.JSONDecodeError as exc:
        msg = f"not JSON ({exc.msg})"
        raise EntryFormError(msg) from exc
    if not isinstance(value, dict):
        msg = "not a JSON object"
        raise EntryFormError(msg)
    version = value.get("v")
    if type(version) is not int or version != 1:
        msg = f"unknown entry version {version!r}"
        raise EntryFormError(msg)
    if set(value) != _FIELDS:
        missing, extra = sorted(_FIELDS - set(value)), sorted(set(value) - _FIELDS)
        msg = f"members missing {missing}, unexpected {extra}"
        raise EntryFormError(msg)
    wrong = [name for name, check in _CHECKS.items() if not check(value[name])]
    if wrong:
        msg = f"malformed {', '.join(wrong)}"
        raise EntryFormError(msg)
    try:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:  # a lone surrogate escaped in the JSON text
        msg = "not canonical JSON (a lone surrogate)"
        raise EntryFormError(msg) from exc
    if canonical != leaf:
        msg = "not canonical JSON (key order, whitespace or escapes)"
        raise EntryFormError(msg)
    return value


# -- the monitor ---------------------------------------------------------------------------

class MonitorError(Exception):
    """The monitor stopped; the message is one line for the operator."""


class LogMisbehaved(MonitorError):
    """The log showed what a correct log never shows (split view, rewrite, bad signature,
    tiles or entries that do not hash to its checkpoint)."""


class MonitorUnavailable(MonitorError):
    """The log could not be read; nothing was decided."""


@dataclass
class MonitorReport:
    origin: str
    tree_size: int
    #: the size of the checkpoint accepted before this run (None: the first run)
    previous_size: int | None
    #: entries read and checked by this run
    entries: int = 0
    #: entries whose bundle the log no longer serves (shredded: their hashes were checked)
    unavailable: int = 0
    #: entries of a malformed form (one line each, with the index)
    problems: list[str] = field(default_factory=list)
    #: the verifier key was fetched and pinned by this run (trust on first use)
    pinned: bool = False


class _Range:
    """The compact range of the first ``size`` leaves: perfect subtree hashes, largest first
    (``tlog.CompactRange``, but stored and restored)."""

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None) -> None:
        self.size = size
        self.hashes = hashes or []
        if len(self.hashes) != bin(size).count("1"):
            msg = "the stored compact range does not fit its size"
            raise ValueError(msg)

    def append(self, leaf_hash: bytes) -> None:
        node, carry = leaf_hash, self.size
        while carry & 1:
            node = tlog.node_hash(self.hashes.pop(), node)
            carry >>= 1
        self.hashes.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return tlog.EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = tlog.node_hash(left, node)
        return node


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _text(note: str) -> str:
    return note[:note.index("\n\n") + 1] if "\n\n" in note else note


class Monitor:
    """Checks a log at ``client.prefix`` against what ``state_dir`` says it saw before."""

    def __init__(self, client: TileClient, state_dir: Path, *, verifier_key: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self._dir = state_dir
        self._given_key = verifier_key.strip() if verifier_key else None
        self._clock = clock

    # -- state -------------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self._dir / "state.json"

    def _load(self) -> dict[str, Any]:
        if not self._state_file.exists():
            return {}
        try:
            state: dict[str, Any] = json.loads(self._state_file.read_text())
        except (OSError, ValueError) as exc:
            msg = f"cannot read the monitor's state {self._state_file}: {exc}"
            raise MonitorError(msg) from exc
        if state.get("version") != STATE_VERSION:
            msg = f"{self._state_file} is not a state this monitor knows"
            raise MonitorError(msg)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        temporary = self._dir / ".state.json.tmp"
        temporary.write_text(json.dumps({**state, "version": STATE_VERSION}, indent=1))
        os.replace(temporary, self._state_file)

    def _evidence(self, *notes: str) -> Path:
        """Keep contradicting signed checkpoints: proof of the log's misbehaviour."""
        folder = self._dir / "evidence" / self._clock().strftime("%Y%m%dT%H%M%S.%fZ")
        folder.mkdir(parents=True, exist_ok=True)
        for number, note in enumerate(notes, 1):
            (folder / f"checkpoint-{number}").write_text(note)
        return folder

    # -- the checks --------------------------------------------------------------------------
    def _verifier(self, state: dict[str, Any]) -> tuple[str, str, bool]:
        """(verifier key, its name, fetched now) - given, pinned, or fetched and pinned."""
        pinned = state.get("verifier_key")
        key, fetched = self._given_key or pinned, False
        if key is None:
            key, fetched = self._fetch(self._client.verifier_key), True
        try:
            name, _ = tlog.parse_verifier_key(key)
        except tlog.NoteError as exc:
            msg = f"the verifier key is malformed: {exc}"
            raise MonitorError(msg) from exc
        return key, name, fetched

    @staticmethod
    def _fetch(read: Callable[..., T], *args: Any) -> T:
        try:
            return read(*args)
        except TileFetchError as exc:
            raise MonitorUnavailable(str(exc)) from exc
        except TileError as exc:
            msg = f"the log served a malformed resource: {exc}"
            raise LogMisbehaved(msg) from exc

    def check(self, *, progress: Callable[[int, int], None] = lambda done, total: None,
              ) -> MonitorReport:
        """One round: fetch the checkpoint, check it, read what is new. Raises
        ``LogMisbehaved`` or ``MonitorUnavailable``; entries of a bad form are reported."""
        state = self._load()
        key, name, fetched = self._verifier(state)
        note = self._fetch(self._client.checkpoint)
        try:
            checkpoint = tlog.parse_checkpoint(tlog.verify_note(note, name,
                                                                tlog.parse_verifier_key(key)[1]))
        except tlog.NoteError as exc:
            msg = f"the checkpoint does not verify with the verifier key {key[:40]}...: {exc}"
            raise LogMisbehaved(msg) from exc
        if checkpoint.origin != name:
            msg = f"the checkpoint names the log {checkpoint.origin!r}, the key {name!r}"
            raise LogMisbehaved(msg)
        previous = state.get("checkpoint")
        old = tlog.parse_checkpoint(_text(previous)) if previous else None
        if old is not None and old.origin != checkpoint.origin:
            msg = f"{self._dir} follows the log {old.origin!r}, not {checkpoint.origin!r}"
            raise MonitorError(msg)
        report = MonitorReport(origin=checkpoint.origin, tree_size=checkpoint.size,
                               previous_size=None if old is None else old.size, pinned=fetched)
        tree = self._client.tree(checkpoint.size)
        if old is not None and previous is not None:
            self._consistent(old, checkpoint, previous, note, tree.root)
        if checkpoint.size and self._fetch(tree.root) != checkpoint.root:
            msg = (f"the log's tiles do not hash to its checkpoint of size {checkpoint.size}: "
                   "it serves tiles of another tree")
            raise LogMisbehaved(msg)
        state.update(verifier_key=key, checkpoint=note, prefix=self._client.prefix)
        self._save(state)
        self._entries(state, checkpoint, report, progress)
        return report

    def _consistent(self, old: tlog.Checkpoint, new: tlog.Checkpoint, old_note: str,
                    new_note: str, root_at: Callable[[int], bytes]) -> None:
        """The new checkpoint extends the old one (its tiles give the old root), or fail."""
        if new.size < old.size:
            where = self._evidence(old_note, new_note)
            msg = (f"rewrite: the log now shows a tree of size {new.size}, smaller than the "
                   f"size {old.size} it signed before (evidence in {where})")
            raise LogMisbehaved(msg)
        if new.size == old.size:
            if new.root != old.root:
                where = self._evidence(old_note, new_note)
                msg = (f"split view: two signed checkpoints of size {new.size} with different "
                       f"roots (evidence in {where})")
                raise LogMisbehaved(msg)
            return
        if self._fetch(root_at, old.size) != old.root:
            where = self._evidence(old_note, new_note)
            msg = (f"split view: the checkpoint of size {new.size} does not extend the "
                   f"checkpoint of size {old.size} seen before - the log rewrote its history "
                   f"or shows different histories (evidence in {where})")
            raise LogMisbehaved(msg)

    def _entries(self, state: dict[str, Any], checkpoint: tlog.Checkpoint,
                 report: MonitorReport, progress: Callable[[int, int], None]) -> None:
        """Read the entries after those checked, up to the checkpoint's size."""
        checked = state.get("checked") or {"size": 0, "hashes": []}
        try:
            done = _Range(checked["size"], [base64.b64decode(h) for h in checked["hashes"]])
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            msg = f"the monitor's state {self._state_file} is damaged: {exc}"
            raise MonitorError(msg) from exc
        if done.size > checkpoint.size:  # a state from a log that was larger: see _consistent
            msg = f"{self._dir} checked {done.size} entries; the log has {checkpoint.size}"
            raise MonitorError(msg)
        first = done.size
        progress(0, checkpoint.size - first)
        while done.size < checkpoint.size:
            index = done.size // TILE_WIDTH
            width = tile_width(checkpoint.size, 0, index)
            offset = done.size - index * TILE_WIDTH
            hashes = self._fetch(self._client.hashes, Tile(0, index, width))
            leaves = self._bundle(index, width)
            for position in range(offset, width):
                at = index * TILE_WIDTH + position
                if leaves is None:
                    report.unavailable += 1
                else:
                    leaf = leaves[position]
                    if tlog.leaf_hash(leaf) != hashes[position]:
                        msg = (f"entry {at}: its bytes do not hash to its leaf hash in "
                               f"{Tile(0, index, width).path}")
                        raise LogMisbehaved(msg)
                    try:
                        check_entry(leaf)
                    except EntryFormError as exc:
                        report.problems.append(f"entry {at}: {exc}")
                    report.entries += 1
                done.append(hashes[position])
            state["checked"] = {"size": done.size, "hashes": [_b64(h) for h in done.hashes]}
            self._save(state)
            progress(done.size - first, checkpoint.size - first)
        if done.root() != checkpoint.root:
            msg = (f"the entries up to {checkpoint.size} do not hash to the checkpoint's root: "
                   "the log serves entries of another tree")
            raise LogMisbehaved(msg)

    def _bundle(self, index: int, width: int) -> list[bytes] | None:
        """The entries of a bundle; None if the log no longer serves it (404: shredded)."""
        try:
            entries: list[bytes] = self._client.entries(index, width)
        except TileFetchError as exc:
            if exc.status == _HTTP_NOT_FOUND:
                return None
            raise MonitorUnavailable(str(exc)) from exc
        except TileError as exc:
            msg = f"the log served a malformed entry bundle: {exc}"
            raise LogMisbehaved(msg) from exc
        return entries
