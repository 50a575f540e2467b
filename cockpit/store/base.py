"""The cockpit's store: ONE interface (``CockpitStore``) and the values that cross it.

Two complete backends implement it, one chosen once at start-up (``cockpit.store.open_store``):

* ``SqliteCockpitStore`` - a SQLite file: the hot write transactions (ingest, sequencing) in
  plain SQL on the engine's ``SqliteWriter`` (decision 0024), everything else as below;
* ``SqlAlchemyCockpitStore`` - SQLAlchemy Core for everything: PostgreSQL (several cockpit
  processes, a read replica for the citizens' feed), and usable on SQLite too.

One conformance suite (tests/integration/test_cockpit_store.py) runs against both: same rows,
same roots, same signed checkpoints, same feed, same errors. Every failure of the store is a
``StoreError`` (einmal/store.py), the driver's error chained; the HTTP layer answers it with one
503 ``store-unavailable``. The interface is two parts: ``EntryStore`` (what the service needs:
entries, readers, citizen keys) and ``LogStore`` (what the transfer log needs: the tree,
checkpoints, export, retention).
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from cockpit.tree import Node

__all__ = ["CitizenKeys", "CockpitStore", "EntryStore", "FeedRow", "LogLine", "LogStore",
           "NewEntry", "Sign"]

#: An integrated entry as the export reads it: (log index, leaf or None once shredded, hash).
LogLine = tuple[int, bytes | None, bytes]
#: Signs the checkpoint of a tree: (size, root) -> the signed note.
Sign = Callable[[int, bytes], str]


class NewEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A transfer record as the cockpit stores it: the leaf (the exact log bytes, decision
    0009), the citizen view (plaintext here: the store seals it with its subject's key) and
    who else may read it. Only pseudonyms, never an IdNr."""

    id: str
    occurred_at: datetime
    subject_ref: str
    view: bytes
    leaf: bytes
    leaf_hash: bytes
    service_id: str
    register_id: str | None
    #: the others the register named (pseudonyms; never the subject itself)
    named_refs: tuple[str, ...] = ()
    #: the register named them as the subject's parents (a delivered birth or custody proof)
    names_parents: bool = False


class FeedRow(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a citizen's feed as stored: the sealed view and its subject's wrapped key
    (either None once shredded)."""

    transfer_id: str
    occurred_at: datetime
    relation: str
    subject_ref: str
    sealed_view: bytes | None
    wrapped_key: bytes | None
    log_index: int | None


class CitizenKeys(Protocol):
    """What a store needs of the vault (``cockpit.vault.CitizenVault``) to seal new entries."""

    def cached(self, citizen_refs: Iterable[str]) -> dict[str, bytes]:
        """The keys of these citizens the vault holds already."""
        ...

    def remember(self, keys: dict[str, bytes]) -> None:
        """Hold keys - only once the transaction that loaded or created them has committed."""
        ...

    def forget(self, citizen_ref: str) -> None: ...

    def new_key(self) -> tuple[bytes, bytes]:
        """A fresh key and its wrapped form (the only form stored)."""
        ...

    def unwrap(self, wrapped: bytes) -> bytes: ...

    def seal(self, key: bytes, transfer_id: str, plaintext: bytes) -> bytes: ...


class EntryStore(Protocol):
    """Entries, who may read them, citizen keys. Raises ``StoreError`` when the store fails."""

    async def ingest(self, entries: Sequence[NewEntry], *, received_at: datetime,
                     keys: CitizenKeys) -> int:
        """Store new entries in order, in one transaction; returns how many were new.

        Idempotent by id: an entry stored before, or earlier in the batch, changes nothing.
        Each new entry's view is sealed with its subject's key (created if the citizen has
        none). Who reads an entry is decided as if the entries came one by one
        (``cockpit.readers``): a relation learned from an entry applies to it and later ones."""
        ...

    async def feed(self, citizen_ref: str, *, since: datetime, limit: int,
                   after: tuple[datetime, str] | None = None) -> list[FeedRow]:
        """Up to ``limit`` entries the citizen may read that occurred at ``since`` or later,
        newest first (by time, then id), after the cursor ``after`` (time, id)."""
        ...

    async def forget_citizen(self, citizen_ref: str, *, keys: CitizenKeys) -> None:
        """Crypto-shred: delete the citizen's key; their sealed views can never open again."""
        ...


class LogStore(Protocol):
    """The transfer log's tree, checkpoints and entries. Raises ``StoreError`` when the store
    fails."""

    async def initialise_log(self, *, empty_note: str, now: datetime) -> None:
        """Create the log's state and its signed empty checkpoint, once."""
        ...

    async def integrate(self, *, batch: int, sign: Sign, now: datetime) -> tuple[int, int]:
        """Integrate up to ``batch`` pending entries in the order received, in one transaction:
        number them, store the new nodes and the checkpoint ``sign(size, root)``. The state row
        is locked first, so two sequencers never fork the tree. Returns (count, tree size);
        ``TreeIntegrityError`` if the stored frontier is incomplete."""
        ...

    async def log_status(self) -> tuple[int, int]:
        """(integrated tree size, entries waiting for the sequencer)."""
        ...

    async def latest_checkpoint(self) -> tuple[int, str] | None:
        """(tree size, signed note) of the largest checkpoint, if any."""
        ...

    async def position(self, transfer_id: str) -> tuple[int | None, bytes] | None:
        """(log index or None until integrated, leaf hash) of a transfer, if stored."""
        ...

    async def leaf_hash_at(self, index: int) -> bytes | None: ...

    async def nodes(self, wanted: Iterable[Node]) -> dict[Node, bytes]:
        """The stored hashes of these nodes; ``TreeIntegrityError`` if any is missing."""
        ...

    async def tree_nodes(self, level: int, start: int, end: int) -> list[bytes]:
        """The stored hashes of the nodes ``(level, idx)`` with ``start <= idx < end``, in
        index order, as many as are stored (the tree grows to the right: a prefix). The tile
        API reads its tiles with this (cockpit/tiles.py)."""
        ...

    async def shredded_groups(self, *, tree_size: int, group: int) -> list[int]:
        """The distinct ``index // group`` of the shredded entries with ``index < tree_size``,
        ascending: which entry bundles of ``group`` entries can no longer be served."""
        ...

    async def log_lines(self, *, after: int, tree_size: int, limit: int,
                        since: datetime | None = None, until: datetime | None = None,
                        service: str | None = None, register: str | None = None,
                        ) -> list[LogLine]:
        """Integrated entries with ``after < index < tree_size`` in index order (at most
        ``limit``), optionally only those that occurred in [since, until) or concern one
        service or register."""
        ...

    async def shred(self, before: datetime) -> int:
        """Destroy leaf, view and readers of integrated entries that occurred before
        ``before``; the leaf hashes stay (every proof still verifies). Returns the count."""
        ...

    async def publish_checkpoint(self, *, tree_size: int, note: str, cosignatures: int,
                                 now: datetime) -> bool:
        """Keep a checkpoint cosigned by a quorum of witnesses (``note``: the signed note with
        the cosignature lines) as published. The first one kept for a size stays: False if
        one was kept for ``tree_size`` already."""
        ...

    async def published_checkpoint(self) -> tuple[int, str] | None:
        """(tree size, cosigned note) of the largest published checkpoint, if any."""
        ...

    async def readable_entry(self, citizen_ref: str, transfer_id: str, *, since: datetime,
                             ) -> tuple[int | None, bytes | None] | None:
        """(log index or None until integrated, leaf or None once shredded) of an entry the
        citizen may read - one of their feed (``EntryStore.feed``) that occurred at ``since``
        or later - else None (no such entry, or not theirs: the same answer)."""
        ...


class CockpitStore(EntryStore, LogStore, Protocol):
    """The cockpit's one store interface."""

    async def create_schema(self) -> None:
        """Migrate a fresh database; refuse one that is behind (``einmal db upgrade``)."""
        ...
