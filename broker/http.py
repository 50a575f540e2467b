"""Broker HTTP controllers: parse, call one service method, answer. No SQL, no httpx here.

OpenAPI pattern for every route here (the published schema must be true; tests/fuzz checks it):
- ``responses=problems(401, 422, ...)`` (einmal/openapi.py) lists the error statuses the route
  sends; all are application/problem+json (any other error is covered by a ``default``).
- A route that decodes its body by hand (``decode_body``: strict JSON, duplicate members and
  depth refused) declares it with ``operation_class=with_request_body(inline_schema(YourIn))``
  instead of a typed ``data:`` parameter, so the parsing stays ours.
- Every success answer is declared with the type that describes its bytes:
  ``responses=json_body(ConsentOut, 201) | problems(...)`` (broker/schemas.py holds the
  Structs of the answers the handlers build as dicts).
- Non-JSON answers name their type on the decorator: ``media_type=...``.
"""

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from broker.http_common import (
    BrokerLimits,
    JsonAnswer,
    decode_body,
    json_response,
    proof_answer,
    store_unavailable,
)
from broker.http_previews import PREVIEW_HANDLERS
from broker.schemas import AccessToken, ConsentList, PreviewRequired, ProofAnswer
from broker.service import BrokerService, ConsentIn, ConsentOut, ProofRequestIn
from einmal.asgi import header_values, read_body
from einmal.citizen import Citizen, CitizenAuth
from einmal.domain.contract import PURPOSE_PATTERN
from einmal.openapi import Jwks, inline_schema, json_body, problems, with_request_body
from einmal.problems import ProblemError
from einmal.store import StoreError
from einmal.tokens import TokenVerifier, bearer_of

__all__ = ["BrokerLimits", "create_broker_router"]

_json = msgspec.json.Encoder()
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_PURPOSE = re.compile(PURPOSE_PATTERN)
_CONSENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_CORRELATION_ID = _IDEMPOTENCY_KEY
#: the request headers the proof request reads (einmal/asgi.py: header_values)
_PROOF_HEADERS = frozenset({b"authorization", b"content-length", b"x-correlation-id",
                            b"idempotency-key"})


@dataclass(frozen=True, slots=True)
class ProofPath:
    """The proof request's collaborators as ONE dependency: Litestar resolves two or more
    dependencies of a handler concurrently, in an anyio task group with a task each, on every
    request - measurable on the hot path (docs/benchmarks.md)."""

    broker: "BrokerService"
    service_tokens: "TokenVerifier"
    limits: "BrokerLimits"


_TOKEN_FORM = {
    "type": "object", "required": ["grant_type", "client_assertion_type", "client_assertion"],
    "properties": {
        "grant_type": {"enum": ["client_credentials"]},
        "client_assertion_type": {
            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]},
        "client_assertion": {"type": "string", "description": "EdDSA-signed JWT (RFC 7523)"}}}


@post("/v1/token", summary="Exchange a signed client assertion for an access token (RFC 7523)",
      tags=["online services"], status_code=200,
      responses=json_body(AccessToken) | problems(400, 401, 413, 429),
      operation_class=with_request_body(_TOKEN_FORM, "application/x-www-form-urlencoded"))
async def token(request: Request[Any, Any, Any], broker: NamedDependency[BrokerService],
                limits: NamedDependency[BrokerLimits]) -> Response[bytes]:
    await limits.token.take(request.client.host if request.client else "unknown")
    if request.headers.get("content-type", "").split(";")[0].strip() != \
            "application/x-www-form-urlencoded":
        raise ProblemError("invalid-request", "Send the token request form-encoded.",
                           status=400, error="invalid_request")
    form = await request.form()
    fields = {key: str(value) for key, value in form.items()}
    return json_response(await broker.issue_access_token(fields))


@post("/v1/proof-requests", summary="Fetch a proof once-only", tags=["online services"],
      status_code=200,
      responses=json_body(ProofAnswer) | json_body(PreviewRequired, 202)
      | problems(400, 401, 403, 404, 409, 413, 422, 429, 502, 503, 504),
      operation_class=with_request_body(inline_schema(ProofRequestIn)))
async def proof_request(request: Request[Any, Any, Any],
                        proof_path: NamedDependency[ProofPath]) -> JsonAnswer:
    broker, limits = proof_path.broker, proof_path.limits
    headers = header_values(request.scope["headers"], _PROOF_HEADERS)
    claims = proof_path.service_tokens.verify(bearer_of(headers.get(b"authorization", "")))
    await limits.service.take(claims["sub"])
    raw = await read_body(request, headers.get(b"content-length"))
    body = decode_body(raw, ProofRequestIn)
    # Bounded, printable identifiers only: these strings are written into the transfer record
    # and the citizen's log even when the request is refused.
    if not _PURPOSE.fullmatch(body.purpose):
        raise ProblemError("invalid-request", "purpose: a lower-case id of 3-64 letters, digits "
                           "and '-' (e.g. 'elterngeld-antrag').")
    if body.consent_id is not None and not _CONSENT_ID.fullmatch(body.consent_id):
        raise ProblemError("invalid-request", "consent_id: not a consent id.")
    correlation = headers.get(b"x-correlation-id")
    if correlation is not None and not _CORRELATION_ID.fullmatch(correlation):
        raise ProblemError("invalid-request",
                           "X-Correlation-Id: 1-255 printable ASCII characters.")
    key = headers.get(b"idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ProblemError("invalid-request", "Idempotency-Key: 1-255 printable ASCII characters.")
    return proof_answer(await broker.request_proof(
        claims["sub"], body, correlation, idempotency_key=key,
        request_hash=hashlib.sha256(raw).hexdigest()))


@post("/v1/consents", summary="Grant a consent", tags=["citizens"],
      responses=json_body(ConsentOut, 201) | problems(400, 401, 413, 422, 429),
      operation_class=with_request_body(inline_schema(ConsentIn)))
async def grant_consent(request: Request[Any, Any, Any], broker: NamedDependency[BrokerService],
                        citizen: NamedDependency[Citizen]) -> Response[bytes]:
    body = decode_body(await request.body(), ConsentIn)
    return json_response(await broker.grant_consent(citizen.idnr, body), status=201)


@get("/v1/consents", summary="List my consents", tags=["citizens"],
     responses=json_body(ConsentList) | problems(401, 429))
async def list_consents(broker: NamedDependency[BrokerService],
                        citizen: NamedDependency[Citizen]) -> Response[bytes]:
    return json_response({"items": await broker.list_consents(citizen.idnr)})


@delete("/v1/consents/{consent_id:str}", summary="Revoke a consent", tags=["citizens"],
        status_code=200, responses=json_body(ConsentOut) | problems(401, 404, 429))
async def revoke_consent(consent_id: FromPath[str], broker: NamedDependency[BrokerService],
                         citizen: NamedDependency[Citizen]) -> Response[bytes]:
    return json_response(await broker.revoke_consent(citizen.idnr, consent_id))


def create_broker_router(*, broker: BrokerService, service_tokens: TokenVerifier,
                         limits: BrokerLimits,
                         citizens: CitizenAuth, jwks: dict[str, Any]) -> Router:
    jwks_body = _json.encode(jwks)
    proof_path = ProofPath(broker=broker, service_tokens=service_tokens, limits=limits)

    @get("/.well-known/jwks.json", summary="The broker's public signing keys",
         tags=["online services"], status_code=200, responses=json_body(Jwks))
    async def jwks_handler() -> Response[bytes]:
        return Response(content=jwks_body, media_type="application/json",
                        headers={"cache-control": "public, max-age=300"})

    return Router(
        path="/",
        route_handlers=[token, proof_request, grant_consent, list_consents, revoke_consent,
                        jwks_handler, *PREVIEW_HANDLERS],
        exception_handlers={StoreError: store_unavailable},
        dependencies={
            "broker": Provide(lambda: broker, use_cache=True, sync_to_thread=False),
            "limits": Provide(lambda: limits, use_cache=True, sync_to_thread=False),
            "service_tokens": Provide(lambda: service_tokens, use_cache=True,
                                      sync_to_thread=False),
            "proof_path": Provide(lambda: proof_path, use_cache=True, sync_to_thread=False),
            "citizen": Provide(citizens.dependency()),
        },
    )
