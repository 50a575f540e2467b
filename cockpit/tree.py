"""The transfer log's Merkle tree as it is stored: one hash per perfect subtree.

A node ``(level, index)`` is the hash of the perfect subtree over the leaves
``[index * 2**level, (index + 1) * 2**level)``. Appending leaves adds nodes and never changes
one; every root and proof is computed (by ``einmal_client.tlog``, RFC 9162) from the few nodes
it touches. Pure functions: the store backends and the proofs share them.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from einmal_client import tlog

__all__ = ["Node", "compute", "extend", "frontier", "needed", "perfect"]

#: (level, index) of a perfect subtree
Node = tuple[int, int]
T = TypeVar("T")


def frontier(size: int) -> list[Node]:
    """The perfect subtrees a tree of ``size`` leaves is made of (what appending needs)."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length())
            if size >> level & 1]


def perfect(start: int, end: int) -> Node:
    """The node of the perfect subtree over leaves ``[start, end)``."""
    level = (end - start).bit_length() - 1
    return level, start >> level


def needed(fn: Callable[[tlog.HashAt], object]) -> set[Node]:
    """The stored nodes a tree computation touches (a dry run with placeholder hashes)."""
    keys: set[Node] = set()

    def record(start: int, end: int) -> bytes:
        keys.add(perfect(start, end))
        return b"\x00" * 32

    fn(record)
    return keys


def compute(fn: Callable[[tlog.HashAt], T], nodes: Mapping[Node, bytes]) -> T:
    """Run a tree computation on stored nodes (``needed(fn)`` of them at least)."""
    return fn(lambda start, end: nodes[perfect(start, end)])


def extend(size: int, leaf_hashes: Sequence[bytes], nodes: Mapping[Node, bytes],
           ) -> tuple[int, dict[Node, bytes], bytes]:
    """Append leaves to a tree of ``size`` whose ``frontier(size)`` nodes are given: the new
    size, the new nodes and the new root."""
    new: dict[Node, bytes] = {}
    for offset, leaf_hash in enumerate(leaf_hashes):
        level, idx, h = 0, size + offset, leaf_hash
        new[(0, idx)] = h
        while idx & 1:
            left = new.get((level, idx - 1)) or nodes[(level, idx - 1)]
            h = tlog.node_hash(left, h)
            level, idx = level + 1, idx >> 1
            new[(level, idx)] = h
    new_size = size + len(leaf_hashes)
    known = {**nodes, **new}
    return new_size, new, compute(lambda h: tlog.mth_from(new_size, h), known)
