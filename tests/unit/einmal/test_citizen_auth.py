"""CitizenAuth with a real identity provider's JWK set URL (ES256 here), audience and claim."""

import time
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import ec
from litestar.testing import RequestFactory

from einmal.citizen import CitizenAuth
from einmal.problems import ProblemError

ISSUER = "https://id.example.org/realms/buerger"
JWKS_URL = f"{ISSUER}/protocol/openid-connect/certs"
IDNR = "81709656328"


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


def _token(key: Any, kid: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "cockpit-api", "sub": "abc", "iat": now, "exp": now + 60,
               "bund_idnr": IDNR, **claims}
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid})


def _request(token: str) -> Any:
    return RequestFactory().get("/v1/me/transfers", headers={"authorization": f"Bearer {token}"})


@pytest.fixture(name="auth")
def fx_auth() -> CitizenAuth:
    return CitizenAuth(issuer=ISSUER, keys_file=None, keys_url=JWKS_URL, audience="cockpit-api",
                       idnr_claim="bund_idnr", allow_test_idnrs=True)


@respx.mock
def test_token_signed_by_the_idp_is_accepted(auth: CitizenAuth) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    respx.get(JWKS_URL).mock(return_value=httpx.Response(200, json={"keys": [_jwk(key, "k1")]}))
    assert auth.citizen(_request(_token(key, "k1"))).idnr == IDNR


@respx.mock
def test_wrong_audience_or_foreign_key_is_refused(auth: CitizenAuth) -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    route = respx.get(JWKS_URL).mock(
        return_value=httpx.Response(200, json={"keys": [_jwk(key, "k1")]}))
    with pytest.raises(ProblemError):
        auth.citizen(_request(_token(key, "k1", aud="someone-else")))
    with pytest.raises(ProblemError):
        auth.citizen(_request(_token(other, "k1")))
    with pytest.raises(ProblemError):  # unknown kid: at most one refetch a minute
        auth.citizen(_request(_token(other, "k2")))
    assert route.call_count == 1


@respx.mock
def test_unreachable_jwks_is_a_401_not_a_crash(auth: CitizenAuth) -> None:
    respx.get(JWKS_URL).mock(return_value=httpx.Response(503))
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ProblemError) as caught:
        auth.citizen(_request(_token(key, "k1")))
    assert caught.value.status == 401
