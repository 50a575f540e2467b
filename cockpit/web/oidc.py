"""OpenID Connect relying party: authorization code flow with PKCE (S256), state and nonce.

Works with any conformant identity provider, whatever its token formats (decision 0027):

- discovery (OpenID Connect Discovery 1.0) is checked before it is used: a JSON object with
  the configured issuer and absolute http(s) endpoints;
- client authentication at the token endpoint (OIDC Core 9) from what discovery announces in
  ``token_endpoint_auth_methods_supported`` (omitted: ``client_secret_basic``): with a
  configured secret ``client_secret_basic``, else ``client_secret_post``; without a secret
  ``none``, a public client whose code PKCE protects;
- the id_token (PyJWT, decision 0002): RS/PS 256/384/512, ES 256/384/512 or EdDSA, never
  ``none`` or HS*; the key is the JWK set's key with the token's ``kid``, or without a ``kid``
  the one key of the set usable for the algorithm (OIDC Core 10.1; several: refused);
  ``iss``, ``aud`` (and ``azp``), ``exp``, ``iat``, ``sub`` and ``nonce`` are checked;
- the IdNr comes from the configured claim of the id_token, or of the UserInfo answer when
  the id_token lacks it. The provider's access token (maybe opaque) is used only there, at
  the provider: the web view calls its own APIs with a token the cockpit mints (session.py).

Every failure is a ``LoginError`` with a stable reason: the error page handler logs it once
and shows "Anmeldung fehlgeschlagen" (never a 500). Reasons and their context never carry a
token, a code or a claim value. Why not authlib: decision 0013.
"""

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from cockpit.web.session import PendingLogin

__all__ = ["LoginError", "OidcClient", "OidcLogin"]

#: JWS algorithm -> the key type and curves that fit it. Asymmetric only: "none" and HS*
#: never verify (with HS* the provider's public key would become an HMAC secret).
_KEY_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    **{alg: ("RSA", frozenset()) for alg in ("RS256", "RS384", "RS512",
                                             "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})), "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})), "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
_MIN_RSA_BITS = 2048
#: OAuth 2.0 error codes a token endpoint may answer (RFC 6749 5.2): logged as they are
_OAUTH_ERRORS = frozenset({"invalid_request", "invalid_client", "invalid_grant",
                           "unauthorized_client", "unsupported_grant_type", "invalid_scope",
                           "access_denied", "server_error", "temporarily_unavailable",
                           "login_required", "consent_required", "interaction_required"})
#: an unknown key is looked up again at most this often (the provider may have rotated)
_JWKS_REFRESH_S = 60.0
_LEEWAY_S = 30


class LoginError(Exception):
    """The login failed: the identity provider refused, or answered something we cannot trust.

    ``reason`` is a stable code for the log; ``context`` holds safe details (an HTTP status,
    an OAuth error code). Reasons starting with ``idp_`` mean the provider cannot be used at
    all (unreachable, or answering garbage): a 502 page; the others a 400 page."""

    def __init__(self, reason: str, **context: str | int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.context = context

    @property
    def status(self) -> int:
        return 502 if self.reason.startswith("idp_") else 400


class OidcLogin(msgspec.Struct, frozen=True, kw_only=True):
    """A successful login: who logged in (the IdNr as the provider states it, unvalidated)."""

    idnr: str


class _Discovery(msgspec.Struct, frozen=True, kw_only=True):
    """The part of the provider's discovery document we use (unknown members are ignored)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    token_endpoint_auth_methods_supported: list[str] | None = None
    authorization_response_iss_parameter_supported: bool = False


class _Tokens(msgspec.Struct, frozen=True, kw_only=True):
    id_token: str
    access_token: str | None = None


_discovery = msgspec.json.Decoder(_Discovery)
_tokens = msgspec.json.Decoder(_Tokens)
_json = msgspec.json.Decoder()


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _same(presented: object, expected: str) -> bool:
    """Constant-time equality of a presented text (any type, any characters) and ours."""
    return isinstance(presented, str) and secrets.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode())


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"https", "http"} and bool(parts.hostname)


def _basic(client_id: str, secret: str) -> str:
    """``client_secret_basic``: both parts form-encoded before base64 (RFC 6749 2.3.1)."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _oauth_error(response: httpx.Response) -> str:
    """The OAuth error code of a refusal, if it is one (anything else is not logged)."""
    try:
        body = _json.decode(response.content)
    except msgspec.DecodeError:
        return "none"
    code = body.get("error") if isinstance(body, dict) else None
    return code if code in _OAUTH_ERRORS else "other"


def _key_for_alg(jwk: Any, alg: str) -> Any | None:
    """The public key of ``jwk`` if it may verify ``alg`` (type, curve, ``use``, ``alg``,
    ``key_ops`` and, for RSA, size), else None."""
    if not isinstance(jwk, dict):
        return None
    kty, curves = _KEY_TYPES[alg]
    key_ops = jwk.get("key_ops")
    if (jwk.get("kty") != kty or (curves and jwk.get("crv") not in curves)
            or jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg
            or (key_ops is not None and "verify" not in key_ops)):
        return None
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    if isinstance(key, RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        return None
    return key


class OidcClient:
    def __init__(self, *, issuer: str, client_id: str, client_secret: str | None, scopes: str,
                 redirect_uri: str, idnr_claim: str, http: httpx.AsyncClient,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret or None
        self.scopes = scopes if "openid" in scopes.split() else f"openid {scopes}".strip()
        self.redirect_uri = redirect_uri
        self._claim = idnr_claim
        self._http = http
        self._clock = clock
        self._metadata: _Discovery | None = None
        self._jwks: list[Any] | None = None
        self._jwks_fetched = 0.0

    # -- discovery ---------------------------------------------------------------------------
    async def metadata(self) -> _Discovery:
        """The discovery document, fetched at first use (the IdP may start after us) and kept
        once it proved usable."""
        if self._metadata is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                response = await self._http.get(url, headers={"accept": "application/json"})
            except httpx.HTTPError as exc:
                raise LoginError("idp_discovery_unreachable") from exc
            if response.status_code != 200:
                raise LoginError("idp_discovery_refused", status=response.status_code)
            try:
                metadata = _discovery.decode(response.content)
            except msgspec.DecodeError as exc:  # also not JSON at all (an HTML page)
                raise LoginError("idp_discovery_invalid") from exc
            if metadata.issuer.rstrip("/") != self.issuer:
                raise LoginError("idp_discovery_issuer")
            endpoints = [metadata.authorization_endpoint, metadata.token_endpoint,
                         metadata.jwks_uri]
            if metadata.userinfo_endpoint is not None:
                endpoints.append(metadata.userinfo_endpoint)
            if not all(_is_http_url(endpoint) for endpoint in endpoints):
                raise LoginError("idp_discovery_invalid")
            self._metadata = metadata
        return self._metadata

    def _auth_method(self, metadata: _Discovery) -> str:
        """How the cockpit authenticates at the token endpoint (OIDC Core 9)."""
        if self._secret is None:
            return "none"  # a public client: the code is bound to this login by PKCE
        announced = metadata.token_endpoint_auth_methods_supported or ["client_secret_basic"]
        for method in ("client_secret_basic", "client_secret_post", "none"):
            if method in announced:
                return method
        raise LoginError("idp_client_auth_unsupported")

    # -- the flow ----------------------------------------------------------------------------
    async def start(self, next_path: str) -> tuple[PendingLogin, str]:
        """A fresh pending login and the URL to send the browser to."""
        pending = PendingLogin(state=secrets.token_urlsafe(24), nonce=secrets.token_urlsafe(24),
                               verifier=secrets.token_urlsafe(48), next=next_path)
        metadata = await self.metadata()
        self._auth_method(metadata)  # refuse now rather than after the citizen logged in
        params = {"response_type": "code", "client_id": self.client_id,
                  "redirect_uri": self.redirect_uri, "scope": self.scopes,
                  "state": pending.state, "nonce": pending.nonce,
                  "code_challenge": _s256(pending.verifier), "code_challenge_method": "S256"}
        endpoint = metadata.authorization_endpoint
        separator = "&" if "?" in endpoint else "?"
        return pending, f"{endpoint}{separator}{urlencode(params)}"

    async def finish(self, pending: PendingLogin, params: dict[str, str]) -> OidcLogin:
        """Check the callback, redeem the code, verify the id_token, find the IdNr."""
        # 1. the answer belongs to this login, and comes from this issuer (RFC 9207)
        if not _same(params.get("state"), pending.state):
            raise LoginError("state")
        metadata = await self.metadata()
        if "iss" in params:
            if params["iss"].rstrip("/") != self.issuer:
                raise LoginError("issuer")
        elif metadata.authorization_response_iss_parameter_supported:
            raise LoginError("issuer")
        # 2. the provider's verdict
        if params.get("error"):
            if params["error"] == "access_denied":
                raise LoginError("denied")
            error = params["error"] if params["error"] in _OAUTH_ERRORS else "other"
            raise LoginError("idp_refused", error=error)
        code = params.get("code")
        if not code:
            raise LoginError("no_code")
        # 3. the code for tokens, 4. the id_token, 5. the IdNr
        tokens = await self._redeem(metadata, code, pending.verifier)
        claims = await self._verify_id_token(metadata, tokens.id_token, pending.nonce)
        idnr = claims.get(self._claim)
        if idnr is None and tokens.access_token and metadata.userinfo_endpoint:
            idnr = await self._userinfo_claim(metadata.userinfo_endpoint, tokens.access_token,
                                              claims["sub"])
        if isinstance(idnr, int) and not isinstance(idnr, bool):
            idnr = str(idnr)
        if not isinstance(idnr, str) or not idnr:
            raise LoginError("claim_missing", claim=self._claim)
        return OidcLogin(idnr=idnr)

    async def _redeem(self, metadata: _Discovery, code: str, verifier: str) -> _Tokens:
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": verifier}
        headers = {"accept": "application/json"}
        method = self._auth_method(metadata)
        if method == "client_secret_basic" and self._secret is not None:
            headers["authorization"] = _basic(self.client_id, self._secret)
        elif method == "client_secret_post" and self._secret is not None:
            form |= {"client_id": self.client_id, "client_secret": self._secret}
        else:
            form["client_id"] = self.client_id
        try:
            response = await self._http.post(metadata.token_endpoint, data=form,
                                             headers=headers)
        except httpx.HTTPError as exc:
            raise LoginError("idp_token_unreachable") from exc
        if response.status_code != 200:  # e.g. invalid_grant: an expired or replayed code
            raise LoginError("token_refused", status=response.status_code,
                             error=_oauth_error(response))
        try:
            return _tokens.decode(response.content)
        except msgspec.DecodeError as exc:  # not JSON, or no id_token in it
            raise LoginError("idp_token_invalid") from exc

    # -- the id_token ------------------------------------------------------------------------
    async def _jwk_set(self, *, refresh: bool = False) -> list[Any]:
        stale = refresh and self._clock() - self._jwks_fetched > _JWKS_REFRESH_S
        if self._jwks is None or stale:
            metadata = await self.metadata()
            try:
                response = await self._http.get(metadata.jwks_uri,
                                                headers={"accept": "application/json"})
            except httpx.HTTPError as exc:
                raise LoginError("idp_jwks_unreachable") from exc
            try:
                document = _json.decode(response.content) if response.status_code == 200 \
                    else None
            except msgspec.DecodeError:
                document = None
            keys = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(keys, list):
                raise LoginError("idp_jwks_invalid", status=response.status_code)
            self._jwks, self._jwks_fetched = keys, self._clock()
        return self._jwks

    async def _key(self, alg: str, kid: str | None) -> Any:
        """The provider's key for a token signed with ``alg`` and naming ``kid`` (or none):
        looked up once more in a fresh JWK set when missing (the provider may have rotated)."""
        for refresh in (False, True):
            jwks = await self._jwk_set(refresh=refresh)
            named = [jwk for jwk in jwks if kid is None or
                     (isinstance(jwk, dict) and jwk.get("kid") == kid)]
            usable = [key for key in (_key_for_alg(jwk, alg) for jwk in named)
                      if key is not None]
            if len(usable) == 1:
                return usable[0]
            if len(usable) > 1:
                # NOTE: OIDC Core 10.1: without a kid the set must leave no doubt; we never
                # try the candidates in turn.
                raise LoginError("id_token_key_ambiguous")
        raise LoginError("id_token_unknown_key" if kid is not None else "id_token_no_key")

    async def _verify_id_token(self, metadata: _Discovery, unverified_id_token: str,
                               nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(unverified_id_token)
        except jwt.PyJWTError as exc:
            raise LoginError("id_token_malformed") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in _KEY_TYPES:
            raise LoginError("id_token_algorithm")
        if kid is not None and not isinstance(kid, str):
            raise LoginError("id_token_malformed")
        key = await self._key(alg, kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                unverified_id_token, key, algorithms=[alg], audience=self.client_id,
                issuer=metadata.issuer, leeway=_LEEWAY_S,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise LoginError("id_token_expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise LoginError("id_token_audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise LoginError("id_token_issuer") from exc
        except jwt.ImmatureSignatureError as exc:
            raise LoginError("id_token_not_yet_valid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise LoginError("id_token_claims") from exc
        except jwt.InvalidSignatureError as exc:
            raise LoginError("id_token_signature") from exc
        except jwt.PyJWTError as exc:
            raise LoginError("id_token_invalid") from exc
        # OIDC Core 3.1.3.7: with several audiences azp names us; if present, it must.
        several = isinstance(claims["aud"], list) and len(claims["aud"]) > 1
        if (several or "azp" in claims) and claims.get("azp") != self.client_id:
            raise LoginError("id_token_azp")
        if not _same(claims.get("nonce"), nonce):
            raise LoginError("id_token_nonce")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise LoginError("id_token_claims")
        return claims

    # -- UserInfo (only when the id_token lacks the IdNr claim) ------------------------------
    async def _userinfo_claim(self, endpoint: str, access_token: str, subject: str) -> Any:
        try:
            response = await self._http.get(endpoint, headers={
                "authorization": f"Bearer {access_token}", "accept": "application/json"})
        except httpx.HTTPError as exc:
            raise LoginError("idp_userinfo_unreachable") from exc
        if response.status_code != 200:
            raise LoginError("userinfo_refused", status=response.status_code)
        try:
            info = _json.decode(response.content)
        except msgspec.DecodeError as exc:  # also a signed (JWT) answer: not supported
            raise LoginError("idp_userinfo_invalid") from exc
        if not isinstance(info, dict):
            raise LoginError("idp_userinfo_invalid")
        if info.get("sub") != subject:  # OIDC Core 5.3.4: else it may be someone else's
            raise LoginError("userinfo_subject")
        return info.get(self._claim)
