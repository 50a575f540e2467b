"""The auditors' export of the log (NDJSON in index order, constant memory) and retention:
shredding the data of old entries while their hashes - and so every proof - stay."""

import base64
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import msgspec
import structlog

from cockpit.errors import OutOfRangeError
from cockpit.log.proofs import Proofs
from cockpit.store.base import LogStore
from einmal_client import tlog

__all__ = ["EXPORT_CHUNK", "Export", "Retention"]

log = structlog.get_logger()

#: entries read per query of the export (keyset pages)
EXPORT_CHUNK = 5000
_b64 = base64.b64encode
_line = msgspec.json.Encoder()


class Export:
    def __init__(self, store: LogStore, proofs: Proofs) -> None:
        self._store = store
        self._proofs = proofs

    async def bounds(self, tree_size: int | None, after: int) -> tuple[int, int]:
        """The export's (tree size, after): the latest checkpoint's size unless one is asked
        for, ``after`` -1 (from the start) or a log index."""
        latest, _ = await self._proofs.checkpoint()
        size = latest if tree_size is None else tree_size
        if not 0 <= size <= latest:
            msg = f"tree_size must be between 0 and {latest}."
            raise OutOfRangeError(msg)
        if after < -1:
            msg = "after must be -1 or a log index."
            raise OutOfRangeError(msg)
        # Found by fuzzing: an `after` beyond 64 bits overflowed in the store mid-stream (the
        # 200 was already sent, so the client saw a truncated body). Past the end: nothing.
        return size, min(after, size)

    async def lines(self, *, tree_size: int, after: int = -1, since: datetime | None = None,
                    until: datetime | None = None, service: str | None = None,
                    register: str | None = None, chunk: int = EXPORT_CHUNK,
                    ) -> AsyncIterator[bytes]:
        """NDJSON lines of the entries ``after < index < tree_size`` in index order. A filtered
        export carries each entry's inclusion proof (the gaps hide the neighbours)."""
        filtered = any(v is not None for v in (since, until, service, register))
        cursor = after
        while True:
            rows = await self._store.log_lines(after=cursor, tree_size=tree_size, limit=chunk,
                                               since=since, until=until, service=service,
                                               register=register)
            for index, leaf, leaf_hash in rows:
                # The leaf is canonical JSON already: it is spliced in as the decoded entry.
                if leaf is not None:
                    head = b'{"index":%d,"leaf":"%s","entry":%s' % (index, _b64(leaf), leaf)
                else:
                    head = b'{"index":%d,"leaf_hash":"%s","entry":null' % (
                        index, _b64(leaf_hash))
                if filtered:
                    path = await self._proofs.computed(_inclusion_path(index, tree_size))
                    head += b',"inclusion":' + _line.encode(tlog.hashes_b64(path))
                yield head + b"}\n"
            if len(rows) < chunk:
                return
            cursor = rows[-1][0]


def _inclusion_path(index: int, tree_size: int) -> Callable[[tlog.HashAt], list[bytes]]:
    return lambda hash_at: tlog.inclusion_path(index, tree_size, hash_at)


class Retention:
    def __init__(self, store: LogStore, *, retention_days: int = 730) -> None:
        self._store = store
        self.keep = timedelta(days=retention_days)

    async def shred(self, before: datetime) -> int:
        """Destroy the per-entry data of integrated entries older than ``before``. The leaf
        hashes stay, so the tree, checkpoints and proofs still verify."""
        count = await self._store.shred(before)
        if count:
            log.info("log.shredded", count=count)
        return count

    async def shred_expired(self, now: datetime) -> int:
        """Shred what is past the retention period at ``now``."""
        return await self.shred(now - self.keep)
