"""What the broker keeps of a transfer, and how: keyed pseudonyms, the protocol entry (§ 9
IDNrG: who asked whom for what, when, on which basis) and the sealed outbox record.

A transfer record names citizens by IdNr: the cockpit needs them to file the record in each
citizen's log. The broker keeps that record only until the cockpit has it, and never in plain:

* pending  - ``record`` is the TransferRecord JSON sealed with AES-256-GCM under the broker's
  outbox key (``broker-outbox.key``), random 96-bit nonce, AAD the transfer id (a blob moved
  to another row does not open); opened only to deliver it;
* always   - ``protocol`` is the protocol entry: the same facts with every citizen replaced by
  the broker's keyed pseudonym (HMAC-SHA256, ``broker-pseudonym.key``, the one consents use);
* delivered - ``record`` is destroyed in the transaction that marks the row delivered; the
  protocol entry stays for two years (§ 9 (3) IDNrG, broker/retention.py).

Every pseudonym an entry names is also a row of ``broker_protocol_subject`` (``subjects``),
written with it and deleted with it: the lookup by citizen of the broker's source interface
(broker/source.py, decision 0035).

Decision 0031.
"""

import hashlib
import os
from datetime import datetime

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from einmal.domain.transfer import RegisterRef, ServiceRef, TransferRecord

__all__ = ["PROTOCOL_VERSION", "ConcernedRef", "OutboxSeal", "ProtocolEntry", "Pseudonyms",
           "SealError", "SealedTransfer", "protocol_entry", "subjects"]

PROTOCOL_VERSION = 1
_NONCE = 12
_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_encode = msgspec.json.Encoder().encode


class SealError(Exception):
    """A sealed record does not open: another key, another row, or damaged bytes."""


class Pseudonyms:
    """The broker's keyed pseudonym of an IdNr: HMAC-SHA256 with ``broker-pseudonym.key``, hex.
    What the broker's store keeps instead of an IdNr (consents, previews, protocol)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            msg = "the pseudonym key must be at least 32 bytes"
            raise ValueError(msg)
        # HMAC (RFC 2104) from its two keyed hash states, made once: a call copies them (C
        # objects) - 0.6 us, where copying an hmac.HMAC (a Python object around them) took
        # 1.1 us; a consent's proof request takes about seven. Pinned to hmac.new by a test.
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def __call__(self, idnr: str) -> str:
        inner = self._inner.copy()
        inner.update(idnr.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class ConcernedRef(msgspec.Struct, frozen=True, kw_only=True):
    """A citizen the transfer is about: keyed pseudonym and relation (as in the record)."""

    ref: str
    relation: str


class ProtocolEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One transfer as the broker's protocol keeps it (§ 9 (1) IDNrG): who asked (service),
    whom (register), for what (proof type, data categories, purpose), when, on which basis
    (legal basis, consent) and with which outcome - the citizens only as keyed pseudonyms.

    Left out: IdNrs, the proof's values (never in a record) and the service's free-text
    correlation id (it might carry anything)."""

    v: int = PROTOCOL_VERSION
    id: str
    occurred_at: datetime
    outcome: str
    error_type: str | None = None
    service: ServiceRef
    register: RegisterRef | None = None
    proof_type: str
    data_categories: tuple[str, ...] = ()
    purpose: str
    legal_basis: str = ""
    consent_id: str | None = None
    subject: str
    concerned: tuple[ConcernedRef, ...] = ()
    retention_until: datetime | None = None


def protocol_entry(record: TransferRecord, pseudonym: Pseudonyms) -> ProtocolEntry:
    # one HMAC per person: the subject is usually among the concerned too
    refs = {idnr: pseudonym(idnr)
            for idnr in dict.fromkeys((record.subject, *(c.idnr for c in record.concerned)))}
    return ProtocolEntry(
        id=record.id, occurred_at=record.occurred_at, outcome=record.outcome.value,
        error_type=record.error_type, service=record.service, register=record.register,
        proof_type=record.proof_type, data_categories=record.data_categories,
        purpose=record.purpose, legal_basis=record.legal_basis, consent_id=record.consent_id,
        subject=refs[record.subject],
        concerned=tuple(ConcernedRef(ref=refs[c.idnr], relation=c.relation)
                        for c in record.concerned),
        retention_until=record.retention_until)


def subjects(entry: ProtocolEntry) -> tuple[tuple[str, str], ...]:
    """(pseudonym, relation) of everyone ``entry`` names, once each: the subject "self"
    unless the record names them otherwise."""
    found = {c.ref: c.relation for c in entry.concerned}
    found.setdefault(entry.subject, "self")
    return tuple(found.items())


class SealedTransfer(msgspec.Struct, frozen=True):
    """A transfer record as a store writes it: sealed record, protocol entry JSON, and the
    entry's subjects (pseudonym, relation)."""

    sealed: bytes
    protocol: bytes
    subjects: tuple[tuple[str, str], ...]


class OutboxSeal:
    """Seals a transfer record for the outbox and opens it for delivery (module docstring).

    ``seal`` costs one AES-GCM encryption, an HMAC per person named and two JSON encodings:
    microseconds, done in the group commit's encode step (no extra round trip)."""

    def __init__(self, *, key: bytes, pseudonyms: Pseudonyms) -> None:
        if len(key) != 32:
            msg = "the outbox key must be 32 bytes (AES-256)"
            raise ValueError(msg)
        self._aead = AESGCM(key)
        self.pseudonym = pseudonyms

    def seal(self, record: TransferRecord) -> tuple[bytes, bytes]:
        """(the sealed record JSON, the protocol entry JSON) of ``record``."""
        return self.seal_json(record.id, _encode(record)), self.protocol(record)

    def protocol(self, record: TransferRecord) -> bytes:
        """The protocol entry JSON of ``record`` (no IdNr: keyed pseudonyms)."""
        return _encode(protocol_entry(record, self.pseudonym))

    def entry(self, record: TransferRecord) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        """(the protocol entry JSON, its subjects) of ``record``."""
        entry = protocol_entry(record, self.pseudonym)
        return _encode(entry), subjects(entry)

    def seal_transfer(self, record: TransferRecord) -> SealedTransfer:
        """``seal`` and the entry's subjects: what a store writes for ``record``."""
        protocol, refs = self.entry(record)
        return SealedTransfer(self.seal_json(record.id, _encode(record)), protocol, refs)

    def seal_json(self, transfer_id: str, plain: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, transfer_id.encode())

    def open(self, transfer_id: str, sealed: bytes) -> bytes:
        """The record JSON; ``SealError`` if it does not open (wrong key, row or bytes)."""
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], transfer_id.encode())
        except (InvalidTag, ValueError) as exc:
            msg = f"the sealed transfer record {transfer_id} does not open"
            raise SealError(msg) from exc
