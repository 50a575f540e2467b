"""Actors for end-to-end tests: online services and citizens talking raw HTTP to a live server."""

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal.keys import _unb64u


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is an end-to-end test: ``-m "not e2e"`` leaves them out."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def assertion(client_id: str, private_jwk: dict[str, Any], audience: str, **overrides: Any,
              ) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now,
              "exp": now + 60, "jti": str(uuid.uuid4())}
    claims.update(overrides)
    key = Ed25519PrivateKey.from_private_bytes(_unb64u(private_jwk["d"]))
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key,
                      algorithm="EdDSA", headers={"kid": private_jwk["kid"]})


@dataclass
class Demo:
    base_url: str
    credentials: dict[str, Any]
    http: httpx.Client = field(repr=False)

    @property
    def token_endpoint(self) -> str:
        return self.credentials["token_endpoint"]

    def service(self, client_id: str) -> dict[str, Any]:
        return next(s for s in self.credentials["services"] if s["client_id"] == client_id)

    def citizen(self, family: str, role: str, index: int = 0) -> dict[str, Any]:
        people = [c for c in self.credentials["citizens"]
                  if c["family"] == family and c["role"] == role]
        return people[index]

    def assertion(self, client_id: str, private_jwk: dict[str, Any], audience: str | None = None,
                  **overrides: Any) -> str:
        return assertion(client_id, private_jwk, audience or self.token_endpoint, **overrides)

    def token_form(self, client_id: str, **overrides: Any) -> dict[str, str]:
        service = self.service(client_id)
        return {"grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion(client_id, service["private_jwk"],
                                              self.token_endpoint, **overrides)}

    def service_token(self, client_id: str) -> str:
        response = self.http.post("/v1/token", data=self.token_form(client_id))
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def citizen_token(self, idnr: str) -> str:
        response = self.http.post("/demo/citizen-token", json={"idnr": idnr})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def grant(self, idnr: str, service_id: str, proof_types: list[str], purpose: str,
              **extra: Any) -> dict[str, Any]:
        body = {"service_id": service_id, "proof_types": proof_types, "purpose": purpose,
                "valid_until": in_days(30), **extra}
        response = self.http.post("/v1/consents", json=body,
                                  headers=bearer(self.citizen_token(idnr)))
        assert response.status_code == 201, response.text
        return response.json()

    def request_proof(self, client_id: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post("/v1/proof-requests", json=body,
                              headers=bearer(self.service_token(client_id)))

    def transfers(self, idnr: str, *, wait_for: set[str] = frozenset(), timeout: float = 10,
                  ) -> list[dict[str, Any]]:
        """The citizen's cockpit log; waits until ``wait_for`` ids arrived (delivery is async)."""
        deadline = time.monotonic() + timeout
        token = self.citizen_token(idnr)
        while True:
            response = self.http.get("/v1/me/transfers", params={"limit": 200},
                                     headers=bearer(token))
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            if wait_for <= {item["id"] for item in items} or time.monotonic() > deadline:
                return items
            time.sleep(0.1)


def in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(name="demo")
def fx_demo(live_server: Any) -> Demo:
    credentials = json.loads((live_server.data_dir / "demo-credentials.json").read_text())
    with httpx.Client(base_url=live_server.base_url, timeout=20) as http:
        yield Demo(base_url=live_server.base_url, credentials=credentials, http=http)


@pytest.fixture(name="make_demo")
def fx_make_demo(start_live_server: Callable[..., Any]) -> Callable[..., Demo]:
    clients: list[httpx.Client] = []

    def make(**overrides: Any) -> Demo:
        live = start_live_server(**overrides)
        credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
        http = httpx.Client(base_url=live.base_url, timeout=20)
        clients.append(http)
        return Demo(base_url=live.base_url, credentials=credentials, http=http)

    yield make
    for http in clients:
        http.close()
