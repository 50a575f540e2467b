"""Receipts: one transfer-log entry, its inclusion proof and the published (cosigned)
checkpoint in one file, in the C2SP ``tlog-proof`` format - what a citizen keeps to prove later
what was logged about them. Pure and offline (stdlib, cryptography, ``einmal_client``).

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's exact leaf bytes>
    index <log index>
    <base64 inclusion proof hash, the leaf's sibling first>     (0..63 lines)
    <empty line>
    <the checkpoint: origin, size, root, [extension lines], empty line, signature lines>

tlog-proof leaves the ``extra`` line opaque and unauthenticated; a receipt carries the entry's
leaf bytes there, and they are authenticated by hashing them (RFC 9162 leaf hash) into the
leaf the inclusion proof starts from - never trusted before that.

Errors: ``ReceiptError`` (one message saying what failed, for the CLI's one line).
"""

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from einmal_client import tlog
from einmal_client.cosignature import (
    NoteSignature,
    WitnessKey,
    checkpoint_text,
    parse_witness_vkey,
    split_note,
    verify_cosignature,
    verify_cosignatures,
)

__all__ = ["MAX_PROOF_LINES", "MAX_RECEIPT_BYTES", "RECEIPT_HEADER", "RECEIPT_SUFFIX", "Receipt",
           "ReceiptError", "VerifiedReceipt", "format_receipt", "parse_receipt", "verify_receipt"]

RECEIPT_HEADER = "c2sp.org/tlog-proof@v1"
#: tlog-proof: proofs SHOULD be stored with this file extension
RECEIPT_SUFFIX = ".tlog-proof"
#: an inclusion proof in a tree of up to 2^63 entries has at most 63 hashes
MAX_PROOF_LINES = 63
#: a receipt is a few KB; a bigger file is not one (read no further)
MAX_RECEIPT_BYTES = 256 * 1024
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,18})")


class ReceiptError(ValueError):
    """The receipt is malformed or does not verify; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parsed receipt; nothing in it is verified yet (``verify_receipt`` does that)."""

    index: int
    proof: tuple[bytes, ...]
    #: the checkpoint as a signed note, cosignatures included
    note: str
    checkpoint: tlog.Checkpoint
    #: the entry's exact leaf bytes (the ``extra`` line), if present
    leaf: bytes | None


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a verified receipt shows."""

    index: int
    checkpoint: tlog.Checkpoint
    #: the entry as logged (the leaf's JSON)
    entry: dict[str, Any]
    #: whether the log's signature was checked (a verifier key was given)
    log_signature_checked: bool
    #: the witnesses whose cosignatures verified, with their cosignature times (POSIX s)
    cosigned_by: dict[str, int]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _canonical_b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        msg = f"{what} is not valid base64"
        raise ReceiptError(msg) from exc
    if _b64(raw) != text:
        msg = f"{what} is not in canonical base64"
        raise ReceiptError(msg)
    return raw


def format_receipt(*, index: int, proof: Sequence[bytes], note: str,
                   leaf: bytes | None = None) -> str:
    """The receipt of the entry at ``index``: its inclusion ``proof`` in the tree of the signed
    (and cosigned) checkpoint ``note``, with the entry's ``leaf`` bytes as extra data."""
    lines = [RECEIPT_HEADER]
    if leaf is not None:
        lines.append(f"extra {_b64(leaf)}")
    lines.append(f"index {index}")
    lines.extend(_b64(h) for h in proof)
    return "\n".join(lines) + "\n\n" + note


def parse_receipt(unverified: str | bytes) -> Receipt:
    """A receipt's text (or bytes) -> Receipt, strictly; ``ReceiptError`` for anything else."""
    if isinstance(unverified, bytes):
        if len(unverified) > MAX_RECEIPT_BYTES:
            msg = f"not a receipt: larger than {MAX_RECEIPT_BYTES // 1024} KiB"
            raise ReceiptError(msg)
        try:
            unverified = unverified.decode("utf-8")
        except UnicodeDecodeError as exc:
            msg = "not a receipt: not UTF-8 text"
            raise ReceiptError(msg) from exc
    head, blank, note = unverified.partition("\n\n")
    lines = head.split("\n")
    if not blank or lines[0] != RECEIPT_HEADER:
        msg = (f"not a receipt: the first line is {RECEIPT_HEADER!r}, and an empty line ends "
               "the proof")
        raise ReceiptError(msg)
    rest = lines[1:]
    leaf = None
    if rest and rest[0].startswith("extra "):
        leaf = _canonical_b64(rest.pop(0)[len("extra "):], "the extra data (the entry)")
    found = _INDEX.fullmatch(rest[0]) if rest else None
    if found is None:
        msg = "the line after the header (and extra data) is 'index <n>', decimal, no leading 0"
        raise ReceiptError(msg)
    hashes = rest[1:]
    if len(hashes) > MAX_PROOF_LINES:
        msg = f"an inclusion proof has at most {MAX_PROOF_LINES} hashes, not {len(hashes)}"
        raise ReceiptError(msg)
    proof = []
    for number, line in enumerate(hashes, start=1):
        value = _canonical_b64(line, f"inclusion proof line {number}")
        if len(value) != 32:
            msg = f"inclusion proof line {number} is not a 32-byte hash"
            raise ReceiptError(msg)
        proof.append(value)
    try:
        text, _ = split_note(note)
        checkpoint = checkpoint_text(text)
    except tlog.NoteError as exc:
        msg = f"the checkpoint is malformed: {exc}"
        raise ReceiptError(msg) from exc
    return Receipt(index=int(found[1]), proof=tuple(proof), note=note, checkpoint=checkpoint,
                   leaf=leaf)


def _check_log_signature(note: str, verifier_keys: Sequence[str]) -> None:
    """One of the log's keys signed the note, and the checkpoint's origin is that key's log."""
    origin = checkpoint_text(split_note(note)[0]).origin
    failures: list[str] = []
    for vkey in verifier_keys:
        try:
            name, key = tlog.parse_verifier_key(vkey)
        except tlog.NoteError as exc:
            msg = f"the log's verifier key is malformed: {exc}"
            raise ReceiptError(msg) from exc
        if name != origin:
            failures.append(f"the key is for log {name!r}, the checkpoint is of {origin!r}")
            continue
        try:
            tlog.verify_note(note, name, key)
        except tlog.NoteError as exc:
            failures.append(str(exc))
            continue
        return
    msg = "the log's signature does not verify: " + "; ".join(failures)
    raise ReceiptError(msg)


def _cosignature_times(note: str, keys: Sequence[WitnessKey]) -> dict[str, int]:
    text, signatures = split_note(note)
    times: dict[str, int] = {}
    for key in keys:
        for signature in signatures:
            if _by(signature, key):
                times[key.name] = verify_cosignature(text, signature, key)
    return times


def _by(signature: NoteSignature, key: WitnessKey) -> bool:
    return signature.name == key.name and signature.key_id == key.key_id


def verify_receipt(unverified: str | bytes, *, verifier_keys: Sequence[str] = (),
                   witness_keys: Sequence[str] = (), quorum: int | None = None,
                   ) -> VerifiedReceipt:
    """Check a receipt offline; ``ReceiptError`` says what failed.

    1. it parses as a tlog-proof whose checkpoint is a tlog-checkpoint;
    2. one of ``verifier_keys`` (the log's, pinned) signed the checkpoint;
    3. at least ``quorum`` (default: all) of the ``witness_keys`` cosigned it;
    4. the extra data (the entry's bytes) is a JSON object whose leaf hash, with the inclusion
       proof, leads to the checkpoint's root at ``index``.

    NOTE: at least one trust anchor is required - the log's key or witness keys: a receipt
    checked against nothing proves nothing (anyone can make a self-consistent one)."""
    if not verifier_keys and not witness_keys:
        msg = ("give the log's verifier key or witness keys: without a key the receipt proves "
               "nothing")
        raise ReceiptError(msg)
    receipt = parse_receipt(unverified)
    if verifier_keys:
        _check_log_signature(receipt.note, verifier_keys)
    cosigned: dict[str, int] = {}
    if witness_keys:
        try:
            keys = [WitnessKey(*parse_witness_vkey(vkey)) for vkey in witness_keys]
        except tlog.NoteError as exc:
            msg = f"a witness key is malformed: {exc}"
            raise ReceiptError(msg) from exc
        wanted = len({key.name for key in keys}) if quorum is None else quorum
        try:
            verify_cosignatures(receipt.note, keys, wanted)
            cosigned = _cosignature_times(receipt.note, keys)
        except ValueError as exc:  # CosignatureError, or a quorum out of range
            msg = f"witnesses: {exc}"
            raise ReceiptError(msg) from exc
    if receipt.leaf is None:
        msg = "the receipt carries no entry (no extra line): there is nothing to check"
        raise ReceiptError(msg)
    try:
        tlog.verify_inclusion(receipt.index, receipt.checkpoint.size,
                              tlog.leaf_hash(receipt.leaf), receipt.proof,
                              receipt.checkpoint.root)
    except tlog.ProofError as exc:
        msg = f"the entry is not in the checkpoint's tree: {exc}"
        raise ReceiptError(msg) from exc
    try:
        entry = msgspec.json.decode(receipt.leaf)
    except msgspec.DecodeError as exc:
        msg = "the logged entry is not JSON"
        raise ReceiptError(msg) from exc
    if not isinstance(entry, dict):
        msg = "the logged entry is not a JSON object"
        raise ReceiptError(msg)
    return VerifiedReceipt(index=receipt.index, checkpoint=receipt.checkpoint, entry=entry,
                           log_signature_checked=bool(verifier_keys), cosigned_by=cosigned)
