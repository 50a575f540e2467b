"""Fakes for the broker's unit tests: an in-memory ``BrokerStore`` (held to the same conformance
suite as the real backends: tests/integration/test_broker_store.py), policies, a register
connector and a clock. No database, no HTTP."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.store import (
    ClaimState,
    CollectResult,
    ConsentUse,
    IdempotentAnswer,
    PendingTransfer,
    RetentionCutoffs,
    StoredConsent,
    StoredPreview,
)
from einmal.domain.policy import Permission, PolicyDocument
from einmal.domain.proofs import ProofType
from einmal.domain.registers import ConnectorError, ProofData, Requester
from einmal.domain.transfer import TransferRecord
from einmal.store import DuplicateKeyError, StoreError

_OPEN = ("pending", "accepted")
_encode = msgspec.json.Encoder().encode


@dataclass
class _Transfer:
    """A transfer row; in memory the record stays readable after delivery (``records``),
    where the real stores keep only the protocol entry: nothing here is at rest."""

    seq: int
    record: TransferRecord
    delivered_at: datetime | None = None
    attempts: int = 0


@dataclass(frozen=True)
class _Claim:
    request_hash: str
    state: str
    expires_at: datetime
    response: bytes | None = None


@dataclass
class FakeBrokerStore:
    """``BrokerStore`` in memory. ``failure``: every operation raises it (the store is down).
    It has no rate-limit buckets (those live in the SQL stores' table only) and no rows from
    before migration 0004."""

    consents: dict[str, StoredConsent] = field(default_factory=dict)
    transfers: list[_Transfer] = field(default_factory=list)
    jtis: dict[tuple[str, str], datetime] = field(default_factory=dict)
    claims: dict[tuple[str, str], _Claim] = field(default_factory=dict)
    previews: dict[str, StoredPreview] = field(default_factory=dict)
    failure: StoreError | None = None
    last_seq: int = 0

    @property
    def records(self) -> list[TransferRecord]:
        """Every committed transfer record, in commit order."""
        return [t.record for t in self.transfers]

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def create_schema(self) -> None:
        self._check()

    async def aclose(self) -> None:
        pass

    # -- client assertion replay cache -------------------------------------------------------
    async def remember_jti(self, client_id: str, jti: str, expires_at: datetime,
                           now: datetime) -> bool:
        self._check()
        self.jtis = {k: v for k, v in self.jtis.items() if v >= now}
        if (client_id, jti) in self.jtis:
            return False
        self.jtis[client_id, jti] = expires_at
        return True

    # -- consents ------------------------------------------------------------------------------
    async def add_consent(self, consent: StoredConsent) -> None:
        self._check()
        if consent.id in self.consents:
            raise DuplicateKeyError(consent.id)
        self.consents[consent.id] = msgspec.structs.replace(
            consent, proof_types=tuple(sorted(consent.proof_types)))

    async def consent(self, consent_id: str) -> StoredConsent | None:
        self._check()
        return self.consents.get(consent_id)

    async def consents_of(self, citizen_ref: str) -> list[StoredConsent]:
        self._check()
        return sorted((c for c in self.consents.values() if c.citizen_ref == citizen_ref),
                      key=lambda c: c.granted_at, reverse=True)

    async def revoke_consent(self, consent_id: str, citizen_ref: str, now: datetime,
                             ) -> StoredConsent | None:
        self._check()
        consent = self.consents.get(consent_id)
        if consent is None or consent.citizen_ref != citizen_ref:
            return None
        if consent.revoked_at is None:
            consent = self.consents[consent_id] = msgspec.structs.replace(consent,
                                                                          revoked_at=now)
        return consent

    # -- Idempotency-Key -----------------------------------------------------------------------
    async def claim_idempotency(self, client_id: str, key: str, request_hash: str,
                                now: datetime, expires_at: datetime,
                                ) -> tuple[ClaimState, bytes | None]:
        self._check()
        self.claims = {k: v for k, v in self.claims.items() if v.expires_at >= now}
        claim = self.claims.get((client_id, key))
        if claim is None:
            self.claims[client_id, key] = _Claim(request_hash, "in_flight", expires_at)
            return "claimed", None
        if claim.request_hash != request_hash:
            return "mismatch", None
        return ("done", claim.response) if claim.state == "done" else ("in_flight", None)

    async def release_idempotency(self, client_id: str, key: str) -> None:
        self._check()
        claim = self.claims.get((client_id, key))
        if claim is not None and claim.state == "in_flight":
            del self.claims[client_id, key]

    def _answer(self, answer: IdempotentAnswer) -> None:
        claim = self.claims.get((answer.client_id, answer.key))
        if claim is not None:  # a new object: commit_transfers may restore the old one
            self.claims[answer.client_id, answer.key] = _Claim(
                claim.request_hash, "done", claim.expires_at, answer.sealed_response)

    # -- transfer records ----------------------------------------------------------------------
    def commit_transfer(self, record: TransferRecord, use: ConsentUse | None = None,
                        answer: IdempotentAnswer | None = None) -> Awaitable[bool]:
        return self._commit_one(PendingTransfer(record, use, answer))

    async def _commit_one(self, item: PendingTransfer) -> bool:
        return (await self.commit_transfers([item]))[0]

    def _usable(self, use: ConsentUse) -> bool:
        consent = self.consents.get(use.consent_id)
        return (consent is not None and consent.revoked_at is None
                and consent.valid_until > use.now
                and (consent.max_uses is None or consent.uses < consent.max_uses))

    def _use(self, use: ConsentUse) -> None:
        consent = self.consents[use.consent_id]
        self.consents[use.consent_id] = msgspec.structs.replace(consent, uses=consent.uses + 1)

    def _insert(self, record: TransferRecord) -> None:
        self.last_seq += 1  # never reused, also after retention deleted rows
        self.transfers.append(_Transfer(self.last_seq, record))

    def _check_new(self, records: Sequence[TransferRecord]) -> None:
        ids = [t.record.id for t in self.transfers] + [r.id for r in records]
        if len(set(ids)) != len(ids):
            msg = "a transfer id exists"
            raise DuplicateKeyError(msg)

    async def commit_transfers(self, items: Sequence[PendingTransfer]) -> list[bool]:
        self._check()
        saved = (dict(self.consents), dict(self.claims))
        results: list[bool] = []
        for item in items:
            if item.use is not None and not self._usable(item.use):
                results.append(False)
                continue
            if item.use is not None:
                self._use(item.use)
            if item.answer is not None:
                self._answer(item.answer)
            results.append(True)
        try:
            self._check_new([item.record for item, ok in zip(items, results, strict=True)
                             if ok])
        except DuplicateKeyError:
            self.consents, self.claims = saved  # all or nothing
            raise
        for item, ok in zip(items, results, strict=True):
            if ok:
                self._insert(item.record)
        return results

    # -- the outbox ----------------------------------------------------------------------------
    async def deliver_pending(self, limit: int,
                              send: Callable[[list[bytes]], Awaitable[None]]) -> int:
        rows = await self.pending_transfers(limit)
        if not rows:
            return 0
        seqs = [seq for seq, _ in rows]
        try:
            await send([record for _, record in rows])
        except Exception:
            await self.mark_attempt(seqs)
            raise
        await self.mark_delivered(seqs, datetime.now(UTC))
        return len(rows)

    async def pending_transfers(self, limit: int) -> list[tuple[int, bytes]]:
        self._check()
        return [(t.seq, _encode(t.record)) for t in self.transfers
                if t.delivered_at is None][:limit]

    async def mark_delivered(self, seqs: Sequence[int], now: datetime) -> None:
        self._check()
        for t in self.transfers:
            if t.seq in seqs:
                t.delivered_at = now

    async def mark_attempt(self, seqs: Sequence[int]) -> None:
        self._check()
        for t in self.transfers:
            if t.seq in seqs:
                t.attempts += 1

    async def outbox_status(self) -> tuple[int, datetime | None]:
        self._check()
        pending = [t.record.occurred_at for t in self.transfers if t.delivered_at is None]
        return len(pending), min(pending, default=None)

    # -- previews ------------------------------------------------------------------------------
    async def add_preview(self, preview: StoredPreview,
                          answer: IdempotentAnswer | None = None) -> None:
        self._check()
        if preview.id in self.previews:
            raise DuplicateKeyError(preview.id)
        self.previews[preview.id] = preview
        if answer is not None:
            self._answer(answer)

    async def preview(self, request_id: str) -> StoredPreview | None:
        self._check()
        return self.previews.get(request_id)

    async def previews_of(self, citizen_ref: str, limit: int = 200) -> list[StoredPreview]:
        self._check()
        mine = [p for p in self.previews.values() if p.citizen_ref == citizen_ref]
        return sorted(mine, key=lambda p: p.created_at, reverse=True)[:limit]

    async def accept_preview(self, request_id: str, now: datetime, expires_at: datetime,
                             ) -> bool:
        self._check()
        row = self.previews.get(request_id)
        if row is None or row.state != "pending" or row.expires_at <= now:
            return False
        self.previews[request_id] = msgspec.structs.replace(
            row, state="accepted", decided_at=now, expires_at=expires_at)
        return True

    async def finish_preview(self, request_id: str, from_states: Sequence[str], state: str,
                             now: datetime, record: TransferRecord | None) -> bool:
        self._check()
        row = self.previews.get(request_id)
        if row is None or row.state not in from_states:
            return False
        if record is not None:
            self._check_new([record])
            self._insert(record)
        self.previews[request_id] = msgspec.structs.replace(row, state=state, sealed=None,
                                                            decided_at=now)
        return True

    async def collect_preview(self, request_id: str, record: TransferRecord,
                              use: ConsentUse | None) -> CollectResult:
        self._check()
        row = self.previews.get(request_id)
        if row is None or row.state != "accepted" or row.expires_at <= record.occurred_at:
            return "gone"
        if use is not None and not self._usable(use):
            return "consent"
        self._check_new([record])
        if use is not None:
            self._use(use)
        self._insert(record)
        self.previews[request_id] = msgspec.structs.replace(row, state="collected",
                                                            sealed=None)
        return "collected"

    async def due_previews(self, now: datetime, limit: int) -> list[StoredPreview]:
        self._check()
        due = [p for p in self.previews.values() if p.state in _OPEN and p.expires_at <= now]
        return sorted(due, key=lambda p: p.expires_at)[:limit]

    async def purge_previews(self, now: datetime, forget_before: datetime) -> None:
        self._check()
        for key, row in list(self.previews.items()):
            if row.expires_at < forget_before:
                del self.previews[key]
            elif row.expires_at <= now and row.sealed is not None:
                self.previews[key] = msgspec.structs.replace(row, sealed=None)

    # -- retention -------------------------------------------------------------------------
    async def apply_retention(self, cutoffs: RetentionCutoffs) -> dict[str, int]:
        self._check()
        kept = [t for t in self.transfers
                if t.delivered_at is None or t.delivered_at >= cutoffs.protocol_before]
        before = cutoffs.consents_before
        consents = {k: c for k, c in self.consents.items()
                    if c.valid_until >= before and (c.revoked_at is None or c.revoked_at >= before)}
        claims = {k: v for k, v in self.claims.items() if v.expires_at >= cutoffs.now}
        jtis = {k: v for k, v in self.jtis.items() if v >= cutoffs.now}
        previews = {k: p for k, p in self.previews.items()
                    if p.state in _OPEN or p.expires_at >= cutoffs.previews_before}
        deleted = {"broker_transfer": len(self.transfers) - len(kept),
                   "broker_consent": len(self.consents) - len(consents),
                   "broker_idempotency": len(self.claims) - len(claims),
                   "broker_assertion_jti": len(self.jtis) - len(jtis),
                   "broker_preview": len(self.previews) - len(previews),
                   "broker_bucket": 0}
        self.transfers, self.consents, self.claims, self.jtis, self.previews = (
            kept, consents, claims, jtis, previews)
        return deleted

    async def seal_legacy_transfers(self, limit: int) -> int:
        self._check()
        return 0


class Clock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta.total_seconds()


class FakePolicies:
    """``Policies`` over documents given in the test."""

    def __init__(self, *documents: PolicyDocument, keys: Mapping[str, Ed25519PublicKey]
                 | None = None) -> None:
        self._documents = {d.id: d for d in documents}
        self._keys = dict(keys or {})

    def services(self) -> tuple[PolicyDocument, ...]:
        return tuple(self._documents.values())

    def service(self, service_id: str) -> PolicyDocument | None:
        return self._documents.get(service_id)

    def permission(self, service_id: str, proof_type: ProofType, purpose: str,
                   ) -> Permission | None:
        document = self._documents.get(service_id)
        if document is None:
            return None
        return next((p for p in document.permissions
                     if p.proof_type == proof_type and p.purpose == purpose), None)

    def redirect_allowed(self, service_id: str, uri: str) -> bool:
        return False

    def public_keys(self, service_id: str) -> Mapping[str, Ed25519PublicKey]:
        key = self._keys.get(service_id)
        return {f"{service_id}-1": key} if key is not None else {}


class FakeConnector:
    """A register: answers ``proof`` (or raises ``error``); counts its fetches.
    ``before_fetch``: what happens elsewhere while the register is asked."""

    def __init__(self, proof_type: ProofType, proof: ProofData | None = None,
                 error: ConnectorError | None = None) -> None:
        self.proof_type = proof_type
        self.proof = proof
        self.error = error
        self.fetched: list[str] = []
        self.requesters: list[Requester | None] = []
        self.before_fetch: Callable[[], Awaitable[None]] | None = None

    def check_parameters(self, parameters: Mapping[str, Any]) -> None:
        pass

    async def fetch(self, subject: str, parameters: Mapping[str, Any], *,
                    requester: Requester | None = None) -> ProofData:
        self.fetched.append(subject)
        self.requesters.append(requester)
        if self.before_fetch is not None:
            await self.before_fetch()
        if self.error is not None:
            raise self.error
        assert self.proof is not None
        return self.proof

    async def aclose(self) -> None:
        pass


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()
