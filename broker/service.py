"""Broker use-cases: client authentication, consents, and the proof request (the hot path).

Pure of HTTP: raises ``ProblemError`` with a stable type; the controllers only parse and call.
A store failure propagates as ``StoreError`` (the HTTP layer answers 503, broker/http.py).
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
import msgspec
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker.notary import Notary, TransferDraft
from broker.previews import PreviewDesk
from broker.store import BrokerStore, ConsentUse, IdempotentAnswer, StoredConsent
from einmal.domain.contract import MAX_CONSENT_DAYS
from einmal.domain.idnr import InvalidIdNrError, mask_idnr, validate_idnr
from einmal.domain.policy import Policies
from einmal.domain.proofs import ProofType
from einmal.domain.registers import (
    Connector,
    ConnectorError,
    InvalidParametersError,
    ProofData,
    RecordNotFoundError,
    RegisterBusyError,
    RegisterTimeoutError,
    Requester,
    RoutingError,
)
from einmal.domain.transfer import Outcome
from einmal.ids import uuid4
from einmal.problems import ProblemError
from einmal.tokens import TokenIssuer

__all__ = ["BrokerService", "ConsentIn", "ConsentOut", "ProofRequestIn", "connector_problem"]

log = structlog.get_logger()

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 300
IDEMPOTENCY_TTL = timedelta(hours=24)


class ProofRequestIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    proof_type: ProofType
    subject: str
    purpose: str
    consent_id: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class ConsentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service_id: str
    proof_types: list[ProofType]
    purpose: str
    valid_until: datetime
    max_uses: int | None = None
    subject: str | None = None
    #: true: every proof fetched with this consent waits for my release (preview)
    preview: bool = False


ConsentStatus = Literal["active", "revoked", "expired", "used_up"]


class ConsentOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    service_id: str
    service_name: str
    proof_types: list[str]
    purpose: str
    subject: str
    granted_at: datetime
    valid_until: datetime
    max_uses: int | None
    uses: int
    status: ConsentStatus
    revoked_at: datetime | None
    preview: bool = False


class BrokerService:
    """Everything the broker does, wired once at start-up (no per-request set-up)."""

    def __init__(self, *, store: BrokerStore, policies: Policies,
                 connectors: Mapping[ProofType, Connector], notary: Notary,
                 previews: PreviewDesk, access_tokens: TokenIssuer, token_endpoint: str,
                 allow_test_idnrs: bool) -> None:
        self._store = store
        self._policies = policies
        self._connectors = connectors
        self._notary = notary
        #: held proofs awaiting the citizen's release (broker/previews.py)
        self.previews = previews
        self._access_tokens = access_tokens
        self._token_endpoint = token_endpoint
        self._allow_test = allow_test_idnrs
        self._client_keys: dict[str, Mapping[str, Ed25519PublicKey]] = {
            document.id: policies.public_keys(document.id) for document in policies.services()}

    @property
    def connectors(self) -> Mapping[ProofType, Connector]:
        """The register connectors by proof type (the mapping given at start-up, not a copy)."""
        return self._connectors

    def _check_idnr(self, value: str, field: str) -> str:
        try:
            return validate_idnr(value, allow_test=self._allow_test)
        except InvalidIdNrError as exc:
            raise ProblemError("invalid-request", f"{field}: {exc}") from exc

    # -- 1. client authentication (RFC 7523) -------------------------------------------------
    async def issue_access_token(self, form: Mapping[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise ProblemError("invalid-request", "grant_type must be client_credentials.",
                               status=400, error="unsupported_grant_type")
        if form.get("client_assertion_type") != JWT_BEARER:
            raise ProblemError("invalid-request", f"client_assertion_type must be {JWT_BEARER}.",
                               status=400, error="invalid_request")
        unverified_assertion = form.get("client_assertion", "")
        if not unverified_assertion:
            raise ProblemError("invalid-request", "client_assertion is required.",
                               status=400, error="invalid_request")
        claims = self._verify_assertion(unverified_assertion, form.get("client_id"))
        client_id = claims["iss"]
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        if not await self._store.remember_jti(client_id, claims["jti"], expires_at,
                                              self._notary.now()):
            log.warning("token.assertion_replayed", client_id=client_id)
            raise _invalid_client("The client assertion was already used (jti replay).")
        token = self._access_tokens.issue(client_id, now=self._notary.clock(),
                                          client_id=client_id)
        log.info("token.issued", client_id=client_id)
        return {"access_token": token, "token_type": "Bearer",
                "expires_in": self._access_tokens.ttl_s}

    def _verify_assertion(self, unverified_assertion: str, form_client_id: str | None,
                          ) -> dict[str, Any]:
        try:
            unverified_claims = jwt.decode(unverified_assertion,
                                           options={"verify_signature": False})
            header = jwt.get_unverified_header(unverified_assertion)
        except jwt.InvalidTokenError as exc:
            raise _invalid_client("The client assertion is not a JWT.") from exc
        client_id = unverified_claims.get("iss")
        keys = self._client_keys.get(client_id) if isinstance(client_id, str) else None
        if keys is None:
            raise _invalid_client("Unknown client.")
        if form_client_id is not None and form_client_id != client_id:
            raise _invalid_client("client_id does not match the assertion's issuer.")
        key = keys.get(str(header.get("kid"))) if header.get("kid") else None
        candidates = [key] if key else list(keys.values())
        for candidate in candidates:
            try:
                # NOTE: algorithms pinned to EdDSA: "none" and HS256 key confusion fail here.
                claims: dict[str, Any] = jwt.decode(
                    unverified_assertion, candidate, algorithms=["EdDSA"],
                    audience=self._token_endpoint, issuer=client_id, leeway=5,
                    options={"require": ["iss", "sub", "aud", "exp", "jti"]})
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as exc:
                raise _invalid_client(f"The client assertion is invalid: {exc}.") from exc
            if claims["sub"] != client_id:
                raise _invalid_client("The assertion's sub must equal its iss (the client id).")
            if claims["exp"] - self._notary.clock() > MAX_ASSERTION_LIFETIME_S:
                raise _invalid_client("The assertion expires too far ahead (max 300 s).")
            return claims
        raise _invalid_client("The client assertion's signature does not verify.")

    # -- 2. consents --------------------------------------------------------------------------
    def _consent_out(self, consent: StoredConsent) -> ConsentOut:
        now = self._notary.now()
        status: ConsentStatus
        if consent.revoked_at is not None:
            status = "revoked"
        elif consent.valid_until <= now:
            status = "expired"
        elif consent.max_uses is not None and consent.uses >= consent.max_uses:
            status = "used_up"
        else:
            status = "active"
        document = self._policies.service(consent.service_id)
        return ConsentOut(
            id=consent.id, service_id=consent.service_id,
            service_name=document.name if document else consent.service_id,
            proof_types=list(consent.proof_types), purpose=consent.purpose,
            subject=consent.subject_masked, granted_at=consent.granted_at,
            valid_until=consent.valid_until, max_uses=consent.max_uses, uses=consent.uses,
            status=status, revoked_at=consent.revoked_at, preview=consent.preview)

    async def grant_consent(self, citizen_idnr: str, request: ConsentIn) -> ConsentOut:
        now = self._notary.now()
        document = self._policies.service(request.service_id)
        if document is None:
            raise ProblemError("invalid-request",
                               f"service_id: unknown service {request.service_id!r}.")
        if not request.proof_types:
            raise ProblemError("invalid-request", "proof_types: name at least one proof type.")
        for proof_type in request.proof_types:
            if self._policies.permission(request.service_id, proof_type, request.purpose) is None:
                raise ProblemError(
                    "invalid-request",
                    f"proof_types: {document.name} may not fetch {proof_type.value!r} "
                    f"for purpose {request.purpose!r}.")
        valid_until = request.valid_until
        if valid_until.tzinfo is None:
            raise ProblemError("invalid-request", "valid_until: give a time zone (e.g. Z).")
        if valid_until <= now or valid_until > now + timedelta(days=MAX_CONSENT_DAYS):
            raise ProblemError("invalid-request",
                               "valid_until: must lie in the future and within two years.")
        if request.max_uses is not None and request.max_uses < 1:
            raise ProblemError("invalid-request", "max_uses: must be at least 1.")
        subject = self._check_idnr(request.subject or citizen_idnr, "subject")
        pseudonym = self._notary.pseudonym
        consent = StoredConsent(
            id=uuid4(), citizen_ref=pseudonym(citizen_idnr),
            subject_ref=pseudonym(subject), subject_masked=mask_idnr(subject),
            service_id=request.service_id,
            proof_types=tuple(sorted({p.value for p in request.proof_types})),
            purpose=request.purpose, granted_at=now, valid_until=valid_until.astimezone(UTC),
            max_uses=request.max_uses, uses=0, revoked_at=None, preview=request.preview)
        await self._store.add_consent(consent)
        log.info("consent.granted", consent_id=consent.id, service_id=consent.service_id)
        return self._consent_out(consent)

    async def list_consents(self, citizen_idnr: str) -> list[ConsentOut]:
        consents = await self._store.consents_of(self._notary.pseudonym(citizen_idnr))
        return [self._consent_out(c) for c in consents]

    async def revoke_consent(self, citizen_idnr: str, consent_id: str) -> ConsentOut:
        consent = await self._store.revoke_consent(
            consent_id, self._notary.pseudonym(citizen_idnr), self._notary.now())
        if consent is None:  # unknown, or another citizen's: the same answer (no IDOR oracle)
            raise ProblemError("not-found", "No such consent.")
        log.info("consent.revoked", consent_id=consent_id)
        return self._consent_out(consent)

    # -- 3. the proof request ----------------------------------------------------------------
    async def request_proof(self, client_id: str, request: ProofRequestIn,
                            correlation_id: str | None = None, *,
                            idempotency_key: str | None = None,
                            request_hash: str = "") -> dict[str, str]:
        """The proof request. With an ``Idempotency-Key`` a retry returns the first answer and
        fetches nothing twice; the stored answer is sealed (AES-GCM) and expires."""
        if idempotency_key is None:
            return await self._request_proof(client_id, request, correlation_id, None)
        now = self._notary.now()
        state, sealed = await self._store.claim_idempotency(
            client_id, idempotency_key, request_hash, now, now + IDEMPOTENCY_TTL)
        if state == "done" and sealed is not None:
            log.info("proof.replayed", client_id=client_id)
            return self._notary.open_answer(client_id, idempotency_key, sealed)
        if state == "in_flight":
            raise ProblemError("conflict", "A request with this Idempotency-Key is still in "
                               "progress. Retry in a moment.", headers={"Retry-After": "1"})
        if state == "mismatch":
            raise ProblemError("invalid-request", "This Idempotency-Key was used for a "
                               "different request.")
        try:
            return await self._request_proof(client_id, request, correlation_id,
                                             idempotency_key)
        except BaseException:
            await self._store.release_idempotency(client_id, idempotency_key)
            raise

    async def _request_proof(self, client_id: str, request: ProofRequestIn,
                             correlation_id: str | None,
                             idempotency_key: str | None) -> dict[str, str]:
        notary = self._notary
        started = notary.clock()
        subject = self._check_idnr(request.subject, "subject")
        document = self._policies.service(client_id)
        if document is None:  # the token outlived its policy document
            raise ProblemError("unauthenticated", "Unknown client.")
        connector = self._connectors.get(request.proof_type)
        draft = TransferDraft(
            proof_type=request.proof_type.value, purpose=request.purpose,
            service=notary.service_ref(document), subject=subject,
            consent_id=request.consent_id, correlation_id=correlation_id)
        permission = self._policies.permission(client_id, request.proof_type, request.purpose)
        if permission is None or connector is None:
            transfer_id = await self._refuse(draft, "permission-denied", concerned=subject)
            raise ProblemError(
                "permission-denied",
                f"The policy of {document.name} does not allow {request.proof_type.value!r} "
                f"for purpose {request.purpose!r}.", transfer_id=transfer_id)
        draft = draft.permitted(permission, notary.now())
        try:
            connector.check_parameters(request.parameters)
        except InvalidParametersError as exc:
            raise ProblemError("invalid-request", f"parameters: {exc}") from exc

        consent: StoredConsent | None = None
        if permission.consent_required:
            consent = await self._usable_consent(request, client_id, subject)
            if consent is None:
                transfer_id = await self._refuse(draft, "consent-required", concerned=subject)
                raise ProblemError(
                    "consent-required",
                    "No active consent of the citizen covers this request "
                    "(missing, revoked, expired, used up, or for another service or purpose).",
                    transfer_id=transfer_id)

        # The transfer id is made before the query: the register's protocol entry carries it
        # (X-Einmal-Transfer), so the cockpit can match that entry to the log's (issue 15).
        transfer_id = notary.transfer_id()
        try:
            proof = await connector.fetch(subject, request.parameters, requester=Requester(
                service_id=draft.service.id, service_name=draft.service.name,
                authority=draft.service.authority, purpose=draft.purpose,
                legal_basis=draft.legal_basis, consent_id=draft.consent_id,
                transfer_id=transfer_id))
        except ConnectorError as exc:
            await self._fail(draft, exc, subject, transfer_id)
            raise connector_problem(exc, transfer_id) from exc

        # A parent's consent for a child: the register must name the parent, else refuse.
        if (consent is not None and consent.subject_ref != consent.citizen_ref
                and consent.citizen_ref not in {notary.pseudonym(i) for i in proof.concerned}):
            await self._refuse(draft, "consent-required", concerned=subject, proof=proof,
                               transfer_id=transfer_id)
            raise ProblemError(
                "consent-required",
                "The consenting citizen is not named as parent or custody holder "
                "of the subject.", transfer_id=transfer_id)

        data = {k: v for k, v in proof.data.items() if k in permission.fields}
        if permission.preview or (consent is not None and consent.preview):
            # EU OOTS preview: held sealed until the citizen releases it; nothing leaves now
            return await self.previews.hold(draft, client_id=client_id, proof=proof, data=data,
                                            consent=consent, idempotency_key=idempotency_key,
                                            transfer_id=transfer_id)
        record = notary.record(draft, Outcome.DELIVERED, transfer_id=transfer_id, proof=proof)
        jws = notary.sign(record, client_id, proof, data)
        use = ConsentUse(consent_id=consent.id, now=notary.now()) if consent else None
        answer = {"transfer_id": record.id, "proof": jws}
        sealed = (IdempotentAnswer(client_id=client_id, key=idempotency_key,
                                   sealed_response=notary.seal_answer(client_id, idempotency_key,
                                                                      answer))
                  if idempotency_key else None)
        if not await self._store.commit_transfer(record, use, sealed):
            # consent revoked/used up while we fetched: nothing leaves
            # nothing of the first record was written: the refusal keeps its id
            await self._refuse(draft, "consent-required", concerned=subject, proof=proof,
                               transfer_id=transfer_id)
            raise ProblemError("consent-required",
                               "The consent was revoked or used up during the request.",
                               transfer_id=transfer_id)
        notary.committed(record, "delivered")
        log.info("proof.released", transfer_id=record.id, client_id=client_id,
                 proof_type=record.proof_type,
                 duration_ms=round((notary.clock() - started) * 1000, 1))
        return answer

    async def _usable_consent(self, request: ProofRequestIn, client_id: str, subject: str,
                              ) -> StoredConsent | None:
        if request.consent_id is None:
            return None
        consent = await self._store.consent(request.consent_id)
        now = self._notary.now()
        if (consent is None or consent.service_id != client_id
                or request.proof_type.value not in consent.proof_types
                or consent.purpose != request.purpose
                or consent.subject_ref != self._notary.pseudonym(subject)
                or consent.revoked_at is not None or consent.valid_until <= now
                or (consent.max_uses is not None and consent.uses >= consent.max_uses)):
            return None
        return consent

    async def _refuse(self, draft: TransferDraft, error_type: str, *, concerned: str,
                      proof: ProofData | None = None, transfer_id: str | None = None) -> str:
        """Commit the refusal's transfer record; its id (for the problem's ``transfer_id``):
        ``transfer_id`` if the register was told one, else a new one."""
        record = self._notary.record(draft, Outcome.REFUSED, transfer_id=transfer_id,
                                     error_type=error_type, proof=proof, concerned=concerned)
        await self._store.commit_transfer(record)
        self._notary.committed(record, "refused")
        log.info("proof.refused", transfer_id=record.id, reason=error_type)
        return record.id

    async def _fail(self, draft: TransferDraft, exc: ConnectorError, subject: str,
                    transfer_id: str) -> str:
        record = self._notary.record(draft, Outcome.FAILED, transfer_id=transfer_id,
                                     error_type=exc.code, concerned=subject)
        await self._store.commit_transfer(record)
        self._notary.committed(record, "failed")
        log.info("proof.failed", transfer_id=record.id, reason=exc.code)
        return record.id


def _invalid_client(detail: str) -> ProblemError:
    return ProblemError("invalid-client", detail, error="invalid_client")


def connector_problem(exc: ConnectorError, transfer_id: str) -> ProblemError:
    """The problem a register's failure is answered with (one row per error class)."""
    detail = str(exc) or exc.code
    if isinstance(exc, RegisterTimeoutError):
        return ProblemError("register-timeout", detail, transfer_id=transfer_id)
    if isinstance(exc, RegisterBusyError):  # our own bound (connectors/_http.py)
        return ProblemError("register-busy", detail, transfer_id=transfer_id,
                            headers={"Retry-After": "1"})
    if isinstance(exc, RecordNotFoundError):
        return ProblemError("not-found", detail, transfer_id=transfer_id)
    if isinstance(exc, RoutingError):
        return ProblemError("routing-failed", detail, transfer_id=transfer_id)
    return ProblemError("register-unavailable", detail, transfer_id=transfer_id)
