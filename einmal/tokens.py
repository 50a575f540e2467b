"""Bearer tokens (JWT, EdDSA) shared by broker and cockpit: issue, verify, extract.

Used for three token kinds, each with its own key and audience (decision 0002):
service access tokens (broker), citizen tokens (identity provider; demo IdP in demo mode),
and the broker -> cockpit channel token.
"""

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar import Request

from einmal.keys import SigningKey
from einmal.problems import ProblemError

__all__ = ["TokenIssuer", "TokenVerifier", "bearer_of", "bearer_token"]


@dataclass(frozen=True, slots=True)
class TokenIssuer:
    key: SigningKey
    issuer: str
    audience: str
    ttl_s: int

    def issue(self, subject: str, *, now: float | None = None, **claims: Any) -> str:
        issued = int(now if now is not None else time.time())
        payload = {"iss": self.issuer, "aud": self.audience, "sub": subject, "iat": issued,
                   "exp": issued + self.ttl_s, "jti": str(uuid.uuid4()), **claims}
        return jwt.encode(payload, self.key.private_key, algorithm="EdDSA",
                          headers={"kid": self.key.kid, "typ": "at+jwt"})


@dataclass(slots=True)
class TokenVerifier:
    """Verifies tokens of one kind. Verified tokens are cached until they expire
    (an access token is presented many times; Ed25519 verification costs ~120 us)."""

    keys: dict[str, Ed25519PublicKey]
    issuer: str
    audience: str
    leeway_s: int = 5
    #: asymmetric only; a foreign identity provider may sign with ES256 or RS256
    algorithms: tuple[str, ...] = ("EdDSA",)
    #: kid -> epoch seconds after which a retired key is no longer accepted (key rotation)
    not_after: dict[str, float] = field(default_factory=dict)
    _cache: dict[str, dict[str, Any]] = field(default_factory=dict)

    def verify(self, unverified_token: str, *, now: float | None = None) -> dict[str, Any]:
        current = now if now is not None else time.time()
        cached = self._cache.get(unverified_token)
        if cached is not None:
            if cached["exp"] + self.leeway_s > current:
                return cached
            del self._cache[unverified_token]
        try:
            header = jwt.get_unverified_header(unverified_token)
            kid = str(header.get("kid"))
            key = self.keys.get(kid)
            if key is not None and current > self.not_after.get(kid, current):
                key = None  # a retired key whose tokens have all expired
            if key is None:
                raise jwt.InvalidTokenError("unknown key")
            claims: dict[str, Any] = jwt.decode(
                unverified_token, key, algorithms=list(self.algorithms), audience=self.audience,
                issuer=self.issuer, leeway=self.leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
            if claims["exp"] + self.leeway_s <= current:  # also honours an injected clock
                raise jwt.ExpiredSignatureError("expired")
        except jwt.InvalidTokenError as exc:
            raise ProblemError("unauthenticated", "The bearer token is invalid or expired.",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                               ) from exc
        if len(self._cache) > 50_000:  # bounded: drop all rather than grow without limit
            self._cache.clear()
        self._cache[unverified_token] = claims
        return claims


def bearer_token(request: Request[Any, Any, Any]) -> str:
    return bearer_of(request.headers.get("authorization", ""))


def bearer_of(header: str) -> str:
    """The token of an ``Authorization: Bearer ...`` header value; 401 if it is none."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError("unauthenticated", "A bearer token is required.",
                           headers={"WWW-Authenticate": "Bearer"})
    return token.strip()
