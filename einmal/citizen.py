"""Citizen identity: the citizen bearer tokens the broker and cockpit APIs accept.

Two kinds, told apart by their (unverified) ``iss`` and each verified with its own keys:

- the identity provider's access token: a JWT carrying the IdNr in a configured claim, for
  clients that log the citizen in themselves (in demo mode the built-in demo identity provider
  issues them: ``/demo/citizen-token``, ``einmal scenario``);
- the cockpit web view's own token (issuer ``WEB_ISSUER``): minted by the cockpit for
  one web session at login (``WebTokenMinter``), the IdNr as ``sub``, the session as ``sid``,
  EdDSA with the ``cockpit-web-citizen`` key, alive ``WEB_TOKEN_TTL_S`` at most. The web view
  never passes the identity provider's access token on (it may be opaque; decision 0027).
"""

import base64
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from litestar import Request

from einmal.domain.idnr import InvalidIdNrError, validate_idnr
from einmal.keys import SigningKey, load_public_keys, retirement_deadlines
from einmal.problems import ProblemError
from einmal.ratelimit import Limiter
from einmal.tokens import TokenIssuer, TokenVerifier, bearer_token

__all__ = ["CITIZEN_AUDIENCE", "WEB_ISSUER", "WEB_KEY_NAME", "WEB_TOKEN_TTL_S", "Citizen",
           "CitizenAuth", "WebTokenMinter", "session_binding"]

CITIZEN_AUDIENCE = "einmal-citizen"
#: The cockpit web view's citizen tokens: issuer (a name, not a URL: a broker and a cockpit in
#: separate processes see the cockpit under different URLs), key name, longest lifetime.
WEB_ISSUER = "urn:einmal:cockpit-web"
WEB_KEY_NAME = "cockpit-web-citizen"
WEB_TOKEN_TTL_S = 300


class Citizen(msgspec.Struct, frozen=True):
    idnr: str


def session_binding(session_id: str) -> str:
    """The ``sid`` of a web session's tokens: a hash of its id (the id itself is the session
    cookie's secret and never leaves the cockpit)."""
    digest = hashlib.sha256(b"einmal-web-sid|" + session_id.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class WebTokenMinter:
    """The cockpit web view's side: mints the citizen token one web session uses."""

    key: SigningKey
    audience: str = CITIZEN_AUDIENCE
    ttl_s: int = WEB_TOKEN_TTL_S

    def mint(self, idnr: str, session_id: str, *, now: float, not_after: float,
             ) -> tuple[str, float]:
        """A token for ``idnr`` bound to ``session_id``; returns (token, expiry). It expires
        ``ttl_s`` after ``now``, or at ``not_after`` (the session's end) if that is sooner."""
        lifetime = max(0, min(self.ttl_s, int(not_after) - int(now)))
        issuer = TokenIssuer(key=self.key, issuer=WEB_ISSUER, audience=self.audience,
                             ttl_s=lifetime)
        token = issuer.issue(idnr, now=now, sid=session_binding(session_id))
        return token, float(int(now) + lifetime)


class _WebTokenVerifier:
    """The APIs' side: verifies web tokens with the public key file the cockpit writes
    (``<keys>/cockpit-web-citizen.public.json``). Read at first use and again when a token
    does not verify and the file changed: a broker may start before the cockpit created the
    key, and follows ``einmal keys rotate cockpit-web-citizen`` without a restart."""

    def __init__(self, *, keys_file: Path, audience: str) -> None:
        self._keys_file = keys_file
        self._audience = audience
        self._verifier: TokenVerifier | None = None
        self._loaded: int | None = None

    def _load(self) -> TokenVerifier:
        if not self._keys_file.exists():
            raise ProblemError("unauthenticated", "The bearer token is invalid or expired.")
        self._loaded = self._keys_file.stat().st_mtime_ns
        self._verifier = TokenVerifier(
            keys=load_public_keys(self._keys_file), issuer=WEB_ISSUER,
            audience=self._audience,
            not_after=retirement_deadlines(self._keys_file, lifetime_s=WEB_TOKEN_TTL_S))
        return self._verifier

    def verify(self, unverified_token: str) -> dict[str, Any]:
        verifier = self._verifier or self._load()
        try:
            claims = verifier.verify(unverified_token)
        except ProblemError:
            if not (self._keys_file.exists()
                    and self._keys_file.stat().st_mtime_ns != self._loaded):
                raise
            claims = self._load().verify(unverified_token)
        # NOTE: a web token lives WEB_TOKEN_TTL_S at most (that bounds how long it outlives a
        # logout) and names its session; anything else was not minted by the cockpit.
        if claims["exp"] - claims["iat"] > WEB_TOKEN_TTL_S or not claims.get("sid"):
            raise ProblemError("unauthenticated", "The bearer token is invalid or expired.",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return claims


def _unverified_issuer(unverified_token: str) -> str | None:
    """The ``iss`` a token claims, unverified: only to choose the keys that verify it."""
    try:
        claims = jwt.decode(unverified_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


class CitizenAuth:
    """Verifies citizen tokens. Keys are loaded lazily from a JWK set file, so a broker can
    start before the identity provider (or the cockpit) has published its key.

    ``web_keys_file``: the cockpit web view's public key file; None: web tokens are refused."""

    def __init__(self, *, issuer: str, keys_file: Path | None, allow_test_idnrs: bool,
                 idnr_claim: str = "idnr", limiter: Limiter | None = None,
                 keys_url: str | None = None, audience: str = CITIZEN_AUDIENCE,
                 web_keys_file: Path | None = None) -> None:
        #: the citizen's abuse limit (None: off); the composition root may swap in a shared one
        self.limiter = limiter
        self._issuer = issuer
        self._keys_file = keys_file
        self._keys_url = keys_url
        self._audience = audience
        self._allow_test = allow_test_idnrs
        self._claim = idnr_claim
        self._verifier: TokenVerifier | None = None
        self._fetched_at = 0.0
        self._web = (_WebTokenVerifier(keys_file=web_keys_file, audience=audience)
                     if web_keys_file is not None else None)

    def _fetch(self) -> dict[str, Any]:
        """The identity provider's JWK set from its URL (any asymmetric key type).

        NOTE: a blocking fetch, once at first use and at most once a minute after that when
        a token names an unknown key (the IdP rotated)."""
        if self._keys_url is None:
            msg = "no JWK set URL configured"
            raise RuntimeError(msg)
        self._fetched_at = time.monotonic()
        try:
            response = httpx.get(self._keys_url, timeout=5.0)
            response.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            raise ProblemError("unauthenticated",
                               "The citizen identity provider's keys are unavailable.") from exc
        return {k.key_id: k.key for k in jwks.keys if k.key_id}

    def _load(self, kid: str | None = None) -> TokenVerifier:
        stale = (self._verifier is not None and self._keys_url is not None
                 and kid is not None and kid not in self._verifier.keys
                 and time.monotonic() - self._fetched_at > 60)
        if self._verifier is None or stale:
            if self._keys_url:
                keys = self._fetch()
                algorithms: tuple[str, ...] = ("EdDSA", "ES256", "ES384", "RS256", "PS256")
            elif self._keys_file is not None and self._keys_file.exists():
                keys = load_public_keys(self._keys_file)
                algorithms = ("EdDSA",)
            else:
                raise ProblemError("unauthenticated",
                                   "No citizen identity provider is configured.")
            self._verifier = TokenVerifier(keys=keys, issuer=self._issuer,
                                           audience=self._audience, algorithms=algorithms)
        return self._verifier

    def _idp_claims(self, token: str) -> dict[str, Any]:
        kid = None
        if self._keys_url:
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.InvalidTokenError:
                kid = None
        return self._load(kid).verify(token)

    def citizen(self, request: Request[Any, Any, Any]) -> Citizen:
        token = bearer_token(request)
        if self._web is not None and _unverified_issuer(token) == WEB_ISSUER:
            idnr = self._web.verify(token).get("sub")
        else:
            idnr = self._idp_claims(token).get(self._claim)
        try:
            citizen = Citizen(idnr=validate_idnr(str(idnr), allow_test=self._allow_test))
        except InvalidIdNrError as exc:
            raise ProblemError("unauthenticated", "The citizen token names no valid IdNr.") from exc
        return citizen

    def dependency(self) -> Callable[[Request[Any, Any, Any]], Awaitable[Citizen]]:
        """The request dependency: the verified citizen, after one token of their limit."""

        async def citizen(request: Request[Any, Any, Any]) -> Citizen:
            verified = self.citizen(request)
            if self.limiter is not None:
                await self.limiter.take(verified.idnr)
            return verified

        return citizen
