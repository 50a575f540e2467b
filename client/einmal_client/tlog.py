"""Transparency-log primitives, pure and offline: RFC 9162 §2.1 Merkle trees and proofs, and
C2SP ``tlog-checkpoint`` notes in the C2SP ``signed-note`` format (Ed25519).

Used by the cockpit (to build and sign) and by ``einmal audit verify`` (to check, offline).
Every hash is 32 raw bytes; hex or base64 only at the edges.
"""

import base64
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "Checkpoint", "CompactRange", "NoteError", "ProofError", "consistency_proof",
    "format_checkpoint",
    "inclusion_path", "key_id", "leaf_hash", "mth", "mth_from", "node_hash", "parse_checkpoint",
    "parse_verifier_key", "root_from_inclusion", "sign_note", "verifier_key", "verify_consistency",
    "verify_inclusion", "verify_note",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
_ED25519 = b"\x01"  # signed-note signature type for Ed25519
_DASH = "\u2014"    # the em dash that starts a signature line


class ProofError(ValueError):
    """A proof does not verify (or its parameters are out of range)."""


class NoteError(ValueError):
    """A signed note or checkpoint is malformed or its signature does not verify."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


HashAt = Callable[[int, int], bytes]
"""``subtree(start, end)``: MTH of leaves [start, end) (a perfect, aligned subtree or any range)."""


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes (in memory; for tests and small trees)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _range_hash(lambda s, e: _list_subtree(leaf_hashes, s, e), 0, len(leaf_hashes))


def _list_subtree(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    if end - start == 1:
        return hashes[start]
    k = _split(end - start)
    return node_hash(_list_subtree(hashes, start, start + k), _list_subtree(hashes, start + k, end))


def _range_hash(subtree: HashAt, start: int, end: int) -> bytes:
    n = end - start
    if n & (n - 1) == 0:  # perfect subtree: stored or computed by ``subtree``
        return subtree(start, end)
    k = _split(n)
    return node_hash(_range_hash(subtree, start, start + k), _range_hash(subtree, start + k, end))


def mth_from(size: int, subtree: HashAt) -> bytes:
    """MTH of the first ``size`` leaves from stored perfect subtrees."""
    return EMPTY_ROOT if size == 0 else _range_hash(subtree, 0, size)


def inclusion_path(index: int, size: int, subtree: HashAt) -> list[bytes]:
    """PATH(m, D[0:n]) of RFC 9162 §2.1.3.1, bottom-up."""
    if not 0 <= index < size:
        msg = f"index {index} is outside a tree of size {size}"
        raise ProofError(msg)
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(_range_hash(subtree, start + k, end))
            end = start + k
        else:
            path.append(_range_hash(subtree, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(old: int, new: int, subtree: HashAt) -> list[bytes]:
    """PROOF(m, D[0:n]) of RFC 9162 §2.1.4.1."""
    if not 0 < old <= new:
        msg = f"no consistency proof from size {old} to {new}"
        raise ProofError(msg)
    return _subproof(old, 0, new, True, subtree)


def _subproof(m: int, start: int, end: int, whole: bool, subtree: HashAt) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [_range_hash(subtree, start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, start, start + k, whole, subtree),
                _range_hash(subtree, start + k, end)]
    return [*_subproof(m - k, start + k, end, False, subtree),
            _range_hash(subtree, start, start + k)]


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root an inclusion path leads to (``leaf`` is the leaf hash)."""
    if not 0 <= index < size:
        msg = f"index {index} is outside a tree of size {size}"
        raise ProofError(msg)
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            msg = "the inclusion path is too long"
            raise ProofError(msg)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        msg = "the inclusion path is too short"
        raise ProofError(msg)
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes,
                     ) -> None:
    if root_from_inclusion(index, size, leaf, path) != root:
        msg = f"entry {index} is not included in the tree of size {size} with this root"
        raise ProofError(msg)


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2."""
    if old == new:
        if proof or old_root != new_root:
            msg = "trees of equal size must have equal roots and an empty proof"
            raise ProofError(msg)
        return
    if not 0 < old < new or not proof:
        msg = f"no valid consistency proof from size {old} to {new}"
        raise ProofError(msg)
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            msg = "the consistency proof is too long"
            raise ProofError(msg)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        msg = f"the log of size {new} is not an append-only extension of the log of size {old}"
        raise ProofError(msg)


class CompactRange:
    """Root of a growing tree in O(log n) memory: append leaf hashes, ask for the root."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (size of perfect subtree, hash)
        self.size = 0

    def append(self, leaf: bytes) -> None:
        size, h = 1, leaf
        while self._stack and self._stack[-1][0] == size:
            left_size, left = self._stack.pop()
            h = node_hash(left, h)
            size += left_size
        self._stack.append((size, h))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


# -- C2SP tlog-checkpoint in a C2SP signed note --------------------------------------------------

@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def format_checkpoint(checkpoint: Checkpoint) -> str:
    root = base64.b64encode(checkpoint.root).decode()
    return f"{checkpoint.origin}\n{checkpoint.size}\n{root}\n"


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or not lines[0]:
        msg = "a checkpoint has an origin, a size and a root hash line"
        raise NoteError(msg)
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except ValueError as exc:
        msg = "the checkpoint's size or root hash is malformed"
        raise NoteError(msg) from exc
    if size < 0 or str(size) != lines[1] or len(root) != 32:
        msg = "the checkpoint's size or root hash is malformed"
        raise NoteError(msg)
    return Checkpoint(origin=lines[0], size=size, root=root)


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """signed-note key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + _raw(public_key)).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """``<name>+<hex key id>+<base64(0x01 || public key)>``."""
    encoded = base64.b64encode(_ED25519 + _raw(public_key)).decode()
    return f"{name}+{key_id(name, public_key).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, Ed25519PublicKey]:
    try:
        name, hex_id, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
        if raw[:1] != _ED25519 or len(raw) != 33:
            raise ValueError("not an Ed25519 verifier key")
        key = Ed25519PublicKey.from_public_bytes(raw[1:])
    except ValueError as exc:
        msg = "the verifier key is malformed (want <name>+<hex key id>+<base64 key>)"
        raise NoteError(msg) from exc
    if key_id(name, key).hex() != hex_id:
        msg = "the verifier key's key id does not match its key"
        raise NoteError(msg)
    return name, key


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    if not text.endswith("\n"):
        msg = "a note's text ends with a newline"
        raise NoteError(msg)
    signature = private_key.sign(text.encode())
    blob = base64.b64encode(key_id(name, private_key.public_key()) + signature).decode()
    return f"{text}\n{_DASH} {name} {blob}\n"


def verify_note(note: str, name: str, public_key: Ed25519PublicKey) -> str:
    """Return the note's text if one signature line verifies with this key, else NoteError."""
    text, sep, signatures = note.rpartition("\n\n")
    if not sep or not signatures.endswith("\n"):
        msg = "a signed note is its text, a blank line and signature lines"
        raise NoteError(msg)
    text += "\n"
    wanted = key_id(name, public_key)
    for line in signatures[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            msg = f"malformed signature line: {line[:60]!r}"
            raise NoteError(msg)
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError as exc:
            msg = "malformed signature encoding"
            raise NoteError(msg) from exc
        if parts[1] != name or blob[:4] != wanted:
            continue
        try:
            public_key.verify(blob[4:], text.encode())
        except InvalidSignature as exc:
            msg = f"the signature of {name} does not verify"
            raise NoteError(msg) from exc
        return text
    msg = f"the note carries no signature by {name} with key id {wanted.hex()}"
    raise NoteError(msg)


def hashes_b64(hashes: Iterable[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]
