"""An in-memory ``EntryStore`` for the service's unit tests: the interface's contract, kept in
dicts (who reads an entry is decided by ``cockpit.readers``, as in every backend)."""

from collections.abc import Iterable, Sequence
from datetime import datetime

from cockpit.readers import readers
from cockpit.store.base import CitizenKeys, FeedRow, NewEntry
from einmal.store import StoreError

__all__ = ["FakeEntryStore"]


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
