"""The add-checkpoint request of C2SP tlog-witness, as pure functions: parse the body, check the
log's signature, check consistency with the checkpoint last cosigned.

    old <size>\\n
    <base64 consistency proof hash>\\n     (0..63 lines)
    \\n
    <checkpoint note: origin, size, root hash, extension lines, blank line, signature lines>

Checks follow the spec's order and statuses (``witness.errors``); where it leaves a case open,
the C2SP editor's draft is followed (decision 0026): proof lines and root hashes in canonical
base64 of exactly 32 bytes, a size-zero checkpoint carries the empty tree's root (422), a
signature by a trusted key that fails to verify rejects the note (403).
"""

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from einmal_client.cosignature import NoteSignature, checkpoint_text, split_note
from einmal_client.tlog import (
    Checkpoint,
    NoteError,
    ProofError,
    key_id,
    parse_verifier_key,
    verify_consistency,
)
from witness.errors import (
    ForkError,
    InconsistentCheckpointError,
    MalformedRequestError,
    StaleSizeError,
    UntrustedCheckpointError,
    WitnessConfigError,
)

__all__ = ["EMPTY_ROOT", "MAX_PROOF_LINES", "MAX_TREE_SIZE", "AddCheckpoint", "LogKey",
           "Recorded", "check_consistency", "parse_add_checkpoint", "parse_log_keys",
           "verify_log_signature"]

MAX_PROOF_LINES = 63
MAX_TREE_SIZE = 2**63 - 1  # sizes are stored as signed 64-bit integers
EMPTY_ROOT = hashlib.sha256(b"").digest()
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class LogKey:
    """A log's Ed25519 note key (signed-note type 0x01); ``name`` is its origin line."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed request; ``text`` (the checkpoint's note text) is unverified until
    ``verify_log_signature`` passes."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: Checkpoint
    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the witness last cosigned for a log."""

    size: int
    root: bytes


def parse_log_keys(vkeys: Iterable[str]) -> dict[str, tuple[LogKey, ...]]:
    """``<origin>+<hex key id>+base64(0x01 || key)`` vkeys -> {origin: keys}; several keys per
    origin are allowed (a log's retired and current key)."""
    logs: dict[str, list[LogKey]] = {}
    for vkey in vkeys:
        try:
            name, public_key = parse_verifier_key(vkey)
        except NoteError as exc:
            msg = f"log key {vkey[:80]!r}: {exc}"
            raise WitnessConfigError(msg) from exc
        if not name or any(c.isspace() for c in name):
            msg = f"log key {vkey[:80]!r}: the key name (the log's origin) has no spaces"
            raise WitnessConfigError(msg)
        key = LogKey(name=name, key_id=key_id(name, public_key), public_key=public_key)
        known = logs.setdefault(name, [])
        if all(k.key_id != key.key_id for k in known):
            known.append(key)
    if not logs:
        msg = "a witness follows at least one log: give its key (--log-key)"
        raise WitnessConfigError(msg)
    return {origin: tuple(keys) for origin, keys in logs.items()}


def _hash_line(line: str) -> bytes:
    """One proof line: standard base64 of exactly 32 bytes, in its one canonical spelling."""
    try:
        raw = base64.b64decode(line, validate=True) if len(line) == 44 else b""
    except ValueError:
        raw = b""
    if len(raw) != 32 or base64.b64encode(raw).decode() != line:
        msg = "a consistency proof line is the canonical base64 of one 32-byte hash"
        raise MalformedRequestError(msg)
    return raw


def parse_add_checkpoint(unverified_body: bytes) -> AddCheckpoint:
    """The request body -> AddCheckpoint; MalformedRequestError (400) for anything else."""
    try:
        body = unverified_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = "the request body is UTF-8 text"
        raise MalformedRequestError(msg) from exc
    head, blank, note = body.partition("\n\n")
    if not blank:
        msg = "the request is an old size line, proof lines, an empty line and a checkpoint"
        raise MalformedRequestError(msg)
    lines = head.split("\n")
    old = _OLD_LINE.fullmatch(lines[0])
    if old is None:
        msg = "the first line is 'old <size>' (decimal, no leading zeroes)"
        raise MalformedRequestError(msg)
    old_size = int(old[1])
    if len(lines) - 1 > MAX_PROOF_LINES:
        msg = f"at most {MAX_PROOF_LINES} consistency proof lines"
        raise MalformedRequestError(msg)
    proof = tuple(_hash_line(line) for line in lines[1:])
    try:
        text, signatures = split_note(note)
        checkpoint = checkpoint_text(text)
    except NoteError as exc:
        msg = f"the checkpoint is malformed: {exc}"
        raise MalformedRequestError(msg) from exc
    if old_size > MAX_TREE_SIZE or checkpoint.size > MAX_TREE_SIZE:
        msg = f"tree sizes are at most {MAX_TREE_SIZE}"
        raise MalformedRequestError(msg)
    return AddCheckpoint(old_size=old_size, proof=proof, checkpoint=checkpoint, text=text,
                         signatures=tuple(signatures))


def verify_log_signature(request: AddCheckpoint, keys: Sequence[LogKey]) -> list[NoteSignature]:
    """The request's signature lines by the trusted ``keys`` (all verified), or
    UntrustedCheckpointError (403): none is there, or one of them does not verify. Lines by
    other keys (other witnesses' cosignatures among them) are ignored."""
    trusted = {(key.name, key.key_id): key for key in keys}
    verified: list[NoteSignature] = []
    message = request.text.encode()
    for signature in request.signatures:
        key = trusted.get((signature.name, signature.key_id))
        if key is None:
            continue
        try:
            key.public_key.verify(signature.signature, message)
        except InvalidSignature as exc:
            msg = f"the signature by the log's key {key.name} ({key.key_id.hex()}) is invalid"
            raise UntrustedCheckpointError(msg) from exc
        verified.append(signature)
    if not verified:
        msg = "the checkpoint carries no signature by a key this witness trusts for its origin"
        raise UntrustedCheckpointError(msg)
    return verified


def check_consistency(request: AddCheckpoint, recorded: Recorded | None) -> None:
    """Whether ``request`` may be cosigned after ``recorded`` (None: nothing cosigned yet).

    The statuses in the order tlog-witness gives them: old > size (400); old is not the size
    last cosigned (409, with that size); a bad consistency proof (422); same size, another
    root (409, a fork)."""
    checkpoint = request.checkpoint
    if request.old_size > checkpoint.size:
        msg = f"old size {request.old_size} is larger than the checkpoint's {checkpoint.size}"
        raise MalformedRequestError(msg)
    latest = recorded.size if recorded is not None else 0
    if request.old_size != latest:
        raise StaleSizeError(latest)
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        msg = "a checkpoint of size 0 carries the empty tree's root, SHA-256 of nothing"
        raise InconsistentCheckpointError(msg)
    if recorded is None or request.old_size == 0:  # nothing to be consistent with
        if request.proof:
            msg = "the consistency proof from size 0 is empty"
            raise InconsistentCheckpointError(msg)
        return
    if checkpoint.size == recorded.size:
        if checkpoint.root != recorded.root:
            msg = (f"a checkpoint of size {checkpoint.size} with another root hash than the one "
                   "cosigned: the log forked")
            raise ForkError(msg)
        if request.proof:
            msg = "the consistency proof between equal sizes is empty"
            raise InconsistentCheckpointError(msg)
        return
    try:
        verify_consistency(recorded.size, checkpoint.size, recorded.root, checkpoint.root,
                           request.proof)
    except ProofError as exc:
        msg = (f"the consistency proof from size {recorded.size} to {checkpoint.size} does "
               "not verify")
        raise InconsistentCheckpointError(msg) from exc

