"""Broker use-cases: client authentication, consents, and the proof request (the hot path).

Pure of HTTP: raises ``ProblemError`` with a stable type; the controllers only parse and call.
"""

import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import msgspec
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.previews import PreviewDesk
from broker.repository import BrokerRepository, ConsentUse, IdempotentAnswer, StoredConsent
from einmal.domain.registers import (
    Connector,
    ConnectorError,
    InvalidParametersError,
    ProofData,
    RecordNotFoundError,
    RegisterBusyError,
    RegisterTimeoutError,
    RoutingError,
)
from einmal.domain.idnr import InvalidIdNrError, mask_idnr, validate_idnr
from einmal.domain.policy import Policies
from einmal.domain.proofs import ProofType
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.ids import uuid7
from einmal.keys import SigningKey
from einmal.problems import ProblemError
from einmal.store import StoreError
from einmal.tokens import TokenIssuer

__all__ = ["BrokerService", "ConsentIn", "ConsentOut", "ProofRequestIn", "uuid7"]

log = structlog.get_logger()

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 300
MAX_CONSENT_DAYS = 730  # two years, like the log retention
IDEMPOTENCY_TTL = timedelta(hours=24)


_JWS = jwt.PyJWS()
_CLAIMS_JSON = msgspec.json.Encoder()


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
    status: str
    revoked_at: datetime | None
    preview: bool = False


class BrokerService:
    """Everything the broker does, wired once at start-up (no per-request set-up)."""

    def __init__(self, *, repository: BrokerRepository, policies: Policies,
                 connectors: Mapping[ProofType, Connector], proof_key: SigningKey,
                 access_tokens: TokenIssuer, pseudonym_key: bytes, issuer: str,
                 token_endpoint: str, allow_test_idnrs: bool, answer_key: bytes,
                 on_committed: Callable[[], None] = lambda: None,
                 on_outcome: Callable[[str, str], None] = lambda proof_type, outcome: None,
                 clock: Callable[[], float] = time.time, preview_key: bytes | None = None,
                 preview_ttl_s: int = 900, cockpit_url: str | None = None) -> None:
        self._repo = repository
        self._policies = policies
        self._connectors = connectors
        self._proof_key = proof_key
        self._access_tokens = access_tokens
        self._pseudonym_key = pseudonym_key
        self._issuer = issuer
        self._token_endpoint = token_endpoint
        self._allow_test = allow_test_idnrs
        self._answer_key = answer_key
        self._on_committed = on_committed
        self.on_outcome = on_outcome
        self._clock = clock
        self._service_refs: dict[str, tuple[Any, ServiceRef]] = {}
        self._client_keys: dict[str, dict[str, Ed25519PublicKey]] = {
            document.id: policies.public_keys(document.id) for document in policies.services()}
        #: held proofs awaiting the citizen's release (broker/previews.py)
        self.previews = PreviewDesk(self, key=preview_key or os.urandom(32),
                                    ttl_s=preview_ttl_s, status_base=issuer,
                                    cockpit_url=cockpit_url or issuer)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def pseudonym(self, idnr: str) -> str:
        return hmac.new(self._pseudonym_key, idnr.encode(), hashlib.sha256).hexdigest()

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
        now = self._now()
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        if not await self._store(self._repo.remember_jti(client_id, claims["jti"], expires_at,
                                                         now)):
            log.warning("token.assertion_replayed", client_id=client_id)
            raise _invalid_client("The client assertion was already used (jti replay).")
        token = self._access_tokens.issue(client_id, now=self._clock(), client_id=client_id)
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
            if claims["exp"] - self._clock() > MAX_ASSERTION_LIFETIME_S:
                raise _invalid_client("The assertion expires too far ahead (max 300 s).")
            return claims
        raise _invalid_client("The client assertion's signature does not verify.")

    # -- 2. consents --------------------------------------------------------------------------
    def _consent_out(self, consent: StoredConsent) -> ConsentOut:
        now = self._now()
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
        now = self._now()
        document = self._policies.service(request.service_id)
        if document is None:
            raise ProblemError("invalid-request", f"service_id: unknown service {request.service_id!r}.")
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
        consent = StoredConsent(
            id=str(uuid.uuid4()), citizen_ref=self.pseudonym(citizen_idnr),
            subject_ref=self.pseudonym(subject), subject_masked=mask_idnr(subject),
            service_id=request.service_id,
            proof_types=tuple(sorted({p.value for p in request.proof_types})),
            purpose=request.purpose, granted_at=now, valid_until=valid_until.astimezone(UTC),
            max_uses=request.max_uses, uses=0, revoked_at=None, preview=request.preview)
        await self._store(self._repo.add_consent(consent))
        log.info("consent.granted", consent_id=consent.id, service_id=consent.service_id)
        return self._consent_out(consent)

    async def list_consents(self, citizen_idnr: str) -> list[ConsentOut]:
        consents = await self._store(self._repo.consents_of(self.pseudonym(citizen_idnr)))
        return [self._consent_out(c) for c in consents]

    async def revoke_consent(self, citizen_idnr: str, consent_id: str) -> ConsentOut:
        consent = await self._store(self._repo.revoke_consent(
            consent_id, self.pseudonym(citizen_idnr), self._now()))
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
        now = self._now()
        state, sealed = await self._store(self._repo.claim_idempotency(
            client_id, idempotency_key, request_hash, now, now + IDEMPOTENCY_TTL))
        if state == "done" and sealed is not None:
            log.info("proof.replayed", client_id=client_id)
            return msgspec.json.decode(self._open_answer(client_id, idempotency_key, sealed))
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
            await self._store(self._repo.release_idempotency(client_id, idempotency_key))
            raise

    def _seal_answer(self, client_id: str, key: str, answer: dict[str, str]) -> bytes:
        nonce = os.urandom(12)
        aad = f"{client_id}\n{key}".encode()
        return nonce + AESGCM(self._answer_key).encrypt(nonce, msgspec.json.encode(answer), aad)

    def _open_answer(self, client_id: str, key: str, sealed: bytes) -> bytes:
        aad = f"{client_id}\n{key}".encode()
        return AESGCM(self._answer_key).decrypt(sealed[:12], sealed[12:], aad)

    async def _request_proof(self, client_id: str, request: ProofRequestIn,
                             correlation_id: str | None,
                             idempotency_key: str | None) -> dict[str, str]:
        started = self._clock()
        subject = self._check_idnr(request.subject, "subject")
        document = self._policies.service(client_id)
        if document is None:  # the token outlived its policy document
            raise ProblemError("unauthenticated", "Unknown client.")
        cached = self._service_refs.get(client_id)
        if cached is None or cached[0] is not document:  # built once per policy document
            cached = self._service_refs[client_id] = (document, ServiceRef(
                id=document.id, name=document.name, authority=document.authority,
                land=document.land))
        service = cached[1]
        connector = self._connectors.get(request.proof_type)
        base = {"proof_type": request.proof_type.value, "purpose": request.purpose,
                "service": service, "subject": subject, "consent_id": request.consent_id,
                "correlation_id": correlation_id}
        permission = self._policies.permission(client_id, request.proof_type, request.purpose)
        if permission is None or connector is None:
            await self._refuse(base, "permission-denied", concerned=subject)
            raise ProblemError(
                "permission-denied",
                f"The policy of {document.name} does not allow {request.proof_type.value!r} "
                f"for purpose {request.purpose!r}.", transfer_id=base["id"])
        base.update(purpose_text=permission.purpose_text, legal_basis=permission.legal_basis,
                    data_categories=tuple(sorted(permission.fields)),
                    retention_until=self._now() + timedelta(days=permission.retention_days))
        try:
            connector.check_parameters(request.parameters)
        except InvalidParametersError as exc:
            raise ProblemError("invalid-request", f"parameters: {exc}") from exc

        consent: StoredConsent | None = None
        if permission.consent_required:
            consent = await self._usable_consent(request, client_id, subject)
            if consent is None:
                await self._refuse(base, "consent-required", concerned=subject)
                raise ProblemError(
                    "consent-required",
                    "No active consent of the citizen covers this request "
                    "(missing, revoked, expired, used up, or for another service or purpose).",
                    transfer_id=base["id"])

        try:
            proof = await connector.fetch(subject, request.parameters)
        except ConnectorError as exc:
            await self._fail(base, exc, subject)
            raise _connector_problem(exc, base["id"]) from exc

        if consent is not None and consent.subject_ref != consent.citizen_ref:
            # A parent's consent for a child: the register must name the parent, else refuse.
            if consent.citizen_ref not in {self.pseudonym(i) for i in proof.concerned}:
                await self._refuse(base, "consent-required", concerned=subject, proof=proof)
                raise ProblemError(
                    "consent-required",
                    "The consenting citizen is not named as parent or custody holder "
                    "of the subject.", transfer_id=base["id"])

        data = {k: v for k, v in proof.data.items() if k in permission.fields}
        if permission.preview or (consent is not None and consent.preview):
            # EU OOTS preview: held sealed until the citizen releases it; nothing leaves now
            return await self.previews.hold(base=base, client_id=client_id, proof=proof,
                                            data=data, consent=consent, subject=subject,
                                            idempotency_key=idempotency_key)
        record = self._record(base, Outcome.DELIVERED, proof=proof)
        jws = self._sign(record, client_id, proof, data)
        use = ConsentUse(consent_id=consent.id, now=self._now()) if consent else None
        answer = {"transfer_id": record.id, "proof": jws}
        sealed = (IdempotentAnswer(client_id=client_id, key=idempotency_key,
                                   sealed_response=self._seal_answer(client_id, idempotency_key,
                                                                     answer))
                  if idempotency_key else None)
        committed = await self._store(self._repo.commit_transfer(record, use, sealed))
        if not committed:  # consent revoked/used up while we fetched: nothing leaves
            await self._refuse(base, "consent-required", concerned=subject, proof=proof)
            raise ProblemError("consent-required",
                               "The consent was revoked or used up during the request.",
                               transfer_id=base["id"])
        self._on_committed()
        self.on_outcome(record.proof_type, "delivered")
        log.info("proof.released", transfer_id=record.id, client_id=client_id,
                 proof_type=record.proof_type,
                 duration_ms=round((self._clock() - started) * 1000, 1))
        return answer

    async def _usable_consent(self, request: ProofRequestIn, client_id: str, subject: str,
                              ) -> StoredConsent | None:
        if request.consent_id is None:
            return None
        consent = await self._store(self._repo.consent(request.consent_id))
        now = self._now()
        if (consent is None or consent.service_id != client_id
                or request.proof_type.value not in consent.proof_types
                or consent.purpose != request.purpose
                or consent.subject_ref != self.pseudonym(subject)
                or consent.revoked_at is not None or consent.valid_until <= now
                or (consent.max_uses is not None and consent.uses >= consent.max_uses)):
            return None
        return consent

    def _record(self, base: dict[str, Any], outcome: Outcome, *, error_type: str | None = None,
                proof: ProofData | None = None, concerned: str | None = None) -> TransferRecord:
        if "id" not in base:
            base["id"] = uuid7(self._clock())
        people: list[Concerned] = []
        if proof is not None:
            for idnr in dict.fromkeys(proof.concerned):
                relation = "self" if idnr == base["subject"] else "concerned"
                people.append(Concerned(idnr=idnr, relation=relation))
        if not any(p.idnr == base["subject"] for p in people):
            people.insert(0, Concerned(idnr=concerned or base["subject"], relation="self"))
        register = RegisterRef(id=proof.issuer, name=proof.issuer_name) if proof else None
        fields = {k: v for k, v in base.items() if k != "id"}
        if outcome is not Outcome.DELIVERED:
            fields["data_categories"] = ()
        return TransferRecord(id=base["id"], occurred_at=self._now(), outcome=outcome,
                              error_type=error_type, register=register,
                              concerned=tuple(people), **fields)

    async def _refuse(self, base: dict[str, Any], error_type: str, *, concerned: str,
                      proof: ProofData | None = None) -> None:
        base.pop("id", None)
        record = self._record(base, Outcome.REFUSED, error_type=error_type, proof=proof,
                              concerned=concerned)
        base["id"] = record.id
        await self._store(self._repo.commit_transfer(record))
        self._on_committed()
        self.on_outcome(record.proof_type, "refused")
        log.info("proof.refused", transfer_id=record.id, reason=error_type)

    async def _fail(self, base: dict[str, Any], exc: ConnectorError, subject: str) -> None:
        base.pop("id", None)
        record = self._record(base, Outcome.FAILED, error_type=exc.code, concerned=subject)
        base["id"] = record.id
        await self._store(self._repo.commit_transfer(record))
        self._on_committed()
        self.on_outcome(record.proof_type, "failed")
        log.info("proof.failed", transfer_id=record.id, reason=exc.code)

    def _sign(self, record: TransferRecord, client_id: str, proof: ProofData,
              data: dict[str, Any]) -> str:
        claims = {"iss": self._issuer, "aud": client_id, "sub": record.subject,
                  "iat": int(record.occurred_at.timestamp()), "jti": record.id,
                  "proof_type": record.proof_type, "purpose": record.purpose,
                  "register": {"id": proof.issuer, "name": proof.issuer_name}, "data": data}
        # The claims are encoded with msgspec (compact, UTF-8) and signed by PyJWT's JWS layer:
        # jwt.encode's stdlib JSON encoding cost more than the Ed25519 signature itself
        # (docs/benchmarks.md, 2026-11-29 second round). Same JWS, same verification.
        return _JWS.encode(_CLAIMS_JSON.encode(claims), self._proof_key.private_key,
                           algorithm="EdDSA",
                           headers={"kid": self._proof_key.kid, "typ": "proof+jwt"})

    async def _store(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except StoreError as exc:
            log.error("store.unavailable", error=str(exc))
            raise ProblemError("store-unavailable",
                               "The transfer record could not be written; nothing was released. "
                               "Retry later.", headers={"Retry-After": "5"}) from exc


def _invalid_client(detail: str) -> ProblemError:
    return ProblemError("invalid-client", detail, error="invalid_client")


def _connector_problem(exc: ConnectorError, transfer_id: str) -> ProblemError:
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
