"""Operational surface: health, OpenAPI, JWKS, request ids, body limits."""

from tests.e2e.conftest import bearer
from tests.e2e.helpers import NAMENSDIENST, problem


class TestOperations:
    def test_health(self, demo) -> None:
        assert demo.http.get("/health/live").json() == {"status": "ok"}
        ready = demo.http.get("/health/ready").json()
        assert set(ready["components"]) >= {"broker", "cockpit", "registers"}

    def test_openapi_lists_the_public_api(self, demo) -> None:
        schema = demo.http.get("/schema/openapi.json").json()
        assert schema["openapi"].startswith("3.1")
        assert {"/v1/token", "/v1/proof-requests", "/v1/consents", "/v1/consents/{consent_id}",
                "/v1/me/transfers", "/.well-known/jwks.json"} <= set(schema["paths"])
        assert not any(path.startswith("/registers") for path in schema["paths"])

    def test_jwks_publishes_only_public_keys(self, demo) -> None:
        keys = demo.http.get("/.well-known/jwks.json").json()["keys"]
        assert keys
        assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in keys)

    def test_request_id_is_echoed_or_made(self, demo) -> None:
        echoed = demo.http.get("/health/live", headers={"x-request-id": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        made = demo.http.get("/health/live")
        assert len(made.headers["x-request-id"]) == 36

    def test_oversized_body_is_413(self, demo) -> None:
        response = demo.http.post("/v1/proof-requests", content=b"{" + b" " * 70_000 + b"}",
                                  headers={**bearer(demo.service_token(NAMENSDIENST)),
                                           "content-type": "application/json"})
        problem(response, 413, "payload-too-large")
