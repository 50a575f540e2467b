"""What the proof request (broker/service.py) and the preview desk (broker/previews.py) share:
the clock, keyed pseudonyms, transfer records and their report to the outbox and the metrics,
the signed proof, and the sealed Idempotency-Key answer. Pure of storage and HTTP."""

import base64
import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.protocol import Pseudonyms
from einmal.domain.policy import Permission, PolicyDocument
from einmal.domain.registers import ProofData
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.ids import uuid7
from einmal.keys import SigningKey

__all__ = ["Notary", "TransferDraft"]

_CLAIMS_JSON = msgspec.json.Encoder()
_ANSWER_JSON = msgspec.json.Encoder()


class TransferDraft(msgspec.Struct, frozen=True, kw_only=True):
    """What a request's transfer record says before its outcome is known: built once per
    request, then turned into the record of whatever happens (``Notary.record``)."""

    proof_type: str
    purpose: str
    service: ServiceRef
    subject: str
    consent_id: str | None = None
    correlation_id: str | None = None
    #: from the service's permission, once found (a refusal for want of one has none)
    purpose_text: str = ""
    legal_basis: str = ""
    data_categories: tuple[str, ...] = ()
    retention_until: datetime | None = None

    def permitted(self, permission: Permission, now: datetime) -> "TransferDraft":
        """This draft under ``permission``: its purpose text, legal basis, fields, retention."""
        return msgspec.structs.replace(
            self, purpose_text=permission.purpose_text, legal_basis=permission.legal_basis,
            data_categories=tuple(sorted(permission.fields)),
            retention_until=now + timedelta(days=permission.retention_days))


class Notary:
    """Built once at start-up; shared by ``BrokerService`` and ``PreviewDesk``.

    ``clock`` (seconds since the epoch) is the one time source of both. ``on_committed`` is
    called after every committed transfer record (the outbox delivers soon), ``on_outcome``
    with (proof type, outcome) for the metrics; the latter may be replaced after start-up."""

    def __init__(self, *, proof_key: SigningKey, issuer: str, pseudonym_key: bytes,
                 answer_key: bytes, clock: Callable[[], float] = time.time,
                 on_committed: Callable[[], None] = lambda: None,
                 on_outcome: Callable[[str, str], None] = lambda proof_type, outcome: None,
                 ) -> None:
        self._proof_key = proof_key
        self._issuer = issuer
        self._pseudonyms = Pseudonyms(pseudonym_key)
        self._answers = AESGCM(answer_key)
        self.clock = clock
        self._on_committed = on_committed
        self.on_outcome = on_outcome
        self._service_refs: dict[str, tuple[PolicyDocument, ServiceRef]] = {}
        #: the JWS's protected header, encoded once: it is the same for every proof
        self._proof_header = _jws_header(proof_key.kid)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def transfer_id(self) -> str:
        """A new transfer id: UUIDv7, so transfer ids sort by creation time."""
        return uuid7(self.clock())

    def pseudonym(self, idnr: str) -> str:
        """The citizen's keyed pseudonym (HMAC-SHA256): what the store keeps instead."""
        return self._pseudonyms(idnr)

    def service_ref(self, document: PolicyDocument) -> ServiceRef:
        """The service as transfer records name it (built once per policy document)."""
        cached = self._service_refs.get(document.id)
        if cached is None or cached[0] is not document:
            cached = self._service_refs[document.id] = (document, ServiceRef(
                id=document.id, name=document.name, authority=document.authority,
                land=document.land))
        return cached[1]

    # -- transfer records ---------------------------------------------------------------------
    def record(self, draft: TransferDraft, outcome: Outcome, *, transfer_id: str | None = None,
               error_type: str | None = None, proof: ProofData | None = None,
               concerned: str | None = None) -> TransferRecord:
        """The transfer record of ``draft`` with this outcome, dated now. Everyone the proof
        names is concerned; the subject (or ``concerned``, if the proof does not name the
        subject) is "self". Only a delivered record names data categories."""
        subject = draft.subject
        people: list[Concerned] = []
        if proof is not None:
            for idnr in dict.fromkeys(proof.concerned):
                relation = "self" if idnr == subject else "concerned"
                people.append(Concerned(idnr=idnr, relation=relation))
        if not any(p.idnr == subject for p in people):
            people.insert(0, Concerned(idnr=concerned or subject, relation="self"))
        return TransferRecord(
            id=transfer_id or self.transfer_id(), occurred_at=self.now(), outcome=outcome,
            proof_type=draft.proof_type, purpose=draft.purpose, service=draft.service,
            subject=subject, error_type=error_type,
            data_categories=draft.data_categories if outcome is Outcome.DELIVERED else (),
            register=RegisterRef(id=proof.issuer, name=proof.issuer_name) if proof else None,
            purpose_text=draft.purpose_text, legal_basis=draft.legal_basis,
            consent_id=draft.consent_id, concerned=tuple(people),
            retention_until=draft.retention_until, correlation_id=draft.correlation_id)

    def committed(self, record: TransferRecord, outcome: str) -> None:
        """``record`` is committed: the outbox delivers it soon; the metrics count it."""
        self._on_committed()
        self.on_outcome(record.proof_type, outcome)

    # -- the signed proof ---------------------------------------------------------------------
    def sign(self, record: TransferRecord, client_id: str, proof: ProofData,
             data: Mapping[str, Any]) -> str:
        """The proof as the service gets it: a JWS over the minimised ``data``."""
        claims = {"iss": self._issuer, "aud": client_id, "sub": record.subject,
                  "iat": int(record.occurred_at.timestamp()), "jti": record.id,
                  "proof_type": record.proof_type, "purpose": record.purpose,
                  "register": {"id": proof.issuer, "name": proof.issuer_name}, "data": data}
        # The claims are encoded with msgspec (compact, UTF-8): jwt.encode's stdlib JSON
        # encoding cost more than the Ed25519 signature itself (docs/benchmarks.md,
        # 2026-11-29 second round). The compact JWS (RFC 7515) is put together here, its header
        # encoded once: byte for byte what PyJWT's PyJWS.encode makes of the same claims and
        # key (Ed25519 signatures are deterministic; tests/unit/broker/test_notary.py pins it).
        signing_input = self._proof_header + _b64url(_CLAIMS_JSON.encode(claims))
        signature = self._proof_key.private_key.sign(signing_input)
        return (signing_input + b"." + _b64url(signature)).decode("ascii")

    # -- Idempotency-Key answers --------------------------------------------------------------
    def seal_answer(self, client_id: str, key: str, answer: Mapping[str, str]) -> bytes:
        """The answer as stored for a retry: AES-GCM, bound to the client and the key."""
        nonce = os.urandom(12)
        return nonce + self._answers.encrypt(nonce, _ANSWER_JSON.encode(answer),
                                             f"{client_id}\n{key}".encode())

    def open_answer(self, client_id: str, key: str, sealed: bytes) -> dict[str, str]:
        raw = self._answers.decrypt(sealed[:12], sealed[12:], f"{client_id}\n{key}".encode())
        answer: dict[str, str] = msgspec.json.decode(raw)
        return answer


def _b64url(data: bytes) -> bytes:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _jws_header(kid: str) -> bytes:
    """The encoded protected header of a proof and the ``.`` after it: the JSON PyJWS writes
    (compact, members sorted) for ``{"alg": "EdDSA", "kid": kid, "typ": "proof+jwt"}``."""
    header = {"alg": "EdDSA", "kid": kid, "typ": "proof+jwt"}
    return _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode()) + b"."
