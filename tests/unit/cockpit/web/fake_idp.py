"""A scripted OpenID provider behind ``httpx.MockTransport``: keys of every algorithm the
cockpit accepts, id_tokens with or without ``kid``, each client authentication method, and
whatever garbage a test asks it to answer."""

import base64
import functools
import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://id.example.org/realms/buerger"
CLIENT_ID = "einmal-cockpit"
REDIRECT_URI = "https://cockpit.example.org/auth/callback"
IDNR = "81709656328"


@functools.cache
def private_key(alg: str, variant: int = 0) -> Any:
    """One key per (algorithm, variant) for the whole session (RSA keys are slow to make)."""
    del variant  # only part of the cache key
    if alg in {"RS256", "PS256"}:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    msg = f"no test key for {alg}"
    raise ValueError(msg)


def public_jwk(key: Any, **members: Any) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, **members}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .rstrip(b"=").decode()


@dataclass
class FakeIdp:
    """The provider's behaviour is its fields; tests change them before a login."""

    alg: str = "RS256"
    issuer: str = ISSUER
    #: the kid in the id_token's header (None: no kid, as oidc-provider-mock does)
    kid: str | None = "k1"
    #: the JWK set (default: the signing key's public half, kid "k1", no "alg")
    jwks: list[dict[str, Any]] | None = None
    auth_methods: list[str] | None = None
    secret: str | None = None
    #: claims of the id_token (changes; None removes a claim)
    claims: dict[str, Any] = field(default_factory=dict)
    userinfo: dict[str, Any] | None = None
    #: per path: a response (or a callable making one) instead of the normal answer
    answers: dict[str, httpx.Response | Callable[[httpx.Request], httpx.Response]] = \
        field(default_factory=dict)
    discovery_extra: dict[str, Any] = field(default_factory=dict)
    signing_key: Any = None
    #: what the provider saw
    requests: list[httpx.Request] = field(default_factory=list)
    challenge: str = ""
    nonce: str = ""
    auth_used: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.signing_key is None:
            self.signing_key = private_key(self.alg)
        if self.jwks is None:
            self.jwks = [public_jwk(self.signing_key, kid="k1")]

    # -- what a login sees -----------------------------------------------------------------
    def authorized(self, authorize_url: str) -> None:
        """The browser arrived at the authorization endpoint: remember nonce and PKCE."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        self.nonce, self.challenge = query["nonce"], query["code_challenge"]

    def id_token(self, **changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "pairwise-4711", "iat": now,
                  "exp": now + 300, "nonce": self.nonce, "idnr": IDNR,
                  **self.claims, **changes}
        headers = {"kid": self.kid} if self.kid is not None else None
        with warnings.catch_warnings():  # a test may sign with a weak key on purpose
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            return jwt.encode({k: v for k, v in claims.items() if v is not None},
                              self.signing_key, algorithm=self.alg, headers=headers)

    # -- the transport -----------------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix(urlsplit(self.issuer).path)
        answer = self.answers.get(path)
        if answer is not None:
            return answer(request) if callable(answer) else answer
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery())
        if path == "/auth":  # consent at once: back to the client with a code
            self.authorized(str(request.url))
            query = dict(request.url.params)
            back = httpx.URL(query["redirect_uri"]).copy_merge_params(
                {"code": "code-1", "state": query["state"], "iss": self.issuer})
            return httpx.Response(302, headers={"location": str(back)})
        if path == "/certs":
            return httpx.Response(200, json={"keys": self.jwks})
        if path == "/token":
            return self._token(request)
        if path == "/userinfo":
            return httpx.Response(200, json=self.userinfo or {})
        return httpx.Response(404)

    def discovery(self) -> dict[str, Any]:
        issuer = self.issuer
        document = {"issuer": issuer, "authorization_endpoint": f"{issuer}/auth",
                    "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/certs",
                    "userinfo_endpoint": f"{issuer}/userinfo",
                    "response_types_supported": ["code"],
                    "id_token_signing_alg_values_supported": [self.alg]}
        if self.auth_methods is not None:
            document["token_endpoint_auth_methods_supported"] = self.auth_methods
        return {**document, **self.discovery_extra}

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            method, client_id, secret = "client_secret_basic", unquote(client_id), unquote(secret)
        elif "client_secret" in form:
            method, client_id, secret = "client_secret_post", form.get("client_id"), \
                form["client_secret"]
        else:
            method, client_id, secret = "none", form.get("client_id"), None
        self.auth_used.append(method)
        if client_id != CLIENT_ID or secret != self.secret:
            return httpx.Response(401, json={"error": "invalid_client"})
        if _s256(form.get("code_verifier", "")) != self.challenge:
            return httpx.Response(400, json={"error": "invalid_grant"})
        return httpx.Response(200, json={"access_token": "opaque-a1b2c3", "token_type": "Bearer",
                                         "expires_in": 3600, "id_token": self.id_token()})
