"""The process: composes the configured components into one Litestar app on one port."""

import gc
import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgspec
import structlog
from litestar import Litestar, Request, Response, Router, get
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Receive, Scope, Send

from broker.app import BrokerComponent
from broker.tables import BUCKET as BROKER_BUCKET
from cockpit.app import CockpitComponent
from cockpit.log.checkpoints import CheckpointSigner
from cockpit.log.witnesses import WitnessEndpoint, WitnessPolicy
from cockpit.tables import BUCKET as COCKPIT_BUCKET
from cockpit.web.errors import error_page
from cockpit.web.security import header_dict
from connectors.factory import build_connectors
from connectors.protocol import ProtocolConfig
from connectors.simulators.app import RegistersComponent, SimulatorSettings
from connectors.simulators.population import generate_population
from einmal import __version__
from einmal.citizen import WEB_KEY_NAME, CitizenAuth
from einmal.demo_keys import demo_private_jwk
from einmal.ids import uuid4
from einmal.keys import (
    load_or_create_secret,
    load_or_create_signing_key,
    private_dir,
    retired_public_jwks,
)
from einmal.metrics import CONTENT_TYPE_LATEST, Metrics, route_of
from einmal.openapi import document_problems, json_body, problems, schema_not_found_as_problem
from einmal.ops import Liveness, OpsAuth, Readiness, ops_token
from einmal.problems import ProblemError, exception_handlers
from einmal.ratelimit import RateLimiter
from einmal.settings import Settings
from einmal.shared_state import SharedRateLimiter
from einmal_app.demo import DEMO_IDP_KEY, DemoComponent
from policies import DOCUMENTS_DIR, load_policies
from witness import WitnessComponent, WitnessConfig
from witness import create_app as create_witness_app

__all__ = ["Component", "create_app", "default_policies_dir", "freeze_startup_heap"]

log = structlog.get_logger()
MAX_BODY_BYTES = 64 * 1024
#: the demo's witness: its name in cosignatures, and where it is routed in this process
DEMO_WITNESS_NAME = "einmal-demo.example/witness"
DEMO_WITNESS_PREFIX = "/witness"


class Component(Protocol):
    name: str
    router: Router

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def default_policies_dir() -> Path:
    return DOCUMENTS_DIR


def freeze_startup_heap() -> None:
    """Call once, just before serving: moves every object built at start-up (policies, keys,
    app, and in demo mode the synthetic population: ~160,000 objects) out of the garbage
    collector's reach. Without it every full collection walks them all - 120-150 ms with the
    event loop stopped, a tail-latency stall (docs/benchmarks.md, 2026-11-29 second round).
    Not for tests: frozen objects are never collected."""
    gc.collect()
    gc.freeze()


class DemoPolicyError(Exception):
    """A demo policy document (public private key) was given to a non-demo server."""


def _request_context(metrics: Metrics) -> Any:
    """Binds a request id to every log line of a request; logs and measures each request."""

    def factory(app: ASGIApp) -> ASGIApp:
        return _middleware(app, metrics)

    return factory


def _middleware(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        structlog.contextvars.clear_contextvars()
        request_id = ""
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                # a client's id is kept only if it is short printable ASCII (it goes into
                # every log line and back into a response header)
                if len(value) <= 64 and value.isascii() and value.decode().isprintable():
                    request_id = value.decode()
                break
        request_id = request_id or uuid4()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_of(scope)
            metrics.observe(scope["method"], route, status, elapsed)
            # The route template, never the raw path: paths can carry an IdNr (the register
            # simulators' /registers/sorge/{land}/records/{idnr}; a client's typo).
            log.info("http.request", method=scope["method"], route=route, status=status,
                     duration_ms=round(elapsed * 1000, 2))

    return middleware


def _citizen_auth(settings: Settings) -> CitizenAuth:
    keys_url = None
    if settings.citizen_issuer and (settings.citizen_keys_file or settings.citizen_keys_url):
        issuer, keys_file = settings.citizen_issuer, settings.citizen_keys_file
        keys_url = settings.citizen_keys_url
    else:
        issuer = settings.demo_issuer
        keys_file = settings.keys_dir / f"{DEMO_IDP_KEY}.public.json"
    limiter = RateLimiter(rate_per_s=settings.rate_limit_citizen_per_s,
                          burst=settings.rate_limit_citizen_burst, what="citizen")
    # The cockpit web view's own tokens are accepted besides the identity provider's: the
    # web view never passes the provider's access token on (decision 0027).
    return CitizenAuth(issuer=issuer, keys_file=keys_file, allow_test_idnrs=settings.demo,
                       limiter=limiter, keys_url=keys_url, audience=settings.citizen_audience,
                       idnr_claim=settings.citizen_idnr_claim,
                       web_keys_file=settings.keys_dir / f"{WEB_KEY_NAME}.public.json")


def build_components(settings: Settings) -> list[Any]:
    """Build every configured component (order matters: keys are created on the way)."""
    private_dir(settings.data_dir)  # owner-only (0700), as the keys and the SQLite files
    private_dir(settings.keys_dir)
    citizens = _citizen_auth(settings)
    components: list[Any] = []
    policy_set = None
    if {"broker", "cockpit"} & settings.components or settings.demo:
        policy_set = load_policies(settings.policies_dir or default_policies_dir())
        demo_documents = [d.id for d in policy_set.services() if d.demo]
        if demo_documents and not settings.demo:
            # NOTE: anyone can compute a demo service's private key (decision 0006).
            msg = (f"demo policy documents ({', '.join(demo_documents)}) are refused outside demo "
                   "mode: their private keys are public knowledge. Start with --demo, or give "
                   "--policies-dir with your own documents.")
            raise DemoPolicyError(msg)
    if settings.demo and "cockpit" in settings.components:
        population = generate_population(seed=settings.simulator_seed,
                                         families=settings.simulator_families)
        people = {c.idnr: msgspec.to_builtins(c) for c in population.citizens()}
        for c in population.demo_citizens():
            people[c.idnr] = msgspec.to_builtins(c)
        assert policy_set is not None  # noqa: S101 - loaded above in demo mode
        services = [{"client_id": d.id, "name": d.name, "authority": d.authority,
                     "private_jwk": demo_private_jwk(d.id)}
                    for d in policy_set.services() if getattr(d, "demo", False)]
        components.append(DemoComponent(settings, citizens=people, services=services))
    if "registers" in settings.components:
        # the registers keep their own protocol (issue 15, connectors/protocol) in a file
        # of the data dir, with keys from the keys dir; they answer the cockpit's desk
        # (cockpit/sources), whose tokens name the cockpit's URL as issuer
        protocol = ProtocolConfig(
            database_url=f"sqlite+aiosqlite:///{settings.data_dir / 'registers-protocol.db'}",
            keys_dir=settings.keys_dir, cockpit_issuer=settings.cockpit_base_url)
        components.append(RegistersComponent(SimulatorSettings(
            seed=settings.simulator_seed, families=settings.simulator_families,
            protocol=protocol)))
    if "broker" in settings.components:
        assert policy_set is not None  # noqa: S101 - loaded above for a broker
        connectors = build_connectors(settings.registers_base_url,
                                      timeout_s=settings.register_timeout_s,
                                      retries=settings.register_retries,
                                      max_concurrency=settings.register_max_concurrency,
                                      queue_timeout_s=settings.register_queue_timeout_s)
        components.append(BrokerComponent(settings, policies=policy_set, citizens=citizens,
                                          connectors=connectors))
    if "cockpit" in settings.components:
        assert policy_set is not None  # noqa: S101 - loaded above for a cockpit
        witnesses, witness_http = None, None  # as the settings say
        if settings.demo and not settings.log_witnesses:
            demo_witness = _demo_witness(settings)
            components.append(demo_witness)
            witnesses = WitnessPolicy(quorum=1, witnesses=(WitnessEndpoint.of(
                demo_witness.vkey, f"{_loopback_url(settings)}{DEMO_WITNESS_PREFIX}"),))
            # HTTP into the witness's own app, in this process: it answers before the port is
            # bound (the cockpit's first round runs at start-up) and whatever the public URL
            witness_app = create_witness_app(demo_witness)
            witness_http = httpx.AsyncClient(transport=httpx.ASGITransport(
                app=witness_app))  # type: ignore[arg-type]  # ASGI both; Litestar types it narrower
        components.append(CockpitComponent(settings, citizens=citizens, policies=policy_set,
                                           witnesses=witnesses, witness_http=witness_http))
    _share_citizen_limit(settings, citizens, components)
    return components


def _demo_witness(settings: Settings) -> WitnessComponent:
    """The demo's witness (issue 16): in this process, with its own key, name and SQLite file
    in ``<data-dir>/witness``, following the cockpit's log (all its verifier keys). It shows
    the moving parts; a witness run by the log's operator proves nothing (decision 0030)."""
    signer = CheckpointSigner(key=load_or_create_signing_key(settings.keys_dir, "cockpit-log"),
                              origin=settings.log_origin_line,
                              retired_keys=retired_public_jwks(settings.keys_dir, "cockpit-log"))
    return WitnessComponent(WitnessConfig(
        data_dir=settings.data_dir / "witness", name=DEMO_WITNESS_NAME,
        log_keys=tuple(signer.verifier_keys), prefix=DEMO_WITNESS_PREFIX))


def _loopback_url(settings: Settings) -> str:
    """This process as its cockpit reaches it: its own port, on loopback if bound to all."""
    wildcard = {"0.0.0.0", "::", ""}  # noqa: S104 - compared with, not bound to
    host = "127.0.0.1" if settings.host in wildcard else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _share_citizen_limit(settings: Settings, citizens: CitizenAuth, components: list[Any],
                         ) -> None:
    """With shared state (decision 0032) the citizen's limit lives in the database of the
    first component that verifies citizens, so every process counts against one bucket."""
    for component, bucket in (("broker", BROKER_BUCKET), ("cockpit", COCKPIT_BUCKET)):
        owner = next((c for c in components if c.name == component), None)
        if owner is not None and settings.shares_state(component):
            citizens.limiter = SharedRateLimiter(
                owner.engine, bucket, rate_per_s=settings.rate_limit_citizen_per_s,
                burst=settings.rate_limit_citizen_burst, what="citizen",
                key_secret=load_or_create_secret(settings.keys_dir, f"{component}-pseudonym"))
            return


async def prepare_stores(components: list[Any]) -> None:
    """Check (and for a fresh store, create) every component's schema before serving."""
    for component in components:
        if hasattr(component, "prepare"):
            await component.prepare()


def _html_not_found(parts: list[Any]) -> Any:
    """With the cockpit's web view: a browser asking for an unknown page gets its 404 page."""
    web = next((getattr(c, "web", None) for c in parts if getattr(c, "web", None)), None)
    if web is None:
        return None
    def page(request: Request[Any, Any, Any]) -> Any:
        response = error_page(web, request, 404, "not_found")
        response.headers.update(header_dict())
        return response

    return page


def create_app(settings: Settings, components: list[Any] | None = None) -> Litestar:
    parts = components if components is not None else build_components(settings)
    names = [c.name for c in parts]
    metrics = Metrics()
    for component in parts:
        if hasattr(component, "attach_metrics"):
            component.attach_metrics(metrics)

    @get("/health/live", summary="Liveness", tags=["operations"], responses=json_body(Liveness))
    async def live() -> Response[bytes]:
        return Response(content=b'{"status":"ok"}', media_type="application/json")

    ops = OpsAuth(ops_token(settings))  # F5: operator endpoints need the operator token

    @get("/health/ready", summary="Readiness: stores, outbox lag, log (operator token)",
         tags=["operations"], responses=json_body(Readiness) | problems(401, 503))
    async def ready(request: Request[Any, Any, Any]) -> Response[bytes]:
        ops.check(request)
        checks: dict[str, Any] = {}
        for component in parts:
            if hasattr(component, "health"):
                checks.update(await component.health())
        failing = {k: v for k, v in checks.items()
                   if isinstance(v, str) and v.startswith("error")}
        if failing:
            raise ProblemError("store-unavailable", "Not ready: " + "; ".join(
                f"{k} {v}" for k, v in failing.items()), checks=checks, components=names)
        body = msgspec.json.encode({"status": "ok", "components": names, "checks": checks})
        return Response(content=body, media_type="application/json")

    @get("/metrics", summary="Prometheus metrics", tags=["operations"],
         include_in_schema=False)
    async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
        ops.check(request)
        return Response(content=await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def start() -> None:
        for component in parts:
            await component.start()

    async def stop() -> None:
        for component in reversed(parts):
            await component.stop()

    handlers = exception_handlers(_html_not_found(parts))
    app = Litestar(
        route_handlers=[*(c.router for c in parts), live, ready, metrics_endpoint],
        on_startup=[start],
        on_shutdown=[stop],
        exception_handlers=handlers,  # type: ignore[arg-type]  # problems.py types it too narrowly
        middleware=[_request_context(metrics)],
        openapi_config=OpenAPIConfig(
            title="Einmal", version=__version__, path="/schema",
            # Litestar answers unknown /schema/* paths with an HTML page (F6): problem+json.
            openapi_router=Router("/schema", route_handlers=[], include_in_schema=False,
                                  after_request=schema_not_found_as_problem)),
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
        # the cockpit's web view renders HTML (Jinja2); other components have no templates
        template_config=next((c.template_config for c in parts
                              if getattr(c, "template_config", None) is not None), None),
        debug=False,
    )
    document_problems(app)
    return app
