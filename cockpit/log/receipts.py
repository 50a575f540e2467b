"""Receipts: a citizen's transfer, its inclusion proof and the published (cosigned) checkpoint
in one C2SP tlog-proof file (``einmal_client.receipt``), checked offline by
``einmal receipt verify``."""

from collections.abc import Callable
from datetime import datetime

from cockpit.errors import NotFoundError
from cockpit.log.proofs import Proofs
from cockpit.store.base import LogStore
from einmal_client import tlog
from einmal_client.receipt import format_receipt

__all__ = ["Receipts"]


def _inclusion_path(index: int, size: int) -> Callable[[tlog.HashAt], list[bytes]]:
    return lambda hash_at: tlog.inclusion_path(index, size, hash_at)


class Receipts:
    def __init__(self, store: LogStore, proofs: Proofs) -> None:
        self._store = store
        self._proofs = proofs

    async def receipt(self, citizen_ref: str, transfer_id: str, *, since: datetime) -> str:
        """The receipt of a transfer the citizen may see (their feed, since ``since``);
        ``NotFoundError`` for any other - or one not yet in a published checkpoint."""
        found = await self._store.readable_entry(citizen_ref, transfer_id, since=since)
        if found is None or found[1] is None:  # not theirs, unknown, or shredded: alike
            msg = "No such transfer among yours."
            raise NotFoundError(msg)
        index, leaf = found
        size, note = await self._proofs.checkpoint()
        if index is None or index >= size:
            msg = ("This transfer is not in a published checkpoint yet (entries are integrated "
                   "within seconds, then cosigned by the log's witnesses): try again shortly.")
            raise NotFoundError(msg)
        path = await self._proofs.computed(_inclusion_path(index, size))
        return format_receipt(index=index, proof=path, note=note, leaf=leaf)
