"""A small typed async client for Einmal: online services fetch proofs, citizens manage consents.

``ServiceClient`` authenticates an online service with an RFC 7523 client assertion, fetches
proofs and verifies the broker's signature before anything is used. ``CitizenClient`` grants
and revokes consents and reads the citizen's cockpit log. Both speak ``docs/api.md``.

Errors (every httpx error is translated here, chained with ``raise ... from exc``):

* EinmalError
  x TransportError                 the server could not be reached / the connection broke
  x InvalidResponseError           a 2xx answer that is not what the contract promises
  x ProofVerificationError         the proof's signature or claims do not verify (one message)
  x ProblemError                   the server answered with an error (RFC 9457 problem details)
    x AuthenticationError          ``invalid-client``, ``unauthenticated``
    x PermissionDeniedError        ``permission-denied``, ``forbidden``
    x ConsentRequiredError         ``consent-required``
    x NotFoundError                ``not-found``
    x InvalidRequestError          ``invalid-request``
      x RoutingFailedError         ``routing-failed``
    x RegisterUnavailableError     ``register-unavailable``
      x RegisterTimeoutError       ``register-timeout``
    x StoreUnavailableError        ``store-unavailable``
    x PreviewRefusedError          ``preview-refused``
    x PreviewExpiredError          ``preview-expired``
    x PreviewCollectedError        ``preview-collected``
  x PreviewRequiredError           ``fetch_proof`` got 202: the citizen must release it first
  x PreviewPendingError            ``wait_for_preview`` timed out while still pending

Preview (EU OOTS): when the service's policy or the citizen's consent asks for it, the broker
answers ``202`` and holds the proof until the citizen accepts or refuses it in the cockpit.
``ServiceClient.request_proof`` returns a ``VerifiedProof`` or a ``PreviewRequired``;
``collect(preview)`` asks once, ``wait_for_preview(preview)`` polls until the citizen decided::

    result = await service.request_proof("custody", child, "unterhaltsvorschuss-antrag", ...)
    if isinstance(result, PreviewRequired):
        show_the_citizen(result.preview_url)          # or tell them to open their cockpit
        result = await service.wait_for_preview(result, timeout=600)
    # VerifiedProof, or PreviewRefusedError / PreviewExpiredError

``fetch_proof`` keeps its simple contract (a ``VerifiedProof`` or an error): a held proof raises
``PreviewRequiredError`` whose ``preview`` goes to ``collect``/``wait_for_preview``.
"""

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import httpx
import jwt
import msgspec

from einmal_client.errors import (
    AuthenticationError,
    ConsentRequiredError,
    EinmalError,
    InvalidRequestError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    PreviewCollectedError,
    PreviewExpiredError,
    PreviewPendingError,
    PreviewRefusedError,
    PreviewRequiredError,
    ProblemError,
    ProofVerificationError,
    RegisterTimeoutError,
    RegisterUnavailableError,
    RoutingFailedError,
    StoreUnavailableError,
    TransportError,
    problem_from_response,
)
from einmal_client.sources import (
    ContentAnswer,
    Envelope,
    InvalidSourceAnswerError,
    SessionKey,
    SourceEntry,
    open_relayed_content,
    open_relayed_list,
)

__all__ = [
    "AuthenticationError",
    "CitizenClient",
    "Consent",
    "ConsentRequiredError",
    "EinmalError",
    "InvalidRequestError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "Preview",
    "PreviewCollectedError",
    "PreviewExpiredError",
    "PreviewPendingError",
    "PreviewRefusedError",
    "PreviewRequired",
    "PreviewRequiredError",
    "ProblemError",
    "ProofVerificationError",
    "RegisterRef",
    "RegisterTimeoutError",
    "RegisterUnavailableError",
    "RoutingFailedError",
    "ServiceClient",
    "ServiceRef",
    "SourceAnswer",
    "SourceInfo",
    "StoreUnavailableError",
    "Transfer",
    "TransportError",
    "VerifiedProof",
]

#: Timeouts of every HTTP call when the client creates its own ``httpx.AsyncClient``.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_PROOF_TYP = "proof+jwt"
_ASSERTION_TTL_S = 60
_TOKEN_MARGIN_S = 30
_CLOCK_LEEWAY_S = 30
_MAX_PAGE = 200
_T = TypeVar("_T")


# --- result types ------------------------------------------------------------------------------

class VerifiedProof(msgspec.Struct, frozen=True, kw_only=True):
    """A proof whose broker signature and claims have been verified."""

    transfer_id: str
    proof_type: str
    subject: str
    register_id: str
    register_name: str
    purpose: str
    issued_at: datetime
    data: dict[str, Any]
    raw_jws: str


class Consent(msgspec.Struct, frozen=True, kw_only=True):
    """A citizen's consent as the broker reports it; unknown fields are ignored."""

    id: str
    service_id: str
    proof_types: tuple[str, ...]
    purpose: str
    status: str                     # "active" | "revoked" | "expired" | "used_up"
    service_name: str = ""
    subject: str | None = None
    granted_at: datetime | None = None
    valid_until: datetime | None = None
    max_uses: int | None = None
    uses: int = 0
    revoked_at: datetime | None = None
    preview: bool = False


class PreviewRequired(msgspec.Struct, frozen=True, kw_only=True):
    """The broker holds the proof until the citizen releases it (``202``, EU OOTS preview).

    ``proof_type`` and ``subject`` are what was asked (kept here to verify the proof at
    collection); build one yourself from stored values to collect after a restart."""

    request_id: str
    status_url: str
    preview_url: str
    expires_at: datetime
    proof_type: str
    subject: str
    code: str = "EDM:ERR:0002"


class Preview(msgspec.Struct, frozen=True, kw_only=True):
    """A held proof as its citizen sees it; ``data`` only from ``CitizenClient.preview``."""

    request_id: str
    service_id: str
    proof_type: str
    purpose: str
    status: str                     # "pending" | "accepted" | "refused" | "expired" | "collected"
    expires_at: datetime
    service_name: str = ""
    authority: str = ""
    purpose_text: str = ""
    legal_basis: str = ""
    retention_days: int | None = None
    subject_masked: str = ""
    fields: tuple[str, ...] = ()
    created_at: datetime | None = None
    data: dict[str, Any] | None = None
    register_name: str | None = None


class ServiceRef(msgspec.Struct, frozen=True, kw_only=True):
    """The online service that received (or asked for) a proof."""

    id: str
    name: str = ""
    authority: str = ""
    land: str = ""


class RegisterRef(msgspec.Struct, frozen=True, kw_only=True):
    """The register that answered."""

    id: str
    name: str = ""


class Transfer(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the citizen's cockpit log; never carries proof values."""

    id: str
    occurred_at: datetime
    outcome: str                    # "delivered" | "refused" | "failed"
    proof_type: str
    service: ServiceRef
    purpose: str = ""
    error_type: str | None = None
    data_categories: tuple[str, ...] = ()
    register: RegisterRef | None = None
    intermediaries: tuple[str, ...] = ()
    purpose_text: str = ""
    legal_basis: str = ""
    consent_id: str | None = None
    subject_masked: str = ""
    relation: str = ""              # "self" | "child" | "parent" | "concerned"
    retention_until: datetime | None = None
    correlation_id: str | None = None


class SourceInfo(msgspec.Struct, frozen=True):
    """A source the cockpit can ask (a register, a broker): ``key`` signs its answers."""

    id: str
    name: str
    kind: str
    group: str
    key: dict[str, Any] | None = None


class SourceAnswer(msgspec.Struct, frozen=True):
    """One source's answer to ``CitizenClient.source_query``: ``status`` "ok" with its
    ``entries`` (opened with the client's own key, the source's signature checked), "late"
    (no answer by the cockpit's deadline) or "error" (``detail`` says why)."""

    source: SourceInfo
    status: str
    detail: str = ""
    entries: tuple[SourceEntry, ...] = ()


class _SourceList(msgspec.Struct, frozen=True):
    items: list[SourceInfo]


class _Relayed(msgspec.Struct, frozen=True):
    source: str
    status: str
    detail: str = ""
    envelope: Envelope | None = None


class _RelayedList(msgspec.Struct, frozen=True):
    answers: list[_Relayed]


class _RelayedContent(msgspec.Struct, frozen=True):
    source: str
    envelope: Envelope


class _Token(msgspec.Struct, frozen=True):
    access_token: str
    expires_in: int = 300


class _ProofAnswer(msgspec.Struct, frozen=True):
    transfer_id: str
    proof: str


class _ConsentList(msgspec.Struct, frozen=True):
    items: list[Consent]


class _Pending(msgspec.Struct, frozen=True):
    status: str
    request_id: str
    status_url: str
    preview_url: str
    expires_at: datetime
    code: str = "EDM:ERR:0002"


class _PreviewList(msgspec.Struct, frozen=True):
    items: list[Preview]


class _RawPage(msgspec.Struct, frozen=True):
    items: list[dict[str, Any]]
    next_cursor: str | None = None


class _JwkSet(msgspec.Struct, frozen=True):
    keys: list[dict[str, Any]]


# --- shared HTTP plumbing ----------------------------------------------------------------------

class _Http:
    """An httpx client that is either borrowed (left open) or owned (closed by ``aclose``)."""

    def __init__(self, base_url: str, http: httpx.AsyncClient | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.owned = http is None
        self.client = http or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}{path}"

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self.url(path)
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            msg = f"{method} {url}: {type(exc).__name__}: {exc}"
            raise TransportError(msg, url=url) from exc
        if response.is_error:
            raise problem_from_response(response)
        return response

    async def aclose(self) -> None:
        if self.owned:
            await self.client.aclose()


def _decode(response: httpx.Response, type_: type[_T]) -> _T:
    try:
        return msgspec.json.decode(response.content, type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        msg = f"{response.request.method} {response.request.url}: unexpected answer ({exc})"
        raise InvalidResponseError(msg) from exc


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# --- online services ---------------------------------------------------------------------------

class ServiceClient:
    """An online service talking to the broker.

    Args:
        base_url: the broker's base URL, e.g. ``http://127.0.0.1:8000``.
        client_id: the service id (the policy ``id``).
        private_jwk: the service's Ed25519 private JWK (with ``kid``).
        http: an httpx client to borrow (not closed here); by default one is created
            with a 10 s timeout.
        token_endpoint: the token endpoint URL, also the assertion's ``aud``
            (default ``<base_url>/v1/token``; use the broker's published URL if it differs).
        issuer: if given, a proof's ``iss`` must equal it.
        clock: seconds since the epoch (injected for tests).
    """

    def __init__(self, base_url: str, client_id: str, private_jwk: Mapping[str, Any], *,
                 http: httpx.AsyncClient | None = None, token_endpoint: str | None = None,
                 issuer: str | None = None, clock: Callable[[], float] = time.time) -> None:
        try:
            kid = str(private_jwk["kid"])
            key = jwt.PyJWK(dict(private_jwk), algorithm="EdDSA").key
        except (KeyError, jwt.PyJWKError) as exc:
            msg = "private_jwk must be an Ed25519 private JWK with a kid"
            raise ValueError(msg) from exc
        self._http = _Http(base_url, http)
        self.client_id = client_id
        self.token_endpoint = token_endpoint or f"{self._http.base_url}/v1/token"
        self._kid, self._key = kid, key
        self._issuer = issuer
        self._clock = clock
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_lock = asyncio.Lock()
        self._jwks: dict[str, Any] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        await self._http.aclose()

    # -- token ----------------------------------------------------------------------------------

    def client_assertion(self) -> str:
        """A fresh RFC 7523 client assertion (EdDSA, valid 60 s, unique ``jti``)."""
        now = int(self._clock())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_endpoint,
                  "iat": now, "exp": now + _ASSERTION_TTL_S, "jti": secrets.token_urlsafe(16)}
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self._kid})

    async def access_token(self) -> str:
        """The cached access token, or a new one shortly before the cached one expires."""
        async with self._token_lock:
            if self._token is not None and self._clock() < self._token_refresh_at:
                return self._token
            form = {"grant_type": "client_credentials", "client_id": self.client_id,
                    "client_assertion_type": _JWT_BEARER,
                    "client_assertion": self.client_assertion()}
            obtained = self._clock()
            token = _decode(await self._http.send("POST", self.token_endpoint, data=form),
                            _Token)
            # Renew 30 s before expiry, or half-way through a very short lifetime.
            lifetime = max(token.expires_in - _TOKEN_MARGIN_S, token.expires_in / 2)
            self._token, self._token_refresh_at = token.access_token, obtained + lifetime
            return token.access_token

    # -- proofs ---------------------------------------------------------------------------------

    async def fetch_proof(self, proof_type: str, subject: str, purpose: str, *,
                          consent_id: str | None = None,
                          parameters: Mapping[str, Any] | None = None,
                          correlation_id: str | None = None) -> VerifiedProof:
        """Request a proof and return it verified.

        Raises:
            PreviewRequiredError: the broker holds the proof for the citizen's preview
                (``exc.preview`` goes to ``collect`` / ``wait_for_preview``).
            ProblemError: the broker refused or failed (the subclass says why; a recorded
                refusal or failure carries ``transfer_id``).
            ProofVerificationError: the answer's signature or claims do not verify.
            TransportError: the broker could not be reached.
        """
        result = await self.request_proof(proof_type, subject, purpose, consent_id=consent_id,
                                          parameters=parameters, correlation_id=correlation_id)
        if isinstance(result, PreviewRequired):
            raise PreviewRequiredError(result)
        return result

    async def request_proof(self, proof_type: str, subject: str, purpose: str, *,
                            consent_id: str | None = None,
                            parameters: Mapping[str, Any] | None = None,
                            correlation_id: str | None = None,
                            idempotency_key: str | None = None,
                            ) -> "VerifiedProof | PreviewRequired":
        """Like ``fetch_proof``, but a held proof (``202``) is returned as ``PreviewRequired``
        instead of raised. ``idempotency_key``: a retry returns the first answer."""
        body: dict[str, Any] = {"proof_type": proof_type, "subject": subject, "purpose": purpose}
        if consent_id is not None:
            body["consent_id"] = consent_id
        if parameters is not None:
            body["parameters"] = dict(parameters)
        headers = {"x-correlation-id": correlation_id} if correlation_id else {}
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        try:
            response = await self._post_proof_request(body, headers)
        except AuthenticationError:
            # The broker may have restarted with new keys: one retry with a fresh token
            # (a 401 means nothing was fetched, so the retry cannot fetch twice).
            self._token = None
            response = await self._post_proof_request(body, headers)
        return await self._proof_or_preview(response, subject=subject, proof_type=proof_type)

    async def _proof_or_preview(self, response: httpx.Response, *, subject: str,
                                proof_type: str) -> "VerifiedProof | PreviewRequired":
        if response.status_code == 202:
            pending = _decode(response, _Pending)
            return PreviewRequired(request_id=pending.request_id, status_url=pending.status_url,
                                   preview_url=pending.preview_url,
                                   expires_at=pending.expires_at, code=pending.code,
                                   proof_type=proof_type, subject=subject)
        try:
            answer = msgspec.json.decode(response.content, type=_ProofAnswer)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ProofVerificationError from exc
        return await self.verify(answer.proof, transfer_id=answer.transfer_id, subject=subject,
                                 proof_type=proof_type)

    async def collect(self, preview: PreviewRequired) -> "VerifiedProof | PreviewRequired":
        """Ask once for a held proof: the verified proof if the citizen released it (handed
        out once), or the (updated) ``PreviewRequired`` while the citizen has not decided.

        Raises:
            PreviewRefusedError: the citizen refused; nothing was released.
            PreviewExpiredError: not released and collected in time; destroyed.
            PreviewCollectedError: already collected (by an earlier call).
            NotFoundError: unknown, or another service's request.
        """
        path = f"/v1/proof-requests/{preview.request_id}"
        token = await self.access_token()
        response = await self._http.send("GET", path, headers=_bearer(token))
        return await self._proof_or_preview(response, subject=preview.subject,
                                            proof_type=preview.proof_type)

    async def wait_for_preview(self, preview: PreviewRequired, *, timeout: float | None = None,
                               interval: float = 2.0) -> VerifiedProof:
        """Poll ``collect`` every ``interval`` seconds until the citizen decided.

        ``timeout`` (seconds) defaults to the preview's expiry. Raises what ``collect`` raises,
        and ``PreviewPendingError`` if the citizen has not decided within ``timeout``.
        """
        deadline = (self._clock() + timeout if timeout is not None
                    else preview.expires_at.timestamp() + interval)
        while True:
            result = await self.collect(preview)
            if isinstance(result, VerifiedProof):
                return result
            preview = result
            if self._clock() + interval > deadline:
                msg = f"the citizen has not decided on preview {preview.request_id} yet"
                raise PreviewPendingError(msg, preview=preview)
            await asyncio.sleep(interval)

    async def _post_proof_request(self, body: dict[str, Any], headers: dict[str, str],
                                  ) -> httpx.Response:
        token = await self.access_token()
        return await self._http.send("POST", "/v1/proof-requests", json=body,
                                     headers={**headers, **_bearer(token)})

    async def verify(self, unverified_jws: str, *, transfer_id: str, subject: str,
                     proof_type: str) -> VerifiedProof:
        """Verify a compact JWS from the broker against its JWKS and the expected claims.

        NOTE: only EdDSA is accepted; the key is chosen by ``kid`` from the broker's JWKS
        (refetched once for an unknown ``kid``: key rotation); every failure raises the same
        ``ProofVerificationError`` (the cause is chained for developers, the message is fixed).
        """
        try:
            header = jwt.get_unverified_header(unverified_jws)
        except jwt.PyJWTError as exc:
            raise ProofVerificationError from exc
        kid = header.get("kid")
        # 1. Pin the algorithm and type before any key lookup.
        if (header.get("alg") != "EdDSA" or not isinstance(kid, str)
                or header.get("typ", _PROOF_TYP) != _PROOF_TYP):
            raise ProofVerificationError
        # 2. The broker's key for this kid.
        key = await self._broker_key(kid)
        # 3. Signature, audience, issuer (if pinned) and required claims.
        try:
            claims = jwt.decode(unverified_jws, key, algorithms=["EdDSA"],
                                audience=self.client_id, issuer=self._issuer,
                                leeway=_CLOCK_LEEWAY_S,
                                options={"require": ["iss", "aud", "sub", "iat", "jti"]})
        except jwt.PyJWTError as exc:
            raise ProofVerificationError from exc
        # 4. The claims are about what was asked for.
        register, data, iat = claims.get("register"), claims.get("data"), claims.get("iat")
        if (claims.get("jti") != transfer_id or claims.get("sub") != subject
                or claims.get("proof_type") != proof_type or not isinstance(data, dict)
                or not isinstance(register, dict) or not isinstance(iat, int)):
            raise ProofVerificationError
        return VerifiedProof(
            transfer_id=transfer_id, proof_type=proof_type, subject=subject,
            register_id=str(register.get("id", "")), register_name=str(register.get("name", "")),
            purpose=str(claims.get("purpose", "")), issued_at=datetime.fromtimestamp(iat, tz=UTC),
            data=data, raw_jws=unverified_jws)

    async def _broker_key(self, kid: str) -> Any:
        if self._jwks is None or kid not in self._jwks:
            self._jwks = await self._fetch_jwks()
        key = self._jwks.get(kid)
        if key is None:
            raise ProofVerificationError
        return key

    async def _fetch_jwks(self) -> dict[str, Any]:
        response = await self._http.send("GET", "/.well-known/jwks.json")
        keys: dict[str, Any] = {}
        for jwk in _decode(response, _JwkSet).keys:
            # NOTE: Ed25519 public keys only; anything else in the set is skipped.
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
                continue
            try:
                keys[str(jwk["kid"])] = jwt.PyJWK(jwk, algorithm="EdDSA").key
            except (KeyError, jwt.PyJWKError):
                continue
        return keys


# --- citizens ----------------------------------------------------------------------------------

class CitizenClient:
    """A citizen managing consents (broker) and reading their transfer log (cockpit).

    Args:
        base_url: the server's base URL (broker and cockpit in one process).
        access_token: a citizen access token (eID login; ``demo_login`` in demo mode).
        http: an httpx client to borrow (not closed here); by default one is created
            with a 10 s timeout.
    """

    def __init__(self, base_url: str, access_token: str, *,
                 http: httpx.AsyncClient | None = None, idnr: str | None = None) -> None:
        self._http = _Http(base_url, http)
        self._headers = _bearer(access_token)
        #: the citizen's IdNr: the sources' answers must be about it (``source_query``)
        self.idnr = idnr

    @classmethod
    async def demo_login(cls, base_url: str, idnr: str, *,
                         http: httpx.AsyncClient | None = None) -> Self:
        """Log in as a demo citizen (demo mode only: the stand-in for eID)."""
        transport = _Http(base_url, http)
        try:
            response = await transport.send("POST", "/demo/citizen-token", json={"idnr": idnr})
            token = _decode(response, _Token)
        except BaseException:
            await transport.aclose()
            raise
        citizen = cls(base_url, token.access_token, http=transport.client, idnr=idnr)
        citizen._http.owned = transport.owned
        return citizen

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        await self._http.aclose()

    async def grant_consent(self, service_id: str, proof_types: Sequence[str], purpose: str,
                            valid_until: datetime, *, max_uses: int | None = None,
                            subject: str | None = None, preview: bool = False) -> Consent:
        """Grant ``service_id`` a consent; ``subject`` defaults to the citizen (or a child).
        ``preview``: each proof fetched with it waits for my release (``previews``)."""
        body: dict[str, Any] = {"service_id": service_id, "proof_types": list(proof_types),
                                "purpose": purpose, "valid_until": _rfc3339(valid_until)}
        if max_uses is not None:
            body["max_uses"] = max_uses
        if subject is not None:
            body["subject"] = subject
        if preview:
            body["preview"] = True
        response = await self._http.send("POST", "/v1/consents", json=body,
                                         headers=self._headers)
        return _decode(response, Consent)

    async def list_consents(self) -> list[Consent]:
        """Every consent of the citizen, whatever its status."""
        response = await self._http.send("GET", "/v1/consents", headers=self._headers)
        return _decode(response, _ConsentList).items

    async def revoke_consent(self, consent_id: str) -> Consent:
        """Revoke a consent; it binds every proof request that starts after this returns."""
        response = await self._http.send("DELETE", f"/v1/consents/{consent_id}",
                                         headers=self._headers)
        return _decode(response, Consent)

    async def previews(self, *, status: str | None = None) -> list[Preview]:
        """Proofs held for my release: pending ones, or ``status`` ("all", "accepted", ...)."""
        params = {"status": status} if status else {}
        response = await self._http.send("GET", "/v1/me/previews", params=params,
                                         headers=self._headers)
        return _decode(response, _PreviewList).items

    async def preview(self, request_id: str) -> Preview:
        """One preview with ``data``: exactly what the service would get."""
        response = await self._http.send("GET", f"/v1/me/previews/{request_id}",
                                         headers=self._headers)
        return _decode(response, Preview)

    async def accept_preview(self, request_id: str) -> Preview:
        """Release the held proof: the service may collect it (once)."""
        return await self._decide(request_id, "accept")

    async def refuse_preview(self, request_id: str) -> Preview:
        """Refuse: the held proof is destroyed and the service is told."""
        return await self._decide(request_id, "refuse")

    async def _decide(self, request_id: str, decision: str) -> Preview:
        response = await self._http.send("POST", f"/v1/me/previews/{request_id}",
                                         json={"decision": decision}, headers=self._headers)
        return _decode(response, Preview)

    async def receipt(self, transfer_id: str) -> str:
        """My receipt of a transfer (C2SP tlog-proof text: the entry, its inclusion proof and
        the cosigned checkpoint); check it with ``einmal_client.receipt.verify_receipt``.
        ``NotFoundError`` until a published checkpoint covers it, or if it is not mine."""
        response = await self._http.send("GET", f"/v1/me/transfers/{transfer_id}/receipt",
                                         headers=self._headers)
        return response.text

    # -- the source model: the cockpit relays, this client opens (decision 0034) ---------------

    async def sources(self) -> list[SourceInfo]:
        """The sources the cockpit can ask about me, with the keys that sign their answers."""
        response = await self._http.send("GET", "/v1/me/sources", headers=self._headers)
        return _decode(response, _SourceList).items

    def _my_idnr(self) -> str:
        if self.idnr is None:
            msg = "source queries need the citizen's IdNr: CitizenClient(..., idnr=...)"
            raise ValueError(msg)
        return self.idnr

    async def source_query(self, sources: Sequence[str] | None = None, *,
                           known: Sequence[SourceInfo] | None = None) -> list[SourceAnswer]:
        """Ask the sources (all, or ``sources``) what they logged about me, live.

        A fresh X25519 key is made for this query; the cockpit relays each source's answer
        encrypted to it and signed by the source, and this client opens and checks it (about
        my IdNr, from that source, for this request). An answer that fails a check is
        reported as status "error", never returned. ``known``: the source list to take the
        keys from (default: ``sources()``)."""
        idnr = self._my_idnr()
        infos = {s.id: s for s in (known if known is not None else await self.sources())}
        session = SessionKey()
        body: dict[str, Any] = {"session_key": session.public_jwk}
        if sources is not None:
            body["sources"] = list(sources)
        response = await self._http.send("POST", "/v1/me/source-queries", json=body,
                                         headers=self._headers)
        answers = []
        for relayed in _decode(response, _RelayedList).answers:
            info = infos.get(relayed.source) or SourceInfo(
                id=relayed.source, name=relayed.source, kind="", group="")
            if relayed.status != "ok" or relayed.envelope is None:
                answers.append(SourceAnswer(source=info, status=relayed.status,
                                            detail=relayed.detail))
                continue
            try:
                if info.key is None:
                    msg = "the cockpit named no key for this source"
                    raise InvalidSourceAnswerError(msg)
                opened = open_relayed_list(relayed.envelope, session=session,
                                           source_id=info.id, source_key=info.key, idnr=idnr)
            except InvalidSourceAnswerError as exc:
                answers.append(SourceAnswer(source=info, status="error", detail=str(exc)))
                continue
            answers.append(SourceAnswer(source=info, status="ok", entries=opened.entries))
        return answers

    async def source_content(self, source: SourceInfo, entry_id: str) -> ContentAnswer:
        """The content data of one entry, from its source (relayed, opened here).
        ``InvalidSourceAnswerError`` if the answer fails a check."""
        idnr = self._my_idnr()
        if source.key is None:
            msg = f"no key for {source.id}"
            raise InvalidSourceAnswerError(msg)
        session = SessionKey()
        response = await self._http.send(
            "POST", "/v1/me/source-queries/content", headers=self._headers,
            json={"session_key": session.public_jwk, "source": source.id, "entry_id": entry_id})
        relayed = _decode(response, _RelayedContent)
        return open_relayed_content(relayed.envelope, session=session, source_id=source.id,
                                    source_key=source.key, idnr=idnr, entry_id=entry_id)

    async def transfers(self, *, limit: int | None = None,
                        since: datetime | None = None) -> list[Transfer]:
        """The cockpit log, newest first, following ``next_cursor``.

        Args:
            limit: at most this many entries (default: all).
            since: stop at the first entry that occurred before this time.
        """
        raw = await self.raw_transfers(limit=limit, since=since)
        try:
            return msgspec.convert(raw, list[Transfer])
        except msgspec.ValidationError as exc:
            msg = f"GET /v1/me/transfers: unexpected answer ({exc})"
            raise InvalidResponseError(msg) from exc

    async def raw_transfers(self, *, limit: int | None = None,
                            since: datetime | None = None) -> list[dict[str, Any]]:
        """The cockpit log exactly as the server sent it (for audits: no field dropped)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while limit is None or len(items) < limit:
            size = _MAX_PAGE if limit is None else min(_MAX_PAGE, limit - len(items))
            params: dict[str, Any] = {"limit": size}
            if cursor:
                params["cursor"] = cursor
            response = await self._http.send("GET", "/v1/me/transfers", params=params,
                                             headers=self._headers)
            page = _decode(response, _RawPage)
            for item in page.items:
                if since is not None and _occurred_before(item, since):
                    return items
                items.append(item)
            cursor = page.next_cursor
            if not cursor or not page.items:
                break
        return items


def _rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        msg = "valid_until must be timezone-aware"
        raise ValueError(msg)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _occurred_before(item: Mapping[str, Any], since: datetime) -> bool:
    try:
        occurred = datetime.fromisoformat(str(item["occurred_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return False
    return occurred < since
