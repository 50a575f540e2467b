"""Witness cosignatures after C2SP ``tlog-cosignature`` (cosignature/v1, Ed25519, signature type
0x04), and the strict C2SP ``signed-note`` parsing they need. Pure and offline.

A witness that has checked a checkpoint to be consistent with everything it saw before signs

    cosignature/v1\\n
    time <POSIX seconds>\\n
    <the checkpoint's note text, extension lines included>

and publishes the signature as a note signature line ``— <name> base64(key id || timestamp ||
Ed25519 signature)``, with key id = SHA-256(name || 0x0A || 0x04 || public key)[:4] and the
timestamp as a big-endian u64. Its verifier key ("vkey") is ``<name>+<hex key id>+base64(0x04 ||
public key)``.

Errors: ``NoteError`` (from ``tlog``) for a malformed note, checkpoint or key;
``CosignatureError`` (a ``NoteError``) when cosignatures do not verify or fall below a quorum.
"""

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from einmal_client.tlog import Checkpoint, NoteError, format_checkpoint, parse_checkpoint

__all__ = [
    "COSIGNATURE_V1", "MAX_NOTE_SIGNATURES", "CosignatureError", "NoteSignature", "WitnessKey",
    "append_signatures", "checkpoint_text", "cosign", "cosignature_key_id", "cosigned_message",
    "parse_signature_line", "parse_witness_vkey", "split_note", "verify_cosignature",
    "verify_cosignatures", "witness_vkey",
]

COSIGNATURE_V1 = 0x04
"""The signed-note signature type of a timestamped Ed25519 witness cosignature."""

MAX_NOTE_SIGNATURES = 100
"""Signature lines read from one note (signed-note: accept at least 16; Go's note.Open: 100)."""

_TYPE = bytes([COSIGNATURE_V1])
_DASH = "\u2014"
_MAX_TIMESTAMP = 2**63 - 1
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


class CosignatureError(NoteError):
    """Cosignatures are missing, do not verify, or fall below the required quorum."""


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a signed note: ``— <name> base64(key_id || signature)``."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_DASH} {self.name} {blob}\n"


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """A witness's cosignature/v1 verifier key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    @property
    def vkey(self) -> str:
        return witness_vkey(self.name, self.public_key)


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_name(name: str) -> None:
    """signed-note: key names are non-empty, without Unicode spaces or plus signs."""
    if not name or "+" in name or any(c.isspace() or c < " " for c in name):
        msg = f"a key name is non-empty, without spaces or '+': {name[:60]!r}"
        raise NoteError(msg)


def _b64decode_canonical(text: str) -> bytes:
    """Standard base64 (RFC 4648 §4), and only its one canonical spelling of the bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        msg = "malformed base64"
        raise NoteError(msg) from exc
    if base64.b64encode(raw).decode() != text:
        msg = "non-canonical base64"
        raise NoteError(msg)
    return raw


# -- keys ----------------------------------------------------------------------------------------

def cosignature_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """SHA-256(name || 0x0A || 0x04 || 32-byte Ed25519 public key)[:4] (tlog-cosignature)."""
    return hashlib.sha256(name.encode() + b"\n" + _TYPE + _raw(public_key)).digest()[:4]


def witness_vkey(name: str, public_key: Ed25519PublicKey) -> str:
    """``<name>+<hex key id>+base64(0x04 || public key)``: what a witness publishes."""
    _check_name(name)
    encoded = base64.b64encode(_TYPE + _raw(public_key)).decode()
    return f"{name}+{cosignature_key_id(name, public_key).hex()}+{encoded}"


def parse_witness_vkey(vkey: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """(name, key id, public key) of a cosignature/v1 vkey; NoteError if it is anything else."""
    name, _, rest = vkey.strip().partition("+")
    hex_id, _, encoded = rest.partition("+")
    _check_name(name)
    if not _KEY_ID_HEX.fullmatch(hex_id) or not encoded:
        msg = "a witness key is <name>+<8 hex digits key id>+<base64 key>"
        raise NoteError(msg)
    raw = _b64decode_canonical(encoded)
    if raw[:1] != _TYPE or len(raw) != 33:
        kind = f"signature type 0x{raw[0]:02x}" if raw else "an empty key"
        msg = (f"not a cosignature/v1 witness key ({kind}; want type 0x04 and a 32-byte "
               "Ed25519 key)")
        raise NoteError(msg)
    public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
    key_id = cosignature_key_id(name, public_key)
    if key_id.hex() != hex_id:
        msg = "the witness key's key id does not match its name and key"
        raise NoteError(msg)
    return name, key_id, public_key


# -- signed notes --------------------------------------------------------------------------------

def parse_signature_line(line: str) -> NoteSignature:
    """``— <name> <base64>`` (without its newline) -> NoteSignature."""
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != _DASH:
        msg = f"malformed signature line: {line[:60]!r}"
        raise NoteError(msg)
    _check_name(parts[1])
    blob = _b64decode_canonical(parts[2])
    if len(blob) < 5:
        msg = "a signature is a 4-byte key id and the signature bytes"
        raise NoteError(msg)
    return NoteSignature(name=parts[1], key_id=blob[:4], signature=blob[4:])


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """A signed note -> (its text, with the final newline; its signatures), strictly.

    signed-note: the text ends in a newline, a blank line follows (the *last* blank line of the
    note), then one or more signature lines, each ending in a newline; no control characters
    other than the newline anywhere."""
    if any(c < " " and c != "\n" for c in note):
        msg = "a signed note contains no control characters other than newlines"
        raise NoteError(msg)
    split = note.rfind("\n\n")
    if split < 0:
        msg = "a signed note is its text, a blank line and signature lines"
        raise NoteError(msg)
    text, signatures = note[:split + 1], note[split + 2:]
    if not signatures.endswith("\n"):
        msg = "a signed note ends with a signature line and a newline"
        raise NoteError(msg)
    lines = signatures[:-1].split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        msg = f"more than {MAX_NOTE_SIGNATURES} signatures on a note"
        raise NoteError(msg)
    return text, [parse_signature_line(line) for line in lines]


def append_signatures(note: str, signature_lines: str) -> str:
    """The note with more signature lines (e.g. a witness's answer) added after its own."""
    split_note(note)
    lines = signature_lines.split("\n")
    if not signature_lines.endswith("\n") or len(lines) < 2:
        msg = "signature lines each end with a newline"
        raise NoteError(msg)
    for line in lines[:-1]:
        parse_signature_line(line)
    return note + signature_lines


def checkpoint_text(text: str) -> Checkpoint:
    """A checkpoint's note text, held to C2SP tlog-checkpoint exactly: origin, size (no leading
    zeroes), canonical base64 of a 32-byte root, then optional non-empty extension lines."""
    checkpoint = parse_checkpoint(text)
    head = format_checkpoint(checkpoint)
    extensions = text[len(head):] if text.startswith(head) else None
    if extensions is None or "\n\n" in "\n" + extensions:
        msg = "the checkpoint is not in its canonical form (or has an empty extension line)"
        raise NoteError(msg)
    return checkpoint


# -- cosignatures --------------------------------------------------------------------------------

def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header line, the time line and the checkpoint text."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        msg = f"a cosignature timestamp is 0..2^63-1, not {timestamp}"
        raise NoteError(msg)
    checkpoint_text(text)
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def cosign(text: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """The cosignature/v1 signature line (ending in a newline) over a checkpoint's note text."""
    _check_name(name)
    signature = private_key.sign(cosigned_message(text, timestamp))
    key_id = cosignature_key_id(name, private_key.public_key())
    return NoteSignature(name=name, key_id=key_id,
                         signature=timestamp.to_bytes(8, "big") + signature).line()


def verify_cosignature(text: str, signature: NoteSignature, key: WitnessKey) -> int:
    """The timestamp of ``signature`` if it is ``key``'s valid cosignature over ``text``."""
    if signature.name != key.name or signature.key_id != key.key_id:
        msg = f"the signature is not by witness {key.name} ({key.key_id.hex()})"
        raise CosignatureError(msg)
    if len(signature.signature) != 8 + 64:
        msg = f"the cosignature of {key.name} is not a timestamped Ed25519 signature"
        raise CosignatureError(msg)
    timestamp = int.from_bytes(signature.signature[:8], "big")
    try:
        key.public_key.verify(signature.signature[8:], cosigned_message(text, timestamp))
    except (InvalidSignature, NoteError) as exc:
        msg = f"the cosignature of {key.name} does not verify"
        raise CosignatureError(msg) from exc
    return timestamp


def _witness_keys(vkeys: Iterable[str | WitnessKey]) -> list[WitnessKey]:
    keys: dict[tuple[str, bytes], WitnessKey] = {}
    for vkey in vkeys:
        key = vkey if isinstance(vkey, WitnessKey) else WitnessKey(*parse_witness_vkey(vkey))
        keys.setdefault((key.name, key.key_id), key)
    return list(keys.values())


def verify_cosignatures(note: str, witness_vkeys: Sequence[str | WitnessKey],
                        quorum: int) -> list[str]:
    """Names of the witnesses whose cosignatures on ``note`` verify (in the order given), if
    there are at least ``quorum`` of them; else CosignatureError.

    Signature lines by keys not given are ignored (the log's own signature among them: check
    it with ``tlog.verify_note``). A line that names a given witness key but does not verify
    fails the whole note (signed-note: reject it). A witness counts once, whatever number of
    its keys are given or lines it left."""
    keys = _witness_keys(witness_vkeys)
    names = list(dict.fromkeys(key.name for key in keys))
    if not 1 <= quorum <= len(names):
        msg = f"a quorum is 1..{len(names)} of the {len(names)} witnesses given, not {quorum}"
        raise ValueError(msg)
    text, signatures = split_note(note)
    checkpoint_text(text)
    verified: set[str] = set()
    for key in keys:
        for signature in signatures:
            if signature.name == key.name and signature.key_id == key.key_id:
                verify_cosignature(text, signature, key)
                verified.add(key.name)
    found = [name for name in names if name in verified]
    if len(found) < quorum:
        missing = ", ".join(name for name in names if name not in verified)
        msg = (f"{len(found)} of the required {quorum} witness cosignatures verify "
               f"(none from: {missing})")
        raise CosignatureError(msg)
    return found
