"""OpenID Connect relying party: authorization code flow with PKCE (S256), state and nonce.

JOSE is PyJWT (decision 0002): the id_token's signature is checked against the issuer's JWK
set (from its discovery document), and ``iss``, ``aud``, ``exp``, ``iat`` and ``nonce`` are
required and checked. Why not authlib: decision 0013.
"""

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import structlog

from cockpit.web.session import PendingLogin

__all__ = ["LoginError", "OidcClient", "OidcLogin"]

log = structlog.get_logger()
#: asymmetric algorithms only: "none" and HS* (key confusion) never verify
_ALGORITHMS = ("EdDSA", "ES256", "ES384", "RS256", "PS256")


class LoginError(Exception):
    """The identity provider refused, or answered something we cannot trust."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OidcLogin:
    def __init__(self, *, idnr: str, access_token: str, expires_at: float) -> None:
        self.idnr = idnr
        self.access_token = access_token
        self.expires_at = expires_at


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcClient:
    def __init__(self, *, issuer: str, client_id: str, client_secret: str | None, scopes: str,
                 redirect_uri: str, idnr_claim: str, http: httpx.AsyncClient) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.scopes = scopes if "openid" in scopes.split() else f"openid {scopes}".strip()
        self.redirect_uri = redirect_uri
        self._claim = idnr_claim
        self._http = http
        self._metadata: dict[str, Any] | None = None
        self._jwks: jwt.PyJWKSet | None = None
        self._jwks_fetched = 0.0

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched once (the IdP may start after us)."""
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                response = await self._http.get(url)
                response.raise_for_status()
                metadata = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise LoginError("discovery") from exc
            if metadata.get("issuer", "").rstrip("/") != self.issuer:
                raise LoginError("discovery")
            self._metadata = metadata
        return self._metadata

    async def start(self, next_path: str) -> tuple[PendingLogin, str]:
        """A fresh pending login and the URL to send the browser to."""
        pending = PendingLogin(state=secrets.token_urlsafe(24), nonce=secrets.token_urlsafe(24),
                               verifier=secrets.token_urlsafe(48), next=next_path)
        metadata = await self.metadata()
        params = {"response_type": "code", "client_id": self.client_id,
                  "redirect_uri": self.redirect_uri, "scope": self.scopes,
                  "state": pending.state, "nonce": pending.nonce,
                  "code_challenge": _s256(pending.verifier), "code_challenge_method": "S256"}
        endpoint = metadata["authorization_endpoint"]
        separator = "&" if "?" in endpoint else "?"
        return pending, f"{endpoint}{separator}{urlencode(params)}"

    async def finish(self, pending: PendingLogin, params: dict[str, str]) -> OidcLogin:
        """Check the callback, redeem the code, verify the id_token."""
        if not secrets.compare_digest(params.get("state", ""), pending.state):
            raise LoginError("state")
        if params.get("error"):
            raise LoginError("denied" if params["error"] == "access_denied" else "idp")
        if "iss" in params and params["iss"].rstrip("/") != self.issuer:  # RFC 9207
            raise LoginError("issuer")
        code = params.get("code")
        if not code:
            raise LoginError("idp")
        metadata = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "client_id": self.client_id,
                "code_verifier": pending.verifier}
        auth = (self.client_id, self._secret) if self._secret else None
        try:
            response = await self._http.post(metadata["token_endpoint"], data=form,
                                             auth=auth)  # type: ignore[arg-type]
            tokens = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LoginError("idp") from exc
        if response.status_code != 200 or not isinstance(tokens, dict):
            log.warning("oidc.token_refused", status=response.status_code)
            raise LoginError("idp")
        access_token, id_token = tokens.get("access_token"), tokens.get("id_token")
        if not isinstance(access_token, str) or not isinstance(id_token, str):
            raise LoginError("idp")
        claims = await self._verify_id_token(id_token, pending.nonce)
        idnr = claims.get(self._claim)
        if not isinstance(idnr, str) or not idnr:
            raise LoginError("claim")
        expires_in = tokens.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
        return OidcLogin(idnr=idnr, access_token=access_token,
                         expires_at=time.time() + lifetime)

    async def _keys(self, *, refresh: bool = False) -> jwt.PyJWKSet:
        if self._jwks is None or (refresh and time.monotonic() - self._jwks_fetched > 60):
            metadata = await self.metadata()
            try:
                response = await self._http.get(metadata["jwks_uri"])
                response.raise_for_status()
                self._jwks = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                raise LoginError("idp") from exc
            self._jwks_fetched = time.monotonic()
        return self._jwks

    async def _verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
            keys = await self._keys()
            key = next((k for k in keys.keys if k.key_id == kid), None)
            if key is None:  # the IdP may have rotated: fetch once more
                keys = await self._keys(refresh=True)
                key = next((k for k in keys.keys if k.key_id == kid), None)
            if key is None:
                raise jwt.InvalidTokenError("unknown key")
            algorithms = [key.algorithm_name] if key.algorithm_name in _ALGORITHMS \
                else list(_ALGORITHMS)
            claims: dict[str, Any] = jwt.decode(
                id_token, key.key, algorithms=algorithms, audience=self.client_id,
                issuer=self.issuer, leeway=30,
                options={"require": ["iss", "aud", "exp", "iat", "sub", "nonce"]})
        except jwt.InvalidTokenError as exc:
            log.warning("oidc.id_token_invalid", error=str(exc))
            raise LoginError("id_token") from exc
        if not secrets.compare_digest(str(claims["nonce"]), nonce):
            raise LoginError("id_token")
        return claims
