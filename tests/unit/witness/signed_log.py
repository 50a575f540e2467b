"""A transparency log for witness tests: leaves in memory, checkpoints signed with
``einmal_client.tlog`` exactly as the cockpit signs them, consistency proofs, request bodies."""

import base64
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal_client.tlog import (
    Checkpoint,
    consistency_proof,
    format_checkpoint,
    leaf_hash,
    mth,
    sign_note,
    verifier_key,
)

__all__ = ["SignedLog", "add_checkpoint_body"]


def add_checkpoint_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


class SignedLog:
    def __init__(self, origin: str = "log.example/transfers", seed: int = 7,
                 fork: str = "") -> None:
        self.origin = origin
        self.key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        self.leaves: list[bytes] = []
        self._fork = fork  # another history: same origin and key, other leaves

    @property
    def vkey(self) -> str:
        return verifier_key(self.origin, self.key.public_key())

    def grow(self, to: int) -> None:
        while len(self.leaves) < to:
            self.leaves.append(leaf_hash(f"{self._fork}entry {len(self.leaves)}".encode()))

    def root(self, size: int) -> bytes:
        return mth(self.leaves[:size])

    def text(self, size: int, extensions: str = "") -> str:
        self.grow(size)
        return format_checkpoint(Checkpoint(self.origin, size, self.root(size))) + extensions

    def note(self, size: int, *, key: Ed25519PrivateKey | None = None,
             name: str | None = None) -> str:
        return sign_note(self.text(size), name or self.origin, key or self.key)

    def proof(self, old: int, new: int) -> list[bytes]:
        self.grow(new)
        if old in (0, new):
            return []
        return consistency_proof(old, new, lambda start, end: mth(self.leaves[start:end]))

    def request(self, old: int, size: int) -> bytes:
        """A valid add-checkpoint body: from ``old`` to a signed checkpoint of ``size``."""
        return add_checkpoint_body(old, self.proof(old, size), self.note(size))
