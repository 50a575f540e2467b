"""Demo mode: the demo identity provider (stand-in for eID login) and demo credentials.

Exists only with ``--demo``: outside demo mode none of these paths is routed (tested).
"""

import json
import os
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post

from einmal.citizen import CITIZEN_AUDIENCE
from einmal.domain.idnr import InvalidIdNrError, validate_idnr
from einmal.keys import load_or_create_signing_key
from einmal.problems import ProblemError
from einmal.settings import Settings
from einmal.tokens import TokenIssuer

__all__ = ["DEMO_IDP_KEY", "DemoComponent", "demo_issuer"]

DEMO_IDP_KEY = "demo-idp"
DEMO_AUDITOR = "datenschutz-audit"  # the demo auditor's key name (decision 0006)
_json = msgspec.json.Encoder()


def demo_issuer(settings: Settings) -> str:
    return f"{settings.cockpit_base_url}/demo"


class _LoginIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    idnr: str


class DemoComponent:
    name = "demo"

    def __init__(self, settings: Settings, *, citizens: dict[str, dict[str, Any]],
                 services: list[dict[str, Any]]) -> None:
        key = load_or_create_signing_key(settings.keys_dir, DEMO_IDP_KEY)
        self._issuer = TokenIssuer(key=key, issuer=demo_issuer(settings),
                                   audience=CITIZEN_AUDIENCE, ttl_s=settings.citizen_token_ttl_s)
        self._citizens = citizens
        self._settings = settings
        from einmal.demo_keys import demo_private_jwk, demo_public_jwk  # noqa: PLC0415

        auditor = demo_private_jwk(DEMO_AUDITOR)
        auditors_file = settings.auditor_keys
        if not auditors_file.exists():
            auditors_file.parent.mkdir(parents=True, exist_ok=True)
            auditors_file.write_text(json.dumps({"keys": [demo_public_jwk(DEMO_AUDITOR)]}))
        base = settings.base_url
        self.credentials = {
            "note": "DEMO ONLY: these keys are public knowledge. Never use them in production.",
            "base_url": base,
            "broker_url": settings.broker_base_url,
            "cockpit_url": settings.cockpit_base_url,
            "registers_url": settings.registers_base_url,
            "token_endpoint": f"{settings.broker_base_url}/v1/token",
            "jwks_uri": f"{settings.broker_base_url}/.well-known/jwks.json",
            "citizen_token_endpoint": f"{settings.cockpit_base_url}/demo/citizen-token",
            "services": services,
            "auditors": [{"id": auditor["kid"], "private_jwk": auditor}],
            "citizens": [c for c in citizens.values() if c.get("family")],
        }
        self.router = self._router()

    def _router(self) -> Router:
        issuer = self._issuer
        citizens = self._citizens
        credentials = _json.encode(self.credentials)

        @post("/demo/citizen-token", summary="Demo login (stand-in for eID)", tags=["demo"],
              status_code=200)
        async def citizen_token(request: Request[Any, Any, Any]) -> Response[bytes]:
            try:
                login = msgspec.json.decode(await request.body(), type=_LoginIn)
                idnr = validate_idnr(login.idnr, allow_test=True)
            except (msgspec.ValidationError, msgspec.DecodeError, InvalidIdNrError) as exc:
                raise ProblemError("invalid-request", f"Invalid login: {exc}.") from exc
            if idnr not in citizens:
                raise ProblemError("not-found", "No demo citizen has this IdNr.")
            body = {"access_token": issuer.issue(idnr, idnr=idnr), "token_type": "Bearer",
                    "expires_in": issuer.ttl_s}
            return Response(content=_json.encode(body), media_type="application/json",
                            headers={"cache-control": "no-store"})

        @get("/demo/credentials", summary="Demo credentials (public demo keys)", tags=["demo"])
        async def demo_credentials() -> Response[bytes]:
            return Response(content=credentials, media_type="application/json")

        return Router(path="/", route_handlers=[citizen_token, demo_credentials])

    def write_credentials(self, data_dir: Path) -> Path:
        path = data_dir / "demo-credentials.json"
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.credentials, handle, indent=2, ensure_ascii=False)
        return path

    async def start(self) -> None:
        self.write_credentials(self._settings.data_dir)

    async def stop(self) -> None:
        return None
