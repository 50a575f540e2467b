"""A small typed async client for Einmal: online services (``ServiceClient``) and citizens
(``CitizenClient``).

Errors:
* EinmalError
  x TransportError            the server could not be reached
  x ProofVerificationError    a proof's signature or claims do not verify (no detail)
  x ProblemError              the server answered an RFC 9457 problem
    x InvalidRequestError, AuthenticationError, PermissionDeniedError, ConsentRequiredError,
      NotFoundError, RegisterUnavailableError, RegisterTimeoutError, StoreUnavailableError
"""

import time
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import jwt
import msgspec

from einmal.keys import _unb64u

__all__ = [
    "AuthenticationError", "CitizenClient", "Consent", "ConsentRequiredError", "EinmalError",
    "InvalidRequestError", "NotFoundError", "PermissionDeniedError", "ProblemError",
    "ProofVerificationError", "RegisterTimeoutError", "RegisterUnavailableError",
    "ServiceClient", "StoreUnavailableError", "Transfer", "TransportError", "VerifiedProof",
]

_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class EinmalError(Exception):
    """Base of every client error."""


class TransportError(EinmalError):
    """The server could not be reached."""


class ProofVerificationError(EinmalError):
    """The proof does not verify. Deliberately without detail."""


class ProblemError(EinmalError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.type = str(body.get("type", "about:blank"))
        self.title = str(body.get("title", ""))
        self.detail = str(body.get("detail", ""))
        self.code = body.get("code")
        self.transfer_id = body.get("transfer_id")
        super().__init__(f"{status} {self.type.rsplit(':', 1)[-1]}: {self.detail or self.title}")


class InvalidRequestError(ProblemError): ...
class AuthenticationError(ProblemError): ...
class PermissionDeniedError(ProblemError): ...
class ConsentRequiredError(ProblemError): ...
class NotFoundError(ProblemError): ...
class RegisterUnavailableError(ProblemError): ...
class RegisterTimeoutError(ProblemError): ...
class StoreUnavailableError(ProblemError): ...


_BY_TYPE: dict[str, type[ProblemError]] = {
    "invalid-request": InvalidRequestError, "routing-failed": InvalidRequestError,
    "invalid-client": AuthenticationError, "unauthenticated": AuthenticationError,
    "forbidden": PermissionDeniedError, "permission-denied": PermissionDeniedError,
    "consent-required": ConsentRequiredError, "not-found": NotFoundError,
    "register-unavailable": RegisterUnavailableError, "register-timeout": RegisterTimeoutError,
    "store-unavailable": StoreUnavailableError,
}


def problem_from(response: httpx.Response) -> ProblemError:
    try:
        body = response.json()
        if not isinstance(body, dict):
            body = {}
    except ValueError:
        body = {"detail": response.text[:200]}
    slug = str(body.get("type", "")).rsplit(":", 1)[-1]
    return _BY_TYPE.get(slug, ProblemError)(response.status_code, body)


class VerifiedProof(msgspec.Struct, frozen=True, kw_only=True):
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
    id: str
    service_id: str
    proof_types: list[str]
    purpose: str
    status: str
    subject: str = ""
    service_name: str = ""
    valid_until: datetime | None = None
    max_uses: int | None = None
    uses: int = 0


class Transfer(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    occurred_at: datetime
    outcome: str
    proof_type: str
    purpose: str
    service: dict[str, str]
    error_type: str | None = None
    register: dict[str, str] | None = None
    data_categories: list[str] = []
    legal_basis: str = ""
    purpose_text: str = ""
    consent_id: str | None = None
    relation: str = "self"


class _Base:
    def __init__(self, base_url: str, http: httpx.AsyncClient | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=_TIMEOUT)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            msg = f"cannot reach {self.base_url}: {type(exc).__name__}"
            raise TransportError(msg) from exc
        if response.status_code >= 400:  # noqa: PLR2004
            raise problem_from(response)
        return response

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None,
                        ) -> None:
        await self.aclose()


class ServiceClient(_Base):
    """An online service: authenticates with its private key and fetches verified proofs."""

    def __init__(self, base_url: str, client_id: str, private_jwk: dict[str, Any], *,
                 http: httpx.AsyncClient | None = None, token_endpoint: str | None = None,
                 ) -> None:
        super().__init__(base_url, http)
        self.client_id = client_id
        self._kid = private_jwk["kid"]
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
            Ed25519PrivateKey,
        )

        self._key = Ed25519PrivateKey.from_private_bytes(_unb64u(private_jwk["d"]))
        self._token_endpoint = token_endpoint or f"{self.base_url}/v1/token"
        self._token: tuple[str, float] | None = None
        self._jwks: dict[str, Any] | None = None

    async def access_token(self) -> str:
        if self._token and self._token[1] > time.time() + 30:
            return self._token[0]
        now = int(time.time())
        assertion = jwt.encode(
            {"iss": self.client_id, "sub": self.client_id, "aud": self._token_endpoint,
             "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
            self._key, algorithm="EdDSA", headers={"kid": self._kid})
        response = await self._send("POST", self._token_endpoint, data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})
        body = response.json()
        self._token = (body["access_token"], time.time() + float(body["expires_in"]))
        return self._token[0]

    async def _keys(self, *, refresh: bool = False) -> dict[str, Any]:
        if self._jwks is None or refresh:
            document = (await self._send("GET", "/.well-known/jwks.json")).json()
            self._jwks = {k["kid"]: jwt.PyJWK(k).key for k in document["keys"]}
        return self._jwks

    async def fetch_proof(self, proof_type: str, subject: str, purpose: str, *,
                          consent_id: str | None = None,
                          parameters: dict[str, Any] | None = None) -> VerifiedProof:
        body = {"proof_type": proof_type, "subject": subject, "purpose": purpose,
                "parameters": parameters or {}}
        if consent_id:
            body["consent_id"] = consent_id
        token = await self.access_token()
        response = await self._send("POST", "/v1/proof-requests", json=body,
                                    headers={"authorization": f"Bearer {token}"})
        answer = response.json()
        return await self.verify(answer["proof"], transfer_id=answer["transfer_id"],
                                 subject=subject, proof_type=proof_type)

    async def verify(self, unverified_jws: str, *, transfer_id: str, subject: str,
                     proof_type: str) -> VerifiedProof:
        try:
            kid = jwt.get_unverified_header(unverified_jws).get("kid")
            keys = await self._keys()
            if kid not in keys:
                keys = await self._keys(refresh=True)
            claims = jwt.decode(unverified_jws, keys[kid], algorithms=["EdDSA"],
                                audience=self.client_id,
                                options={"require": ["iss", "aud", "sub", "iat", "jti"]})
        except (jwt.InvalidTokenError, KeyError) as exc:
            raise ProofVerificationError("the proof does not verify") from exc
        if (claims["jti"] != transfer_id or claims["sub"] != subject
                or claims.get("proof_type") != proof_type):
            raise ProofVerificationError("the proof does not verify")
        return VerifiedProof(
            transfer_id=transfer_id, proof_type=proof_type, subject=subject,
            register_id=claims["register"]["id"], register_name=claims["register"]["name"],
            purpose=claims["purpose"], issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            data=claims["data"], raw_jws=unverified_jws)


class CitizenClient(_Base):
    """A citizen with a bearer token (eID login; the demo identity provider in demo mode)."""

    def __init__(self, base_url: str, access_token: str, *,
                 http: httpx.AsyncClient | None = None) -> None:
        super().__init__(base_url, http)
        self._auth = {"authorization": f"Bearer {access_token}"}

    @classmethod
    async def demo_login(cls, base_url: str, idnr: str, *,
                         http: httpx.AsyncClient | None = None) -> "CitizenClient":
        probe = _Base(base_url, http)
        try:
            response = await probe._send("POST", "/demo/citizen-token", json={"idnr": idnr})  # noqa: SLF001
        finally:
            await probe.aclose()
        return cls(base_url, response.json()["access_token"], http=http)

    async def grant_consent(self, service_id: str, proof_types: list[str], purpose: str,
                            valid_until: datetime, *, max_uses: int | None = None,
                            subject: str | None = None) -> Consent:
        body: dict[str, Any] = {"service_id": service_id, "proof_types": proof_types,
                                "purpose": purpose,
                                "valid_until": valid_until.astimezone(UTC).isoformat()}
        if max_uses is not None:
            body["max_uses"] = max_uses
        if subject is not None:
            body["subject"] = subject
        response = await self._send("POST", "/v1/consents", json=body, headers=self._auth)
        return msgspec.convert(response.json(), Consent, strict=False)

    async def list_consents(self) -> list[Consent]:
        response = await self._send("GET", "/v1/consents", headers=self._auth)
        return msgspec.convert(response.json()["items"], list[Consent], strict=False)

    async def revoke_consent(self, consent_id: str) -> Consent:
        response = await self._send("DELETE", f"/v1/consents/{consent_id}", headers=self._auth)
        return msgspec.convert(response.json(), Consent, strict=False)

    async def transfers(self, *, limit: int = 200) -> list[Transfer]:
        items: list[Transfer] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = (await self._send("GET", "/v1/me/transfers", params=params,
                                     headers=self._auth)).json()
            items += msgspec.convert(page["items"], list[Transfer], strict=False)
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    async def raw_transfers(self) -> list[dict[str, Any]]:
        """The log as the server sent it (for checks that no value leaked)."""
        response = await self._send("GET", "/v1/me/transfers", params={"limit": 200},
                                    headers=self._auth)
        return list(response.json()["items"])
