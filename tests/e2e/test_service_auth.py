"""Client authentication at POST /v1/token (RFC 7523). Failure paths first."""

import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal.keys import private_jwk
from tests.conftest import LiveServer, serve_demo
from tests.e2e.helpers import ELTERNGELD
from tests.e2e.helpers import problem as _problem


@pytest.fixture(name="live_server", scope="module")
def fx_live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One demo server for the module: each test brings its own assertions (own jti)."""
    yield from serve_demo(tmp_path_factory)


class TestTokenEndpointRefuses:
    def test_replayed_assertion(self, demo) -> None:
        form = demo.token_form(ELTERNGELD)
        assert demo.http.post("/v1/token", data=form).status_code == 200
        body = _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")
        assert body["error"] == "invalid_client"
        assert "jti" in body["detail"]

    def test_expired_assertion(self, demo) -> None:
        past = int(time.time()) - 600
        form = demo.token_form(ELTERNGELD, iat=past - 60, exp=past)
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_assertion_valid_too_long(self, demo) -> None:
        form = demo.token_form(ELTERNGELD, exp=int(time.time()) + 3600)
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_wrong_audience(self, demo) -> None:
        form = demo.token_form(ELTERNGELD, aud="https://elsewhere.example/token")
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_sub_differs_from_iss(self, demo) -> None:
        form = demo.token_form(ELTERNGELD, sub="familienkasse")
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_missing_jti(self, demo) -> None:
        form = demo.token_form(ELTERNGELD, jti=None)
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_signed_by_another_key(self, demo) -> None:
        other = private_jwk(Ed25519PrivateKey.generate(),
                            demo.service(ELTERNGELD)["private_jwk"]["kid"])
        form = demo.token_form(ELTERNGELD)
        form["client_assertion"] = demo.assertion(ELTERNGELD, other, demo.token_endpoint)
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_another_services_key(self, demo) -> None:
        form = demo.token_form(ELTERNGELD)
        form["client_assertion"] = demo.assertion(
            ELTERNGELD, demo.service("familienkasse")["private_jwk"], demo.token_endpoint)
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_alg_none(self, demo) -> None:
        now = int(time.time())
        claims = {"iss": ELTERNGELD, "sub": ELTERNGELD, "aud": demo.token_endpoint,
                  "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
        form = demo.token_form(ELTERNGELD)
        form["client_assertion"] = jwt.encode(claims, None, algorithm="none")
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_hs256_with_the_public_key_as_secret(self, demo) -> None:
        public_x = demo.service(ELTERNGELD)["private_jwk"]["x"]
        now = int(time.time())
        claims = {"iss": ELTERNGELD, "sub": ELTERNGELD, "aud": demo.token_endpoint,
                  "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
        form = demo.token_form(ELTERNGELD)
        form["client_assertion"] = jwt.encode(claims, public_x.encode() * 2, algorithm="HS256")
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    def test_unknown_client(self, demo) -> None:
        form = demo.token_form(ELTERNGELD)
        form["client_assertion"] = demo.assertion("no-such-service",
                                             demo.service(ELTERNGELD)["private_jwk"],
                                             demo.token_endpoint)
        _problem(demo.http.post("/v1/token", data=form), 401, "invalid-client")

    @pytest.mark.parametrize(("field", "value"), [
        ("grant_type", "password"),
        ("client_assertion_type", "urn:example:other"),
        ("client_assertion", ""),
    ])
    def test_malformed_form(self, demo, field: str, value: str) -> None:
        form = demo.token_form(ELTERNGELD)
        form[field] = value
        _problem(demo.http.post("/v1/token", data=form), 400, "invalid-request")

    def test_json_instead_of_form(self, demo) -> None:
        _problem(demo.http.post("/v1/token", json=demo.token_form(ELTERNGELD)), 400,
                 "invalid-request")


class TestTokenEndpointIssues:
    def test_a_short_lived_bearer_token(self, demo) -> None:
        response = demo.http.post("/v1/token", data=demo.token_form(ELTERNGELD))
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert 0 < body["expires_in"] <= 300
        assert response.headers["cache-control"] == "no-store"

    def test_access_token_is_not_a_citizen_token(self, demo) -> None:
        token = demo.service_token(ELTERNGELD)
        response = demo.http.get("/v1/consents", headers={"authorization": f"Bearer {token}"})
        _problem(response, 401, "unauthenticated")
