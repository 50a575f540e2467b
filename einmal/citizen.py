"""Citizen identity: verifying citizen bearer tokens (broker and cockpit) and the demo IdP.

A citizen token is a JWT from the configured identity provider carrying the IdNr in a claim.
In demo mode the built-in demo identity provider issues them (stand-in for eID login).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

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

    def __init__(self, *, issuer: str, keys_file: Path, allow_test_idnrs: bool,
                 idnr_claim: str = "idnr", limiter: RateLimiter | None = None) -> None:
        self._limiter = limiter
        self._issuer = issuer
        self._keys_file = keys_file
        self._allow_test = allow_test_idnrs
        self._claim = idnr_claim
        self._verifier: TokenVerifier | None = None

    def _load(self) -> TokenVerifier:
        if self._verifier is None:
            if not self._keys_file.exists():
                raise ProblemError("unauthenticated",
                                   "No citizen identity provider is configured.")
            self._verifier = TokenVerifier(keys=load_public_keys(self._keys_file),
                                           issuer=self._issuer, audience=CITIZEN_AUDIENCE)
        return self._verifier

    def citizen(self, request: Request[Any, Any, Any]) -> Citizen:
        claims = self._load().verify(bearer_token(request))
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
