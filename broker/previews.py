"""The preview (EU OOTS style): a fetched proof waits for the citizen's release.

When the service's permission or the consent used asks for a preview, the broker runs every
check, fetches and minimises the proof as usual, then *holds* it instead of releasing it:
sealed with AES-256-GCM (the AAD binds the request id and the service), with a short TTL. The
service gets ``202`` and a status URL; the citizen sees the proof in the cockpit and accepts or
refuses. Each held proof ends in exactly one transfer record, written in the same transaction
as the state change that destroys the sealed content:

* collected  - the service fetched an accepted proof: ``delivered``, signed proof returned once;
* refused    - the citizen refused (``preview-refused``), or the consent was gone at
  collection (``consent-required``);
* expired    - not decided or not collected in time (``preview-expired``).

Expiry fails closed: every read checks ``expires_at`` itself, and a sweeper (started with the
broker) destroys what is overdue even if nobody asks. Decision 0017.
"""

import os
from datetime import datetime, timedelta
from typing import Any

import msgspec
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.notary import Notary, TransferDraft
from broker.store import BrokerStore, ConsentUse, IdempotentAnswer, StoredConsent, StoredPreview
from einmal.domain.idnr import mask_idnr
from einmal.domain.policy import Permission, Policies, PolicyDocument
from einmal.domain.proofs import ProofType
from einmal.domain.registers import ProofData
from einmal.domain.transfer import Outcome, TransferRecord
from einmal.problems import ProblemError
from einmal.store import StoreError
from einmal.worker import BackgroundWorker

__all__ = ["PREVIEW_REQUIRED", "PREVIEW_STATES", "PreviewDesk", "preview_sweeper"]

log = structlog.get_logger()

PREVIEW_REQUIRED = "preview-required"
#: EU OOTS: "preview required" (the evidence is shown to the user before it is exchanged).
OOTS_PREVIEW_CODE = "EDM:ERR:0002"
PREVIEW_STATES = ("pending", "accepted", "refused", "expired", "collected")
_OPEN = ("pending", "accepted")
#: After the end, a row without content stays this long: the service gets 403/410, not 404.
KEEP_DECIDED = timedelta(hours=24)


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """The sealed part of a held proof: everything personal (IdNrs and proof values)."""

    subject: str
    data: dict[str, Any]
    register_id: str
    register_name: str
    concerned: tuple[str, ...]
    consent_id: str | None = None
    correlation_id: str | None = None


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class PreviewDesk:
    """Holds, shows, releases and destroys previewed proofs (``BrokerService.previews``)."""

    def __init__(self, *, store: BrokerStore, policies: Policies, notary: Notary, key: bytes,
                 ttl_s: int, status_base: str, cockpit_url: str) -> None:
        if len(key) != 32:
            msg = "the preview key must be 32 bytes (AES-256)"
            raise ValueError(msg)
        self._store = store
        self._policies = policies
        self._notary = notary
        self._aead = AESGCM(key)
        self.ttl = timedelta(seconds=ttl_s)
        self._status_base = status_base.rstrip("/")
        self._cockpit = cockpit_url.rstrip("/")

    # -- sealing ------------------------------------------------------------------------------
    @staticmethod
    def _aad(request_id: str, client_id: str) -> bytes:
        return f"einmal-preview\n{request_id}\n{client_id}".encode()

    def _seal(self, request_id: str, client_id: str, held: Held) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, msgspec.json.encode(held),
                                          self._aad(request_id, client_id))

    def _open(self, row: StoredPreview) -> Held | None:
        if row.sealed is None:
            return None
        try:
            raw = self._aead.decrypt(row.sealed[:12], row.sealed[12:],
                                     self._aad(row.id, row.client_id))
        except (InvalidTag, ValueError):
            log.error("preview.unreadable", request_id=row.id)
            return None
        return msgspec.json.decode(raw, type=Held)

    # -- 1. the service asks: hold instead of release ------------------------------------------
    async def hold(self, draft: TransferDraft, *, client_id: str, proof: ProofData,
                   data: dict[str, Any], consent: StoredConsent | None,
                   idempotency_key: str | None,
                   transfer_id: str | None = None) -> dict[str, str]:
        """Hold the fetched, minimised proof for ``draft`` until the citizen decides; the
        202 body for the service (also the stored answer of its Idempotency-Key).
        ``transfer_id``: the id the register was told with the query (else a new one)."""
        notary = self._notary
        now = notary.now()
        # the transfer record's id, once it has one
        request_id = transfer_id or notary.transfer_id()
        subject = draft.subject
        held = Held(subject=subject, data=data, register_id=proof.issuer,
                    register_name=proof.issuer_name, concerned=tuple(proof.concerned),
                    consent_id=draft.consent_id, correlation_id=draft.correlation_id)
        row = StoredPreview(
            id=request_id, client_id=client_id,
            # the consenting citizen decides (a parent for a child), else the subject
            citizen_ref=consent.citizen_ref if consent else notary.pseudonym(subject),
            subject_masked=mask_idnr(subject), proof_type=draft.proof_type,
            purpose=draft.purpose, consent_id=consent.id if consent else None,
            state="pending", created_at=now, expires_at=now + self.ttl, decided_at=None,
            sealed=self._seal(request_id, client_id, held))
        body = self._pending_body(row)
        answer = (IdempotentAnswer(client_id=client_id, key=idempotency_key,
                                   sealed_response=notary.seal_answer(
                                       client_id, idempotency_key, body))
                  if idempotency_key else None)
        await self._store.add_preview(row, answer)
        notary.on_outcome(row.proof_type, "preview")
        log.info("proof.preview_held", request_id=request_id, client_id=client_id,
                 proof_type=row.proof_type, expires_at=_iso(row.expires_at))
        return body

    def _pending_body(self, row: StoredPreview) -> dict[str, str]:
        return {"status": PREVIEW_REQUIRED, "code": OOTS_PREVIEW_CODE, "request_id": row.id,
                "status_url": f"{self._status_base}/v1/proof-requests/{row.id}",
                "preview_url": f"{self._cockpit}/previews/{row.id}",
                "expires_at": _iso(row.expires_at)}

    # -- 2. the service asks again: pending, released once, refused or expired ----------------
    async def status(self, client_id: str, request_id: str) -> dict[str, str]:
        row = await self._store.preview(request_id)
        if row is None or row.client_id != client_id:  # another service's: the same answer
            raise ProblemError("not-found", "No such proof request.")
        row = await self._settle(row)
        if row.state == "pending":
            return self._pending_body(row)
        if row.state == "accepted":
            return await self._collect(row)
        if row.state == "collected":
            raise ProblemError("preview-collected", "The citizen released this proof and it was "
                               "collected; it is handed out once only.", transfer_id=row.id)
        if row.state == "refused":
            raise ProblemError("preview-refused", "The citizen did not release this proof; "
                               "nothing was transferred.", transfer_id=row.id)
        raise ProblemError("preview-expired", "The preview expired before it was released and "
                           "collected; the held proof was destroyed.", transfer_id=row.id)

    async def _collect(self, row: StoredPreview) -> dict[str, str]:
        notary = self._notary
        held = self._open(row)
        document = self._policies.service(row.client_id)
        permission = self._policies.permission(
            row.client_id, ProofType(row.proof_type), row.purpose)
        if held is None or document is None or permission is None:
            await self._finish(row, "refused", "permission-denied", held)
            raise ProblemError("permission-denied", "The proof can no longer be released "
                               "under the service's policy.", transfer_id=row.id)
        proof = self._proof(row, held)
        record = notary.record(self._draft(row, held, document, permission), Outcome.DELIVERED,
                               transfer_id=row.id, proof=proof)
        jws = notary.sign(record, row.client_id, proof, held.data)
        use = ConsentUse(consent_id=row.consent_id, now=notary.now()) if row.consent_id else None
        result = await self._store.collect_preview(row.id, record, use)
        if result == "gone":  # collected (or expired) by a concurrent request meanwhile
            return await self.status(row.client_id, row.id)
        if result == "consent":
            await self._finish(row, "refused", "consent-required", held)
            raise ProblemError("consent-required",
                               "The consent was revoked, expired or used up before the proof "
                               "was collected; nothing was released.", transfer_id=row.id)
        notary.committed(record, "delivered")
        log.info("proof.released", transfer_id=record.id, client_id=row.client_id,
                 proof_type=record.proof_type, preview=True)
        return {"transfer_id": record.id, "proof": jws}

    # -- 3. the citizen looks and decides ------------------------------------------------------
    async def list_for(self, citizen_idnr: str, status: str | None) -> list[dict[str, Any]]:
        if status not in (None, "all", *PREVIEW_STATES):
            raise ProblemError("invalid-request", "status: one of all, "
                               + ", ".join(PREVIEW_STATES) + ".")
        rows = await self._store.previews_of(self._notary.pseudonym(citizen_idnr))
        wanted = status or "pending"
        items = []
        for row in rows:
            settled = await self._settle(row)
            if wanted in ("all", settled.state):
                items.append(self._view(settled))
        return items

    async def show(self, citizen_idnr: str, request_id: str) -> dict[str, Any]:
        row = await self._settle(await self._own(citizen_idnr, request_id))
        return self._view(row, self._open(row) if row.state in _OPEN else None, detail=True)

    async def decide(self, citizen_idnr: str, request_id: str, decision: str) -> dict[str, Any]:
        if decision not in ("accept", "refuse"):
            raise ProblemError("invalid-request", "decision: 'accept' or 'refuse'.")
        row = await self._settle(await self._own(citizen_idnr, request_id))
        if row.state == "expired":
            raise ProblemError("preview-expired", "The preview expired; the held proof was "
                               "destroyed and the service was told.", transfer_id=row.id)
        if row.state != "pending":
            raise ProblemError("conflict", f"This preview was already decided ({row.state}).",
                               state=row.state)
        now = self._notary.now()
        if decision == "accept":
            # the service now has a fresh TTL to collect; the content stays sealed until then
            done = await self._store.accept_preview(row.id, now, now + self.ttl)
        else:
            done = await self._finish(row, "refused", "preview-refused", self._open(row))
        if not done:  # decided or expired concurrently
            return await self.decide(citizen_idnr, request_id, decision)
        log.info("preview.decided", request_id=row.id, decision=decision)
        decided = await self._store.preview(request_id)
        return self._view(decided, self._open(decided)
                          if decided and decided.state in _OPEN else None, detail=True)

    async def _own(self, citizen_idnr: str, request_id: str) -> StoredPreview:
        row = await self._store.preview(request_id)
        if row is None or row.citizen_ref != self._notary.pseudonym(citizen_idnr):
            raise ProblemError("not-found", "No such preview.")  # no IDOR oracle
        return row

    def _view(self, row: StoredPreview | None, held: Held | None = None, *,
              detail: bool = False) -> dict[str, Any]:
        """The citizen's view; ``detail`` adds ``data``: the minimised proof exactly as the
        service would get it (null once destroyed)."""
        if row is None:
            raise ProblemError("not-found", "No such preview.")
        document = self._policies.service(row.client_id)
        permission = self._policies.permission(row.client_id, ProofType(row.proof_type),
                                               row.purpose)
        view: dict[str, Any] = {
            "request_id": row.id, "service_id": row.client_id,
            "service_name": document.name if document else row.client_id,
            "authority": document.authority if document else "",
            "proof_type": row.proof_type, "purpose": row.purpose,
            "purpose_text": permission.purpose_text if permission else "",
            "legal_basis": permission.legal_basis if permission else "",
            "retention_days": permission.retention_days if permission else None,
            "subject_masked": row.subject_masked,
            "fields": list(permission.fields) if permission else [],
            "created_at": _iso(row.created_at), "expires_at": _iso(row.expires_at),
            "status": row.state,
        }
        if detail:
            view["data"] = held.data if held is not None else None
            view["register_name"] = held.register_name if held is not None else None
        return view

    # -- 4. expiry -------------------------------------------------------------------------------
    async def _settle(self, row: StoredPreview) -> StoredPreview:
        """Fail closed: an overdue open preview is expired (and destroyed) before any answer."""
        if row.state in _OPEN and row.expires_at <= self._notary.now():
            await self._finish(row, "expired", "preview-expired", self._open(row))
            fresh = await self._store.preview(row.id)
            return fresh if fresh is not None else msgspec.structs.replace(
                row, state="expired", sealed=None)
        return row

    async def sweep(self) -> int:
        """Expire and destroy every overdue open preview; forget ended ones after a day.
        Returns how many were overdue."""
        now = self._notary.now()
        due = await self._store.due_previews(now, 200)
        for row in due:
            await self._settle(row)
        await self._store.purge_previews(now, now - KEEP_DECIDED)
        if due:
            log.info("preview.expired", count=len(due))
        return len(due)

    async def _finish(self, row: StoredPreview, state: str, reason: str,
                      held: Held | None) -> bool:
        """End an open preview: destroy the content, write its refused transfer record."""
        notary = self._notary
        record: TransferRecord | None = None
        document = self._policies.service(row.client_id)
        if held is not None and document is not None:
            permission = self._policies.permission(
                row.client_id, ProofType(row.proof_type), row.purpose)
            record = notary.record(self._draft(row, held, document, permission),
                                   Outcome.REFUSED, transfer_id=row.id, error_type=reason,
                                   proof=self._proof(row, held), concerned=held.subject)
        done = await self._store.finish_preview(
            row.id, _OPEN if state == "expired" else (row.state,), state, notary.now(), record)
        if done and record is not None:
            notary.committed(record, "refused")
            log.info("proof.refused", transfer_id=record.id, reason=reason)
        return done

    def _draft(self, row: StoredPreview, held: Held, document: PolicyDocument,
               permission: Permission | None) -> TransferDraft:
        draft = TransferDraft(
            proof_type=row.proof_type, purpose=row.purpose,
            service=self._notary.service_ref(document), subject=held.subject,
            consent_id=held.consent_id, correlation_id=held.correlation_id)
        return draft if permission is None else draft.permitted(permission, self._notary.now())

    @staticmethod
    def _proof(row: StoredPreview, held: Held) -> ProofData:
        return ProofData(proof_type=ProofType(row.proof_type), issuer=held.register_id,
                         issuer_name=held.register_name, data=held.data,
                         concerned=held.concerned)


def preview_sweeper(desk: PreviewDesk, *, interval_s: float) -> BackgroundWorker:
    """Destroys expired previews every ``interval_s`` (reads check expiry too: this is the
    backstop). A failed sweep is logged and the next one runs on time (no backoff)."""

    async def sweep() -> None:
        await desk.sweep()

    return BackgroundWorker("preview-sweeper", sweep, interval_s=interval_s,
                            retry_on=(StoreError, ProblemError),
                            min_backoff_s=0.0, max_backoff_s=0.0)
