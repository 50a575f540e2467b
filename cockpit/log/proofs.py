"""Reading the log: the published checkpoint, a transfer's place, inclusion and consistency
proofs (RFC 9162 §2.1.3, §2.1.4), computed from the few stored nodes each touches.

What is *published* - the checkpoint every reader gets, and the largest tree proofs are given
for - depends on the witness policy (decision 0030): with a quorum, the latest checkpoint that
many witnesses cosigned; without one, the latest signed checkpoint (with the cosignatures
collected for it on the side, if any).
"""

import base64
from collections.abc import Callable
from typing import TypeVar

import msgspec

from cockpit import tree
from cockpit.errors import NotFoundError, OutOfRangeError, TreeIntegrityError
from cockpit.log.witnesses import NO_WITNESSES, WitnessPolicy
from cockpit.store.base import LogStore
from einmal_client import tlog

__all__ = ["ConsistencyProof", "EntryPosition", "InclusionProof", "Proofs"]

T = TypeVar("T")


class EntryPosition(msgspec.Struct, frozen=True, kw_only=True):
    """Where a transfer sits in the log: its index once integrated."""

    transfer_id: str
    index: int | None
    #: in the latest checkpoint (its inclusion proof can be asked for)
    integrated: bool
    tree_size: int
    leaf_hash: str  # base64


class InclusionProof(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    tree_size: int
    leaf_hash: str  # base64
    hashes: list[str]


class ConsistencyProof(msgspec.Struct, frozen=True, kw_only=True):
    first: int = msgspec.field(name="from")
    second: int = msgspec.field(name="to")
    hashes: list[str]


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


class Proofs:
    def __init__(self, store: LogStore, witnesses: WitnessPolicy = NO_WITNESSES) -> None:
        self._store = store
        self._witnesses = witnesses

    async def checkpoint(self) -> tuple[int, str]:
        """(tree size, note) of the published checkpoint."""
        if self._witnesses.quorum:
            published = await self._store.published_checkpoint()
            if published is None:
                msg = ("The log has no checkpoint cosigned by its witnesses yet: publication "
                       "waits for them.")
                raise NotFoundError(msg)
            return published
        latest = await self.signed()
        if self._witnesses.enabled:  # quorum 0: cosignatures are collected on the side
            cosigned = await self._store.published_checkpoint()
            if cosigned is not None and cosigned[0] == latest[0]:
                return cosigned
        return latest

    async def signed(self) -> tuple[int, str]:
        """(tree size, signed note) of the latest signed checkpoint, published or not."""
        latest = await self._store.latest_checkpoint()
        if latest is None:
            msg = "The log has no checkpoint yet."
            raise NotFoundError(msg)
        return latest

    async def computed(self, fn: Callable[[tlog.HashAt], T]) -> T:
        """A tree computation (root, path, proof) on the stored nodes it needs."""
        return tree.compute(fn, await self._store.nodes(tree.needed(fn)))

    async def entry_of(self, transfer_id: str) -> EntryPosition:
        """Where a transfer sits in the log (for the service that received it, or the
        citizen, to ask for its inclusion proof)."""
        found = await self._store.position(transfer_id)
        if found is None:
            msg = "No such transfer in the log (yet): records reach the cockpit within seconds."
            raise NotFoundError(msg)
        index, leaf_hash = found
        size, _ = await self.checkpoint()
        return EntryPosition(transfer_id=transfer_id, index=index,
                             integrated=index is not None and index < size, tree_size=size,
                             leaf_hash=_b64(leaf_hash))

    async def inclusion(self, index: int, tree_size: int) -> InclusionProof:
        size, _ = await self.checkpoint()
        if not 0 <= index < tree_size:
            msg = "index must be >= 0 and < tree_size."
            raise OutOfRangeError(msg)
        if tree_size > size:
            msg = (f"No checkpoint of size {tree_size} yet; the latest has size {size}. "
                   "Entries are integrated within about a second.")
            raise NotFoundError(msg)
        leaf = await self._store.leaf_hash_at(index)
        if leaf is None:
            msg = f"the stored log has no entry {index} below its checkpoint"
            raise TreeIntegrityError(msg)
        path = await self.computed(lambda h: tlog.inclusion_path(index, tree_size, h))
        return InclusionProof(index=index, tree_size=tree_size, leaf_hash=_b64(leaf),
                              hashes=tlog.hashes_b64(path))

    async def consistency(self, first: int, second: int) -> ConsistencyProof:
        size, _ = await self.checkpoint()
        if not 1 <= first <= second:
            msg = "from must be >= 1 and <= to."
            raise OutOfRangeError(msg)
        if second > size:
            msg = f"No checkpoint of size {second} yet; the latest has size {size}."
            raise NotFoundError(msg)
        proof = await self.computed(lambda h: tlog.consistency_proof(first, second, h))
        return ConsistencyProof(first=first, second=second, hashes=tlog.hashes_b64(proof))
