"""Broker HTTP controllers: parse, call one service method, answer. No SQL, no httpx here.

OpenAPI pattern for every route here (the published schema must be true; tests/fuzz checks it):
- ``responses=problems(401, 422, ...)`` (einmal/openapi.py) lists the error statuses the route
  sends; all are application/problem+json (any other error is covered by a ``default``).
- A route that decodes its body by hand (``decode_body``: strict JSON, duplicate members and
  depth refused) declares it with ``operation_class=with_request_body(inline_schema(YourIn))``
  instead of a typed ``data:`` parameter, so the parsing stays ours.
- Non-JSON answers name their type on the decorator: ``media_type=...``.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from broker.http_previews import PREVIEW_HANDLERS, proof_answer
from broker.service import BrokerService, ConsentIn, ProofRequestIn
from einmal.citizen import Citizen, CitizenAuth
from einmal.openapi import inline_schema, problems, with_request_body
from einmal.problems import ProblemError
from einmal.ratelimit import RateLimiter
from einmal.tokens import TokenVerifier, bearer_token

__all__ = ["BrokerLimits", "create_broker_router", "decode_body"]

_json = msgspec.json.Encoder()
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
#: Deepest nesting a request body may have (ours are at most 3 deep).
MAX_JSON_DEPTH = 16
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")  # = policies' Purpose
_CONSENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_CORRELATION_ID = _IDEMPOTENCY_KEY


def _first_problem(value: Any) -> str | None:
    """Duplicate member names or nesting deeper than MAX_JSON_DEPTH in a document parsed with
    ``object_pairs_hook=list`` (objects as lists of pairs): one walk, no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if type(item) is _Pairs or type(item) is list:
            if level > MAX_JSON_DEPTH:
                return f"The body is nested deeper than {MAX_JSON_DEPTH} levels."
            if type(item) is _Pairs:
                names = [name for name, _ in item]
                if len(set(names)) != len(names):
                    seen: set[str] = set()
                    for name in names:
                        if name in seen:
                            return f"The body names the member {name[:64]!r} more than once."
                        seen.add(name)
                stack.extend((child, level + 1) for _, child in item)
            else:
                stack.extend((child, level + 1) for child in item)
    return None


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as the C decoder hands it over: its (name, value) pairs, in order."""

    __slots__ = ()


def _precheck(raw: bytes) -> None:
    """Refuse what a strict decoder would silently accept or choke on: duplicate member
    names (msgspec keeps the last one; another parser in the chain might keep the first)
    and deep nesting (a RecursionError would be a 500). Malformed JSON is left to msgspec."""
    try:
        parsed = json.loads(raw, object_pairs_hook=_Pairs)
    except RecursionError as exc:
        raise ProblemError("invalid-request", "The body is nested too deeply.") from exc
    except ValueError:  # not JSON / not UTF-8: msgspec says why, with a 400
        return
    problem = _first_problem(parsed)
    if problem is not None:
        raise ProblemError("invalid-request", problem)


@dataclass(frozen=True, slots=True)
class ProofPath:
    """The proof request's collaborators as ONE dependency: Litestar resolves two or more
    dependencies of a handler concurrently, in an anyio task group with a task each, on every
    request - measurable on the hot path (docs/benchmarks.md)."""

    broker: "BrokerService"
    service_tokens: "TokenVerifier"
    limits: "BrokerLimits"


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """Token buckets: per service on proof requests, per client address on the token endpoint."""

    service: RateLimiter
    token: RateLimiter


def decode_body(raw: bytes, type_: type[Any]) -> Any:
    """Strict JSON decoding: duplicate members, deep nesting, unknown fields and wrong types
    are clear 422 problems."""
    _precheck(raw)
    try:
        return msgspec.json.decode(raw, type=type_, strict=True)
    except msgspec.ValidationError as exc:
        raise ProblemError("invalid-request", f"Invalid request body: {exc}.") from exc
    except msgspec.DecodeError as exc:
        raise ProblemError("invalid-request", f"The body is not valid JSON: {exc}.",
                           status=400) from exc


def _json_response(content: Any, status: int = 200) -> Response[bytes]:
    return Response(content=_json.encode(content), status_code=status,
                    media_type="application/json",
                    headers={"cache-control": "no-store"})


_TOKEN_FORM = {
    "type": "object", "required": ["grant_type", "client_assertion_type", "client_assertion"],
    "properties": {
        "grant_type": {"enum": ["client_credentials"]},
        "client_assertion_type": {
            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]},
        "client_assertion": {"type": "string", "description": "EdDSA-signed JWT (RFC 7523)"}}}


@post("/v1/token", summary="Exchange a signed client assertion for an access token (RFC 7523)",
      tags=["online services"], status_code=200, responses=problems(400, 401, 413, 429),
      operation_class=with_request_body(_TOKEN_FORM, "application/x-www-form-urlencoded"))
async def token(request: Request[Any, Any, Any], broker: NamedDependency[BrokerService],
                limits: NamedDependency[BrokerLimits]) -> Response[bytes]:
    limits.token.check(request.client.host if request.client else "unknown")
    if request.headers.get("content-type", "").split(";")[0].strip() != \
            "application/x-www-form-urlencoded":
        raise ProblemError("invalid-request", "Send the token request form-encoded.",
                           status=400, error="invalid_request")
    form = await request.form()
    fields = {key: str(value) for key, value in form.items()}
    return _json_response(await broker.issue_access_token(fields))


@post("/v1/proof-requests", summary="Fetch a proof once-only", tags=["online services"],
      status_code=200,
      responses=problems(400, 401, 403, 404, 409, 413, 422, 429, 502, 503, 504),
      operation_class=with_request_body(inline_schema(ProofRequestIn)))
async def proof_request(request: Request[Any, Any, Any],
                        proof_path: NamedDependency[ProofPath]) -> Response[bytes]:
    broker, limits = proof_path.broker, proof_path.limits
    claims = proof_path.service_tokens.verify(bearer_token(request))
    limits.service.check(claims["sub"])
    raw = await request.body()
    body = decode_body(raw, ProofRequestIn)
    # Bounded, printable identifiers only: these strings are written into the transfer record
    # and the citizen's log even when the request is refused.
    if not _PURPOSE.fullmatch(body.purpose):
        raise ProblemError("invalid-request", "purpose: a lower-case id of 3-64 letters, digits "
                           "and '-' (e.g. 'elterngeld-antrag').")
    if body.consent_id is not None and not _CONSENT_ID.fullmatch(body.consent_id):
        raise ProblemError("invalid-request", "consent_id: not a consent id.")
    correlation = request.headers.get("x-correlation-id")
    if correlation is not None and not _CORRELATION_ID.fullmatch(correlation):
        raise ProblemError("invalid-request",
                           "X-Correlation-Id: 1-255 printable ASCII characters.")
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ProblemError("invalid-request", "Idempotency-Key: 1-255 printable ASCII characters.")
    return proof_answer(await broker.request_proof(
        claims["sub"], body, correlation, idempotency_key=key,
        request_hash=hashlib.sha256(raw).hexdigest()))


@post("/v1/consents", summary="Grant a consent", tags=["citizens"],
      responses=problems(400, 401, 413, 422, 429),
      operation_class=with_request_body(inline_schema(ConsentIn)))
async def grant_consent(request: Request[Any, Any, Any], broker: NamedDependency[BrokerService],
                        citizen: NamedDependency[Citizen]) -> Response[bytes]:
    body = decode_body(await request.body(), ConsentIn)
    return _json_response(await broker.grant_consent(citizen.idnr, body), status=201)


@get("/v1/consents", summary="List my consents", tags=["citizens"], responses=problems(401, 429))
async def list_consents(broker: NamedDependency[BrokerService], citizen: NamedDependency[Citizen]) -> Response[bytes]:
    return _json_response({"items": await broker.list_consents(citizen.idnr)})


@delete("/v1/consents/{consent_id:str}", summary="Revoke a consent", tags=["citizens"],
        status_code=200, responses=problems(401, 404, 429))
async def revoke_consent(consent_id: FromPath[str], broker: NamedDependency[BrokerService],
                         citizen: NamedDependency[Citizen]) -> Response[bytes]:
    return _json_response(await broker.revoke_consent(citizen.idnr, consent_id))


def create_broker_router(*, broker: BrokerService, service_tokens: TokenVerifier,
                         limits: BrokerLimits,
                         citizens: CitizenAuth, jwks: dict[str, Any]) -> Router:
    jwks_body = _json.encode(jwks)
    proof_path = ProofPath(broker=broker, service_tokens=service_tokens, limits=limits)

    @get("/.well-known/jwks.json", summary="The broker's public signing keys",
         tags=["online services"], status_code=200)
    async def jwks_handler() -> Response[bytes]:
        return Response(content=jwks_body, media_type="application/json",
                        headers={"cache-control": "public, max-age=300"})

    return Router(
        path="/",
        route_handlers=[token, proof_request, grant_consent, list_consents, revoke_consent,
                        jwks_handler, *PREVIEW_HANDLERS],
        dependencies={
            "broker": Provide(lambda: broker, use_cache=True, sync_to_thread=False),
            "limits": Provide(lambda: limits, use_cache=True, sync_to_thread=False),
            "service_tokens": Provide(lambda: service_tokens, use_cache=True,
                                      sync_to_thread=False),
            "proof_path": Provide(lambda: proof_path, use_cache=True, sync_to_thread=False),
            "citizen": Provide(citizens.dependency(), sync_to_thread=False),
        },
    )
