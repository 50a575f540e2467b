"""The authorization matrix: every actor x every route of the running app -> expected status.

Table-driven over real HTTP against one demo server (broker + cockpit + registers + demo IdP).
The routes are read from the running Litestar app itself; ``test_every_route_has_a_row`` fails
when a route exists without a row here, so a new endpoint must be classified before it ships.

Actors: anonymous; each demo service (for the proof-request row the Namensdienst holds the
permission and the other three are "a service without the needed permission"); citizen A
(Anna, who holds the consent), the other parent of the same child (Ben), citizen B of another
family (Clara); the demo auditor; the broker -> cockpit channel; the operator (the ops bearer
token of /health/ready and /metrics, F5).

Rows marked FINDING record today's behaviour of a known weakness (docs/threat-model.md, "Not
yet mitigated"); when it is fixed, the row must change with it.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from connectors.xpersonenstand import build_request
from einmal_client.sources import SessionKey
from tests.e2e.conftest import in_days
from tests.e2e.helpers import ELTERNGELD, FAMILIENKASSE, NAMENSDIENST, UVO, birth_request
from tests.e2e.security_support import (
    auditor,
    bearer,
    channel_token,
    module_server,
    wait_for_log,
)

SERVICES = {"service:namensdienst": NAMENSDIENST, "service:elterngeld": ELTERNGELD,
            "service:familienkasse": FAMILIENKASSE, "service:uvo": UVO}
CITIZENS = {"citizen-a": ("elfe", "parent", 0), "parent-of-child": ("elfe", "parent", 1),
            "citizen-b": ("uvo", "parent", 0)}
ACTORS = ["anonymous", *SERVICES, *CITIZENS, "auditor", "channel", "operator"]
EVERYONE = frozenset(ACTORS)


@dataclass
class Context:
    live: Any
    demo: Any
    tokens: dict[str, str] = field(default_factory=dict)
    consent_id: str = ""
    transfer_id: str = ""
    preview_id: str = ""

    def header(self, actor: str) -> dict[str, str]:
        if actor == "anonymous":
            return {}
        if actor == "auditor":
            return bearer(auditor(self.demo))  # short-lived: made per request
        if actor == "channel":
            return bearer(channel_token(self.live))
        if actor == "operator":
            return bearer(self.demo.credentials["ops_token"])
        return bearer(self.tokens[actor])

    def person(self, family: str, role: str, index: int = 0) -> dict[str, Any]:
        return self.demo.citizen(family, role, index)


@dataclass(frozen=True)
class Row:
    """One route: how to call it, and the status each actor gets (``default`` for the rest)."""

    request: Callable[[Context, str], dict[str, Any]]
    allowed: dict[str, int]
    default: int = 401
    note: str = ""

    def expected(self, actor: str) -> int:
        return self.allowed.get(actor, self.default)


def _get(url: str, **params: Any) -> Callable[[Context, str], dict[str, Any]]:
    return lambda ctx, actor: {"method": "GET", "url": url, "params": params}


def _all(status: int) -> dict[str, int]:
    return dict.fromkeys(ACTORS, status)


def _token_request(ctx: Context, actor: str) -> dict[str, Any]:
    # The credential of the token endpoint is the client assertion in the form, not a bearer.
    if actor in SERVICES:
        return {"method": "POST", "url": "/v1/token", "data": ctx.demo.token_form(SERVICES[actor]),
                "auth": False}
    if actor == "anonymous":
        return {"method": "POST", "url": "/v1/token", "data": {}, "auth": False}
    presented = ctx.header(actor)["authorization"].removeprefix("Bearer ")
    form = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": presented}
    return {"method": "POST", "url": "/v1/token", "data": form, "auth": False}


def _proof_request(ctx: Context, actor: str) -> dict[str, Any]:
    return {"method": "POST", "url": "/v1/proof-requests",
            "json": birth_request(ctx.demo, "namensbestimmung")}


def _grant(ctx: Context, actor: str) -> dict[str, Any]:
    return {"method": "POST", "url": "/v1/consents",
            "json": {"service_id": FAMILIENKASSE, "proof_types": ["birth"],
                     "purpose": "kindergeld-antrag", "valid_until": in_days(10)}}


def _revoke(ctx: Context, actor: str) -> dict[str, Any]:
    return {"method": "DELETE", "url": f"/v1/consents/{ctx.consent_id}"}


def _held_preview(ctx: Context) -> str:
    """A custody proof held for Clara's (citizen B's) preview: the UVO policy asks for one."""
    clara, leon = ctx.person("uvo", "parent"), ctx.person("uvo", "child")
    consent = ctx.demo.grant(clara["idnr"], UVO, ["custody"], "unterhaltsvorschuss-antrag",
                             subject=leon["idnr"])
    held = ctx.demo.request_proof(UVO, {
        "proof_type": "custody", "subject": leon["idnr"], "purpose": "unterhaltsvorschuss-antrag",
        "consent_id": consent["id"], "parameters": {"land": clara["home_land"]}})
    assert held.status_code == 202, held.text
    return str(held.json()["request_id"])


def _decide(ctx: Context, actor: str) -> dict[str, Any]:
    # a fresh preview each time: a decision changes state, the rows must not depend on order
    return {"method": "POST", "url": f"/v1/me/previews/{_held_preview(ctx)}",
            "json": {"decision": "refuse"}}


_SOURCE = "only the cockpit's signed per-request token opens a source (issue 15)"


def _post_empty(url: str) -> Any:
    def request(ctx: Context, actor: str) -> dict[str, Any]:
        return {"method": "POST", "url": url, "json": {}}

    return request


def _ingest(ctx: Context, actor: str) -> dict[str, Any]:
    return {"method": "POST", "url": "/v1/transfer-records", "json": {"records": []}}


def _login(ctx: Context, actor: str) -> dict[str, Any]:
    return {"method": "POST", "url": "/demo/citizen-token",
            "json": {"idnr": ctx.person("elfe", "parent")["idnr"]}}


def _standesamt(ctx: Context, actor: str) -> dict[str, Any]:
    child = ctx.person("elfe", "child")
    body = build_request(idnr=child["idnr"], birth_date=child["birth_date"], family_name=None,
                         reader="matrix")
    return {"method": "POST", "url": f"/registers/standesamt/{child['place_of_birth']}/geburt",
            "content": body, "headers": {"content-type": "application/xml"}}


def _sorge(ctx: Context, actor: str) -> dict[str, Any]:
    idnr = ctx.person("elfe", "child")["idnr"]
    return {"method": "GET", "url": f"/registers/sorge/HB/records/{idnr}"}


def _income(ctx: Context, actor: str) -> dict[str, Any]:
    anna = ctx.person("elfe", "parent")["idnr"]
    return {"method": "GET", "url": f"/registers/income/persons/{anna}/months",
            "params": {"from": "2025-01", "to": "2025-12"}}


def _receipt(ctx: Context, actor: str) -> dict[str, Any]:
    return {"method": "GET", "url": f"/v1/me/transfers/{ctx.transfer_id}/receipt"}


def _add_checkpoint(ctx: Context, actor: str) -> dict[str, Any]:
    return {"method": "POST", "url": "/witness/add-checkpoint", "content": b"old 0\n\nnot a note",
            "headers": {"content-type": "text/plain"}}


def _knobs_put(ctx: Context, actor: str) -> dict[str, Any]:
    return {"method": "PUT", "url": "/registers/_knobs", "json": {}}


_SERVICE_OK = {**dict.fromkeys(SERVICES, 200), "anonymous": 400}
_CITIZENS_OK = dict.fromkeys(CITIZENS, 200)
_SIMULATOR = ("FINDING F1: register simulators are routed on the public port without any "
              "authentication (register data and failure knobs readable/writable by anyone)")

MATRIX: dict[tuple[str, str], Row] = {
    # -- broker: online services
    ("POST", "/v1/token"): Row(_token_request, _SERVICE_OK),
    ("POST", "/v1/proof-requests"): Row(_proof_request, {
        "service:namensdienst": 200, "service:elterngeld": 403, "service:familienkasse": 403,
        "service:uvo": 403}, note="the other services hold no permission for this purpose"),
    ("GET", "/v1/proof-requests/{request_id:str}"): Row(
        lambda ctx, actor: {"method": "GET", "url": f"/v1/proof-requests/{ctx.preview_id}"},
        {"service:uvo": 202, "service:namensdienst": 404, "service:elterngeld": 404,
         "service:familienkasse": 404},
        note="a preview held for the citizen: only the service that asked sees it (202 while "
             "pending); another service gets the unknown-id 404"),
    ("GET", "/.well-known/jwks.json"): Row(_get("/.well-known/jwks.json"), _all(200)),
    # -- broker: citizens' consents
    ("POST", "/v1/consents"): Row(_grant, dict.fromkeys(CITIZENS, 201)),
    ("GET", "/v1/consents"): Row(_get("/v1/consents"), _CITIZENS_OK),
    ("DELETE", "/v1/consents/{consent_id:str}"): Row(_revoke, {
        "citizen-a": 200, "parent-of-child": 404, "citizen-b": 404},
        note="A's consent about the shared child: not even the other parent may touch it"),
    # -- broker: citizens' previews (EU OOTS): only the citizen who decides; others 404
    ("GET", "/v1/me/previews"): Row(_get("/v1/me/previews"), _CITIZENS_OK),
    ("GET", "/v1/me/previews/{request_id:str}"): Row(
        lambda ctx, actor: {"method": "GET", "url": f"/v1/me/previews/{ctx.preview_id}"},
        {"citizen-b": 200, "citizen-a": 404, "parent-of-child": 404}),
    ("POST", "/v1/me/previews/{request_id:str}"): Row(
        _decide, {"citizen-b": 200, "citizen-a": 404, "parent-of-child": 404}),
    # -- cockpit
    ("POST", "/v1/transfer-records"): Row(_ingest, {"channel": 200}),
    ("GET", "/v1/me/transfers"): Row(_get("/v1/me/transfers"), _CITIZENS_OK),
    ("GET", "/v1/me/transfers/{transfer_id:str}/receipt"): Row(
        _receipt, {"citizen-a": 200, "parent-of-child": 200, "citizen-b": 404},
        note="a birth proof about the elfe child: both parents see it; another citizen gets "
             "the unknown-id 404"),
    # -- cockpit: the citizen API in the source model (asked live, relayed unopened)
    ("GET", "/v1/me/sources"): Row(_get("/v1/me/sources"), _CITIZENS_OK),
    ("POST", "/v1/me/source-queries"): Row(
        lambda ctx, actor: {"method": "POST", "url": "/v1/me/source-queries", "json": {
            "session_key": SessionKey().public_jwk, "sources": ["standesamt:04011000"]}},
        _CITIZENS_OK, note="each citizen is asked about by the IdNr of their own token"),
    ("POST", "/v1/me/source-queries/content"): Row(
        lambda ctx, actor: {"method": "POST", "url": "/v1/me/source-queries/content", "json": {
            "session_key": SessionKey().public_jwk, "source": "standesamt:04011000",
            "entry_id": "no-such-entry"}},
        dict.fromkeys(CITIZENS, 404),
        note="past the gate a citizen reaches the source, which answers only about the "
             "token's IdNr: an unknown or another's entry is 404 (test_dsc_api.py)"),
    # -- broker: its own protocol as a source (issue 15 §5)
    ("GET", "/dsc/status"): Row(_get("/dsc/status"), _all(401), note=_SOURCE),
    ("POST", "/dsc/protokolldaten"): Row(_post_empty("/dsc/protokolldaten"), _all(401),
                                         note=_SOURCE),
    ("POST", "/dsc/inhaltsdaten"): Row(_post_empty("/dsc/inhaltsdaten"), _all(401),
                                       note=_SOURCE),
    ("GET", "/v1/audit/export"): Row(_get("/v1/audit/export"), {"auditor": 200}),
    ("GET", "/v1/log/checkpoint"): Row(_get("/v1/log/checkpoint"), _all(200)),
    ("GET", "/v1/log/verifier-key"): Row(_get("/v1/log/verifier-key"), _all(200)),
    ("GET", "/v1/log/verifier-keys"): Row(_get("/v1/log/verifier-keys"), _all(200)),
    ("GET", "/v1/log/entries/{transfer_id:str}"): Row(
        lambda ctx, actor: {"method": "GET", "url": f"/v1/log/entries/{ctx.transfer_id}"},
        _all(200), note="public like the proofs; transfer ids are unguessable UUIDv7"),
    ("GET", "/v1/log/proof/inclusion"): Row(
        _get("/v1/log/proof/inclusion", index=0, tree_size=1), _all(200)),
    ("GET", "/v1/log/proof/consistency"): Row(
        _get("/v1/log/proof/consistency", **{"from": 1, "to": 1}), _all(200)),
    ("GET", "/v1/log/witnesses"): Row(_get("/v1/log/witnesses"), _all(200)),
    # -- static tiles (C2SP tlog-tiles): public, like the proofs they replace
    ("GET", "/log/checkpoint"): Row(_get("/log/checkpoint"), _all(200)),
    ("GET", "/log/verifier-key"): Row(_get("/log/verifier-key"), _all(200)),
    ("GET", "/log/tile/{rest:path}"): Row(_get("/log/tile/0/x1/2"), _all(400),
                                          note="public; a non-canonical path is refused"),
    # -- the registers' source interface (XDatenschutzcockpit): the cockpit's token only
    ("GET", "/registers/income/dsc/status"): Row(_get("/registers/income/dsc/status"),
                                                 _all(401), note=_SOURCE),
    ("GET", "/registers/sorge/{land:str}/dsc/status"): Row(
        _get("/registers/sorge/HB/dsc/status"), _all(401), note=_SOURCE),
    ("GET", "/registers/standesamt/{ags:str}/dsc/status"): Row(
        _get("/registers/standesamt/04011000/dsc/status"), _all(401), note=_SOURCE),
    ("POST", "/registers/income/dsc/protokolldaten"): Row(
        _post_empty("/registers/income/dsc/protokolldaten"), _all(401), note=_SOURCE),
    ("POST", "/registers/income/dsc/inhaltsdaten"): Row(
        _post_empty("/registers/income/dsc/inhaltsdaten"), _all(401), note=_SOURCE),
    ("POST", "/registers/sorge/{land:str}/dsc/protokolldaten"): Row(
        _post_empty("/registers/sorge/HB/dsc/protokolldaten"), _all(401), note=_SOURCE),
    ("POST", "/registers/sorge/{land:str}/dsc/inhaltsdaten"): Row(
        _post_empty("/registers/sorge/HB/dsc/inhaltsdaten"), _all(401), note=_SOURCE),
    ("POST", "/registers/standesamt/{ags:str}/dsc/protokolldaten"): Row(
        _post_empty("/registers/standesamt/04011000/dsc/protokolldaten"), _all(401),
        note=_SOURCE),
    ("POST", "/registers/standesamt/{ags:str}/dsc/inhaltsdaten"): Row(
        _post_empty("/registers/standesamt/04011000/dsc/inhaltsdaten"), _all(401),
        note=_SOURCE),
    # -- the demo's witness (demo mode only; C2SP tlog-witness, public by design)
    ("POST", "/witness/add-checkpoint"): Row(_add_checkpoint, _all(400),
                                             note="public like any witness; a malformed "
                                                  "request is refused"),
    # -- demo identity provider (routed in demo mode only: tests/e2e/test_proof_requests.py)
    ("POST", "/demo/citizen-token"): Row(_login, _all(200), note="demo login, demo mode only"),
    ("GET", "/demo/credentials"): Row(_get("/demo/credentials"), _all(200),
                                      note="public demo keys, demo mode only"),
    # -- register simulators
    ("POST", "/registers/standesamt/{ags:str}/geburt"): Row(_standesamt, _all(200),
                                                             note=_SIMULATOR),
    ("GET", "/registers/sorge/{land:str}/records/{idnr:str}"): Row(_sorge, _all(200),
                                                                    note=_SIMULATOR),
    ("GET", "/registers/income/persons/{idnr:str}/months"): Row(_income, _all(200),
                                                                 note=_SIMULATOR),
    ("GET", "/registers/_knobs"): Row(_get("/registers/_knobs"), _all(200), note=_SIMULATOR),
    ("PUT", "/registers/_knobs"): Row(_knobs_put, _all(200), note=_SIMULATOR),
    # -- operations
    ("GET", "/health/live"): Row(_get("/health/live"), _all(200)),
    ("GET", "/health/ready"): Row(_get("/health/ready"), {"operator": 200},
                                  note="F5 fixed: operator token (einmal/ops.py)"),
    ("GET", "/metrics"): Row(_get("/metrics"), {"operator": 200},
                             note="F5 fixed: operator token (einmal/ops.py)"),
    # -- OpenAPI and its viewers (public by design)
    ("GET", "/schema"): Row(_get("/schema"), _all(200)),
    ("GET", "/schema/openapi.json"): Row(_get("/schema/openapi.json"), _all(200)),
    ("GET", "/schema/openapi.yaml"): Row(_get("/schema/openapi.yaml"), _all(200)),
    ("GET", "/schema/openapi.yml"): Row(_get("/schema/openapi.yml"), _all(200)),
    ("GET", "/schema/swagger"): Row(_get("/schema/swagger"), _all(200)),
    ("GET", "/schema/redoc"): Row(_get("/schema/redoc"), _all(200)),
    ("GET", "/schema/elements"): Row(_get("/schema/elements"), _all(200)),
    ("GET", "/schema/rapidoc"): Row(_get("/schema/rapidoc"), _all(200)),
    ("GET", "/schema/oauth2-redirect.html"): Row(_get("/schema/oauth2-redirect.html"), _all(200)),
    ("GET", "/schema/{path:str}"): Row(_get("/schema/no-such-viewer"), _all(404),
                                       note="Litestar's viewer catch-all; a problem+json 404 "
                                            "(F6 fixed: einmal/openapi.py)"),
}

def _form(url: str) -> Callable[[Context, str], dict[str, Any]]:
    return lambda ctx, actor: {"method": "POST", "url": url, "data": {}}


_HTML = ("HTML (cockpit/web): a cookie session, not a bearer token, logs a citizen in; "
         "pages without one answer 303 to /login, errors are HTML pages")
_OIDC = "OIDC demo IdP (demo mode only): OAuth errors, not problem+json"
#: The citizen web view and the demo IdP's OpenID Connect endpoints (tests/e2e/test_web_*.py
#: test them with a logged-in browser; here every actor is anonymous to them).
WEB_ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/"): Row(_get("/"), _all(303), note=_HTML),
    ("GET", "/login"): Row(_get("/login"), _all(200), note=_HTML),
    ("GET", "/login/start"): Row(_get("/login/start"), _all(303),
                                 note=_HTML + "; 303 to the identity provider"),
    ("GET", "/auth/callback"): Row(_get("/auth/callback", code="x", state="y"), _all(400),
                                   note=_HTML + "; no pending login: refused"),
    ("POST", "/logout"): Row(_form("/logout"), _all(303), note=_HTML),
    ("GET", "/transfers/{transfer_id:str}"): Row(
        lambda ctx, actor: {"method": "GET", "url": f"/transfers/{ctx.transfer_id}"},
        _all(303), note=_HTML),
    ("GET", "/transfers/{transfer_id:str}/receipt"): Row(
        lambda ctx, actor: {"method": "GET", "url": f"/transfers/{ctx.transfer_id}/receipt"},
        _all(303), note=_HTML),
    # the source model's pages (issue 15): the login comes first, as everywhere
    ("GET", "/sources"): Row(_get("/sources"), _all(303), note=_HTML),
    ("POST", "/sources/query"): Row(_form("/sources/query"), _all(303), note=_HTML),
    ("GET", "/sources/report.pdf"): Row(_get("/sources/report.pdf"), _all(303), note=_HTML),
    ("GET", "/entries/{handle:str}"): Row(_get("/entries/" + "0" * 32), _all(303),
                                          note=_HTML),
    ("POST", "/entries/{handle:str}/content"): Row(_form("/entries/" + "0" * 32 + "/content"),
                                                   _all(303), note=_HTML),
    ("GET", "/consents"): Row(_get("/consents"), _all(303), note=_HTML),
    ("GET", "/consents/new"): Row(_get("/consents/new"), _all(400),
                                  note=_HTML + "; validated before login: no client_id"),
    ("POST", "/consents/new"): Row(_form("/consents/new"), _all(303), note=_HTML),
    ("GET", "/consents/{consent_id:str}/revoke"): Row(
        lambda ctx, actor: {"method": "GET", "url": f"/consents/{ctx.consent_id}/revoke"},
        _all(303), note=_HTML),
    ("POST", "/consents/{consent_id:str}/revoke"): Row(
        lambda ctx, actor: {"method": "POST", "url": f"/consents/{ctx.consent_id}/revoke",
                            "data": {}}, _all(303), note=_HTML),
    ("GET", "/previews"): Row(_get("/previews"), _all(303), note=_HTML),
    ("GET", "/previews/{request_id:str}"): Row(
        lambda ctx, actor: {"method": "GET", "url": f"/previews/{ctx.preview_id}"},
        _all(303), note=_HTML),
    ("POST", "/previews/{request_id:str}"): Row(
        lambda ctx, actor: {"method": "POST", "url": f"/previews/{ctx.preview_id}",
                            "data": {"decision": "accept"}}, _all(303), note=_HTML),
    ("GET", "/my-data"): Row(_get("/my-data"), _all(303), note=_HTML),
    ("GET", "/my-data/transfers.json"): Row(_get("/my-data/transfers.json"), _all(303),
                                            note=_HTML),
    ("GET", "/my-data/report.pdf"): Row(_get("/my-data/report.pdf"), _all(303), note=_HTML),
    ("GET", "/static/{file_path:path}"): Row(_get("/static/cockpit.css"), _all(200),
                                             note=_HTML + "; the stylesheet, public"),
    ("GET", "/demo/.well-known/openid-configuration"): Row(
        _get("/demo/.well-known/openid-configuration"), _all(200), note=_OIDC),
    ("GET", "/demo/jwks.json"): Row(_get("/demo/jwks.json"), _all(200), note=_OIDC),
    ("GET", "/demo/authorize"): Row(_get("/demo/authorize"), _all(400),
                                    note=_OIDC + "; no valid authorization request"),
    ("POST", "/demo/authorize"): Row(_form("/demo/authorize"), _all(400), note=_OIDC),
    ("POST", "/demo/token"): Row(_form("/demo/token"), _all(400),
                                 note=_OIDC + "; no code"),
}
MATRIX.update(WEB_ROWS)

# Routes whose errors are not problem+json (the simulators speak their own formats).
_OWN_ERROR_FORMAT = {key for key, row in MATRIX.items()
                     if row.note.startswith(("FINDING F1", "HTML", "OIDC"))}


@pytest.fixture(name="ctx", scope="module")
def fx_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    for live, demo in module_server(tmp_path_factory.mktemp("matrix")):
        ctx = Context(live=live, demo=demo)
        for actor, client_id in SERVICES.items():
            ctx.tokens[actor] = demo.service_token(client_id)
        for actor, (family, role, index) in CITIZENS.items():
            ctx.tokens[actor] = demo.citizen_token(demo.citizen(family, role, index)["idnr"])
        child = demo.citizen("elfe", "child")
        ctx.consent_id = demo.grant(demo.citizen("elfe", "parent")["idnr"], ELTERNGELD,
                                    ["birth"], "elterngeld-antrag", subject=child["idnr"])["id"]
        released = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert released.status_code == 200, released.text
        ctx.transfer_id = released.json()["transfer_id"]
        ctx.preview_id = _held_preview(ctx)
        wait_for_log(demo, 1)
        yield ctx


def _routes(ctx: Context) -> set[tuple[str, str]]:
    app = ctx.live.server.config.app
    return {(method, route.path) for route in app.routes
            for method in getattr(route, "methods", ()) if method not in {"OPTIONS", "HEAD"}}


def test_every_route_has_a_row(ctx: Context) -> None:
    routes = _routes(ctx)
    unclassified = routes - set(MATRIX)
    assert not unclassified, f"classify these routes in MATRIX: {sorted(unclassified)}"
    stale = set(MATRIX) - routes
    assert not stale, f"MATRIX rows without a route: {sorted(stale)}"


def test_every_documented_operation_has_a_row(ctx: Context) -> None:
    schema = ctx.demo.http.get("/schema/openapi.json").json()
    documented = {(method.upper(), path) for path, operations in schema["paths"].items()
                  for method in operations}
    classified = {(method, re.sub(r":\w+}", "}", path)) for method, path in MATRIX}
    assert documented <= classified, sorted(documented - classified)


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("actor", ACTORS)
def test_matrix(ctx: Context, actor: str, route: tuple[str, str]) -> None:
    row = MATRIX[route]
    spec = dict(row.request(ctx, actor))
    auth = spec.pop("auth", True)
    headers = {**(ctx.header(actor) if auth else {}), **spec.pop("headers", {})}
    response = ctx.demo.http.request(headers=headers, **spec)
    expected = row.expected(actor)
    assert response.status_code == expected, (actor, route, response.text[:300])
    if response.status_code >= 400 and route not in _OWN_ERROR_FORMAT:
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["status"] == expected
        if expected == 401:
            assert body["type"] in {"urn:einmal:problem:unauthenticated",
                                    "urn:einmal:problem:invalid-client"}
    if route == ("POST", "/v1/proof-requests") and expected != 200:
        assert "proof" not in response.json()


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_options_reveals_nothing(ctx: Context, route: tuple[str, str]) -> None:
    """Litestar answers OPTIONS itself on every route: 204 and an Allow header, no body, no auth."""
    spec = MATRIX[route].request(ctx, "anonymous")
    response = ctx.demo.http.options(spec["url"])
    assert response.status_code == 204
    assert response.content == b""
    assert "allow" in response.headers


def test_matrix_size() -> None:
    """Recorded in docs/threat-model.md."""
    assert len(ACTORS) == 11
    assert len(MATRIX) == 60 + len(WEB_ROWS)
