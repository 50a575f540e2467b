"""Demo mode: the demo identity provider (stand-in for eID login) and demo credentials.

Exists only with ``--demo``: outside demo mode none of these paths is routed (tested).
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import jwt
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.response import Redirect, Template

from cockpit.web.core import WebView
from cockpit.web.i18n import load_catalogs
from cockpit.web.security import csp
from connectors.simulators.population import DemoCitizen
from einmal.citizen import CITIZEN_AUDIENCE
from einmal.demo_keys import demo_private_jwk, demo_public_jwk
from einmal.domain.idnr import InvalidIdNrError, validate_idnr
from einmal.keys import load_or_create_signing_key
from einmal.openapi import (
    PrivateJwk,
    inline_schema,
    json_body,
    problems,
    with_request_body,
)
from einmal.ops import ops_token
from einmal.problems import ProblemError
from einmal.settings import Settings
from einmal.tokens import TokenIssuer

__all__ = ["DEMO_IDP_KEY", "DemoComponent"]

DEMO_IDP_KEY = "demo-idp"
DEMO_AUDITOR = "datenschutz-audit"  # the demo auditor's key name (decision 0006)
_json = msgspec.json.Encoder()


class _LoginIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    idnr: str


# -- what the demo answers (documentation types: the handlers encode dicts) ---------------------
class CitizenToken(msgspec.Struct, frozen=True, kw_only=True):
    """A demo citizen's bearer token (``/demo/citizen-token``)."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class DemoService(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    name: str
    authority: str
    private_jwk: PrivateJwk


class DemoAuditor(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    private_jwk: PrivateJwk


class DemoCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """``/demo/credentials``: the demo's public keys and people (never the operator token)."""

    note: str
    base_url: str
    broker_url: str
    cockpit_url: str
    registers_url: str
    token_endpoint: str
    jwks_uri: str
    citizen_token_endpoint: str
    services: list[DemoService]
    auditors: list[DemoAuditor]
    citizens: list[DemoCitizen]


class DemoComponent:
    name = "demo"

    def __init__(self, settings: Settings, *, citizens: dict[str, dict[str, Any]],
                 services: list[dict[str, Any]]) -> None:
        key = load_or_create_signing_key(settings.keys_dir, DEMO_IDP_KEY)
        self._issuer = TokenIssuer(key=key, issuer=settings.demo_issuer,
                                   audience=CITIZEN_AUDIENCE, ttl_s=settings.citizen_token_ttl_s)
        self._citizens = citizens
        self._settings = settings

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
              status_code=200, responses=json_body(CitizenToken) | problems(404, 422),
              operation_class=with_request_body(inline_schema(_LoginIn)))
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

        @get("/demo/credentials", summary="Demo credentials (public demo keys)", tags=["demo"],
             responses=json_body(DemoCredentials))
        async def demo_credentials() -> Response[bytes]:
            return Response(content=credentials, media_type="application/json")

        return Router(path="/", route_handlers=[citizen_token, demo_credentials,
                                                *DemoOidcProvider(self._settings, issuer,
                                                                  citizens).handlers()])

    def write_credentials(self, data_dir: Path) -> Path:
        path = data_dir / "demo-credentials.json"
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # The operator token (F5) goes into the file only, never to /demo/credentials.
        content = {**self.credentials, "ops_token": ops_token(self._settings)}
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle, indent=2, ensure_ascii=False)
        return path

    async def start(self) -> None:
        self.write_credentials(self._settings.data_dir)

    async def stop(self) -> None:
        return None


class DemoOidcProvider:
    """The demo identity provider speaking OpenID Connect (authorization code + PKCE S256), so
    the demo exercises the cockpit's real login code. Demo mode only; one registered client
    (``settings.oidc_client_id``, redirect URI ``<cockpit>/auth/callback``); codes are one-time
    and live 60 s. The access token is the same citizen token ``/demo/citizen-token`` issues."""

    CODE_TTL_S = 60

    def __init__(self, settings: Settings, tokens: TokenIssuer,
                 citizens: dict[str, dict[str, Any]]) -> None:
        self._tokens = tokens
        self._issuer = tokens.issuer
        self._client_id = settings.oidc_client_id
        self._redirect_uri = f"{settings.cockpit_base_url}/auth/callback"
        self._people = [c for c in citizens.values() if c.get("family")]
        self._citizens = citizens
        self._codes: dict[str, dict[str, Any]] = {}
        self._secret = secrets.token_bytes(32)  # binds the authorize form to its request

        self._catalogs = load_catalogs()
        self._jwks = _json.encode({"keys": [tokens.key.public_jwk]})
        self._metadata = _json.encode({
            "issuer": self._issuer,
            "authorization_endpoint": f"{self._issuer}/authorize",
            "token_endpoint": f"{self._issuer}/token",
            "jwks_uri": f"{self._issuer}/jwks.json",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid"],
            "claims_supported": ["sub", "idnr", "name"],
            "authorization_response_iss_parameter_supported": True,
        })

    # -- helpers -----------------------------------------------------------------------------
    def _request_mac(self, params: dict[str, str]) -> str:
        canonical = "|".join(params.get(k, "") for k in
                             ("client_id", "redirect_uri", "state", "nonce", "code_challenge",
                              "scope"))
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def _check_request(self, params: dict[str, str]) -> str | None:
        """None if the authorization request is acceptable, else what is wrong."""
        if params.get("client_id") != self._client_id:
            return "unknown client_id"
        if params.get("redirect_uri") != self._redirect_uri:
            return "redirect_uri is not registered for this client"
        if params.get("response_type", "code") != "code":
            return "response_type must be code"
        if "openid" not in params.get("scope", "").split():
            return "scope must include openid"
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "PKCE with S256 is required"
        if not params.get("state") or not params.get("nonce"):
            return "state and nonce are required"
        return None

    def _back(self, **values: str) -> Redirect:
        query = urlencode({**values, "iss": self._issuer})
        return Redirect(path=f"{self._redirect_uri}?{query}", status_code=303)

    # -- endpoints ---------------------------------------------------------------------------
    def handlers(self) -> list[Any]:
        provider = self

        @get("/demo/.well-known/openid-configuration", summary="Demo IdP: OIDC discovery",
             tags=["demo"], include_in_schema=False)
        async def discovery() -> Response[bytes]:
            return Response(content=provider._metadata, media_type="application/json")

        @get("/demo/jwks.json", summary="Demo IdP: public keys", tags=["demo"],
             include_in_schema=False)
        async def jwks() -> Response[bytes]:
            return Response(content=provider._jwks, media_type="application/json")

        @get("/demo/authorize", summary="Demo IdP: pick a demo citizen", tags=["demo"],
             include_in_schema=False)
        async def authorize(request: Request[Any, Any, Any]) -> Response[Any]:
            params = {k: str(v) for k, v in request.query_params.items()}
            return provider._page(request, params)

        @post("/demo/authorize", summary="Demo IdP: log in as a demo citizen", tags=["demo"],
              include_in_schema=False, status_code=303)
        async def authorize_post(request: Request[Any, Any, Any]) -> Response[Any]:
            form = {k: str(v) for k, v in (await request.form()).items()}
            problem = provider._check_request(form)
            if problem or not hmac.compare_digest(form.get("request_mac", ""),
                                                  provider._request_mac(form)):
                return provider._page(request, form, error=problem or "form tampered with")
            if form.get("action") == "cancel":
                return provider._back(error="access_denied", state=form["state"])
            idnr = form.get("idnr", "")
            if idnr not in {p["idnr"] for p in provider._people}:
                return provider._page(request, form, missing=True)
            provider._expire_codes()
            code = secrets.token_urlsafe(32)
            provider._codes[code] = {"idnr": idnr, "nonce": form["nonce"],
                                     "challenge": form["code_challenge"],
                                     "client_id": form["client_id"],
                                     "redirect_uri": form["redirect_uri"],
                                     "expires": time.time() + provider.CODE_TTL_S}
            return provider._back(code=code, state=form["state"])

        @post("/demo/token", summary="Demo IdP: redeem an authorization code", tags=["demo"],
              include_in_schema=False, status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[bytes]:
            form = {k: str(v) for k, v in (await request.form()).items()}
            return provider._redeem(form)

        return [discovery, jwks, authorize, authorize_post, token]

    def _page(self, request: Request[Any, Any, Any], params: dict[str, str], *,
              error: str | None = None, missing: bool = False) -> Response[Any]:

        problem = error or self._check_request(params)
        language = WebView.language(request)
        context = {
            "t": self._catalogs.translator(language), "lang": language,
            "switch_lang": "en" if language == "de" else "de",
            "switch_url": WebView.url_with(request, lang="en" if language == "de" else "de"),
            "demo": True, "path": request.url.path, "logged_in": False, "citizen_masked": "",
            "session_ends": "", "csrf": "", "notice": None,
            "problem": problem, "missing": missing, "people": self._people,
            "params": {k: params.get(k, "") for k in ("client_id", "redirect_uri", "state",
                                                       "nonce", "code_challenge", "scope")},
            "request_mac": self._request_mac(params),
        }
        origin = self._redirect_uri.split("/auth/callback")[0]
        return Template(template_name="demo/authorize.html", context=context,
                        status_code=400 if problem else 200,
                        headers={"content-security-policy": csp([origin]),
                                 "cache-control": "no-store", "x-frame-options": "DENY",
                                 "x-content-type-options": "nosniff",
                                 "referrer-policy": "no-referrer"})

    def _expire_codes(self) -> None:
        now = time.time()
        for code in [c for c, v in self._codes.items() if v["expires"] <= now]:
            del self._codes[code]
        if len(self._codes) > 10_000:
            self._codes.clear()

    def _redeem(self, form: dict[str, str]) -> Response[bytes]:
        def error(kind: str, text: str) -> Response[bytes]:
            return Response(content=_json.encode({"error": kind, "error_description": text}),
                            status_code=400, media_type="application/json",
                            headers={"cache-control": "no-store"})

        if form.get("grant_type") != "authorization_code":
            return error("unsupported_grant_type", "grant_type must be authorization_code")
        grant = self._codes.pop(form.get("code", ""), None)  # one-time
        if grant is None or grant["expires"] <= time.time():
            return error("invalid_grant", "unknown, used or expired code")
        if form.get("client_id") != grant["client_id"] or \
                form.get("redirect_uri") != grant["redirect_uri"]:
            return error("invalid_grant", "client_id or redirect_uri do not match")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or not hmac.compare_digest(challenge, grant["challenge"]):
            return error("invalid_grant", "PKCE verification failed")
        idnr = grant["idnr"]
        person = self._citizens.get(idnr, {})
        now = int(time.time())
        id_token = jwt.encode(
            {"iss": self._issuer, "aud": grant["client_id"], "sub": idnr, "iat": now,
             "exp": now + 300, "nonce": grant["nonce"], "idnr": idnr,
             "name": f"{person.get('given_names', '')} {person.get('family_name', '')}".strip()},
            self._tokens.key.private_key, algorithm="EdDSA",
            headers={"kid": self._tokens.key.kid})
        body = {"access_token": self._tokens.issue(idnr, idnr=idnr), "token_type": "Bearer",
                "expires_in": self._tokens.ttl_s, "id_token": id_token, "scope": "openid"}
        return Response(content=_json.encode(body), media_type="application/json",
                        headers={"cache-control": "no-store", "pragma": "no-cache"})

