"""In-memory stores for unit tests: an ``EntryStore`` for the service (the interface's
contract, kept in dicts; who reads an entry is decided by ``cockpit.readers``, as in every
backend), and the ``LogStore`` reads and writes the cosigner uses (a tree grown in memory,
checkpoints signed as the sequencer signs them)."""

from collections.abc import Iterable, Sequence
from datetime import datetime

from cockpit import tree
from cockpit.errors import TreeIntegrityError
from cockpit.readers import readers
from cockpit.store.base import CitizenKeys, FeedRow, NewEntry, Sign
from einmal.store import StoreError
from einmal_client import tlog

__all__ = ["FakeEntryStore", "FakeLogStore"]


class FakeEntryStore:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[NewEntry, bytes | None]] = {}  # id -> (entry, sealed view)
        self.wrapped_keys: dict[str, bytes] = {}
        self.parents_of: dict[str, list[str]] = {}
        #: (citizen, transfer id) -> (occurred_at, relation)
        self.index: dict[tuple[str, str], tuple[datetime, str]] = {}
        self.log_index: dict[str, int] = {}
        #: set to make every call fail as a broken store does
        self.failure: StoreError | None = None

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def ingest(self, entries: Sequence[NewEntry], *, received_at: datetime,
                     keys: CitizenKeys) -> int:
        self._check()
        have = keys.cached({e.subject_ref for e in entries})
        new_keys: dict[str, bytes] = {}
        fresh: list[NewEntry] = []
        sealed: dict[str, bytes] = {}
        for entry in entries:
            if entry.id in self.entries or entry.id in sealed:
                continue
            ref = entry.subject_ref
            key = have.get(ref)
            if key is None:
                if ref not in self.wrapped_keys:
                    self.wrapped_keys[ref] = keys.new_key()[1]
                key = have[ref] = new_keys[ref] = keys.unwrap(self.wrapped_keys[ref])
            sealed[entry.id] = keys.seal(key, entry.id, entry.view)
            fresh.append(entry)
        # the relations learned are added to parents_of in place: that is all a fake keeps
        _, rows = readers(fresh, self.parents_of, lambda e: e.occurred_at)
        for entry in fresh:
            self.entries[entry.id] = (entry, sealed[entry.id])
        for ref, transfer_id, when, relation in rows:
            self.index.setdefault((ref, transfer_id), (when, relation))
        keys.remember(new_keys)
        return len(fresh)

    async def feed(self, citizen_ref: str, *, since: datetime, limit: int,
                   after: tuple[datetime, str] | None = None) -> list[FeedRow]:
        self._check()
        found = sorted(((when, transfer_id, relation)
                        for (ref, transfer_id), (when, relation) in self.index.items()
                        if ref == citizen_ref and when >= since
                        and (after is None or (when, transfer_id) < after)), reverse=True)
        rows = []
        for when, transfer_id, relation in found[:limit]:
            entry, sealed = self.entries[transfer_id]
            rows.append(FeedRow(transfer_id=transfer_id, occurred_at=when, relation=relation,
                                subject_ref=entry.subject_ref, sealed_view=sealed,
                                wrapped_key=self.wrapped_keys.get(entry.subject_ref),
                                log_index=self.log_index.get(transfer_id)))
        return rows

    async def forget_citizen(self, citizen_ref: str, *, keys: CitizenKeys) -> None:
        self._check()
        self.wrapped_keys.pop(citizen_ref, None)
        keys.forget(citizen_ref)

    # -- for the tests -----------------------------------------------------------------------
    def shred(self, transfer_ids: Iterable[str]) -> None:
        for transfer_id in transfer_ids:
            entry, _ = self.entries[transfer_id]
            self.entries[transfer_id] = (entry, None)



class FakeLogStore:
    """The log's tree in memory: ``grow`` appends leaves and signs a checkpoint with ``sign``;
    published checkpoints kept as a store keeps them (the first for a size stays)."""

    def __init__(self, sign: Sign) -> None:
        self.sign = sign
        self.leaves: list[bytes] = []
        self.checkpoints: dict[int, str] = {0: sign(0, tlog.EMPTY_ROOT)}
        self.published: dict[int, tuple[str, int]] = {}  # size -> (note, cosignatures)
        #: set to make every call fail as a broken store does
        self.failure: StoreError | None = None

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def grow(self, count: int) -> tuple[int, str]:
        """Integrate ``count`` more entries: the new (size, signed note)."""
        self.leaves += [tlog.leaf_hash(f"entry {len(self.leaves) + n}".encode())
                        for n in range(count)]
        size = len(self.leaves)
        self.checkpoints[size] = self.sign(size, tlog.mth(self.leaves))
        return size, self.checkpoints[size]

    async def latest_checkpoint(self) -> tuple[int, str] | None:
        self._check()
        size = max(self.checkpoints)
        return size, self.checkpoints[size]

    async def published_checkpoint(self) -> tuple[int, str] | None:
        self._check()
        if not self.published:
            return None
        size = max(self.published)
        return size, self.published[size][0]

    async def publish_checkpoint(self, *, tree_size: int, note: str, cosignatures: int,
                                 now: datetime) -> bool:
        self._check()
        if tree_size in self.published:
            return False
        self.published[tree_size] = (note, cosignatures)
        return True

    async def log_status(self) -> tuple[int, int]:
        self._check()
        return len(self.leaves), 0

    async def nodes(self, wanted: Iterable[tree.Node]) -> dict[tree.Node, bytes]:
        self._check()
        found: dict[tree.Node, bytes] = {}
        for level, idx in wanted:
            start, end = idx << level, (idx + 1) << level
            if end > len(self.leaves):
                msg = "the stored tree is missing nodes"
                raise TreeIntegrityError(msg)
            found[(level, idx)] = tlog.mth(self.leaves[start:end])
        return found

