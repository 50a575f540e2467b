"""Citizen identity: verifying citizen bearer tokens (broker and cockpit) and the demo IdP.

A citizen token is a JWT from the configured identity provider carrying the IdNr in a claim.
In demo mode the built-in demo identity provider issues them (stand-in for eID login).
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from litestar import Request

from einmal.domain.idnr import InvalidIdNrError, validate_idnr
from einmal.keys import load_public_keys
from einmal.problems import ProblemError
from einmal.ratelimit import RateLimiter
from einmal.tokens import TokenVerifier, bearer_token

__all__ = ["CITIZEN_AUDIENCE", "Citizen", "CitizenAuth"]

CITIZEN_AUDIENCE = "einmal-citizen"


class Citizen(msgspec.Struct, frozen=True):
    idnr: str


class CitizenAuth:
    """Verifies citizen tokens. Keys are loaded lazily from a JWK set file, so a broker can
    start before the identity provider has published its key."""

    def __init__(self, *, issuer: str, keys_file: Path | None, allow_test_idnrs: bool,
                 idnr_claim: str = "idnr", limiter: RateLimiter | None = None,
                 keys_url: str | None = None, audience: str = CITIZEN_AUDIENCE) -> None:
        self._limiter = limiter
        self._issuer = issuer
        self._keys_file = keys_file
        self._keys_url = keys_url
        self._audience = audience
        self._allow_test = allow_test_idnrs
        self._claim = idnr_claim
        self._verifier: TokenVerifier | None = None
        self._fetched_at = 0.0

    def _fetch(self) -> dict[str, Any]:
        """The identity provider's JWK set from its URL (any asymmetric key type).

        NOTE: a blocking fetch, once at first use and at most once a minute after that when
        a token names an unknown key (the IdP rotated)."""
        assert self._keys_url is not None  # noqa: S101
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

    def citizen(self, request: Request[Any, Any, Any]) -> Citizen:
        token = bearer_token(request)
        kid = None
        if self._keys_url:
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.InvalidTokenError:
                kid = None
        claims = self._load(kid).verify(token)
        idnr = claims.get(self._claim)
        try:
            citizen = Citizen(idnr=validate_idnr(str(idnr), allow_test=self._allow_test))
        except InvalidIdNrError as exc:
            raise ProblemError("unauthenticated", "The citizen token names no valid IdNr.") from exc
        if self._limiter is not None:
            self._limiter.check(citizen.idnr)
        return citizen

    def dependency(self) -> Callable[[Request[Any, Any, Any]], Citizen]:
        return self.citizen
