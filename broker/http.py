"""Broker HTTP controllers: parse, call one service method, answer. No SQL, no httpx here."""

import hashlib
import re
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from broker.service import BrokerService, ConsentIn, ProofRequestIn
from einmal.citizen import Citizen, CitizenAuth
from einmal.problems import ProblemError
from einmal.tokens import TokenVerifier, bearer_token

__all__ = ["create_broker_router", "decode_body"]

_json = msgspec.json.Encoder()
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def decode_body(raw: bytes, type_: type[Any]) -> Any:
    """Strict JSON decoding: unknown fields and wrong types are clear 422 problems."""
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


@post("/v1/token", summary="Exchange a signed client assertion for an access token (RFC 7523)",
      tags=["online services"], status_code=200)
async def token(request: Request[Any, Any, Any], broker: NamedDependency[BrokerService]) -> Response[bytes]:
    if request.headers.get("content-type", "").split(";")[0].strip() != \
            "application/x-www-form-urlencoded":
        raise ProblemError("invalid-request", "Send the token request form-encoded.",
                           status=400, error="invalid_request")
    form = await request.form()
    fields = {key: str(value) for key, value in form.items()}
    return _json_response(await broker.issue_access_token(fields))


@post("/v1/proof-requests", summary="Fetch a proof once-only", tags=["online services"],
      status_code=200)
async def proof_request(request: Request[Any, Any, Any], broker: NamedDependency[BrokerService],
                        service_tokens: NamedDependency[TokenVerifier]) -> Response[bytes]:
    claims = service_tokens.verify(bearer_token(request))
    raw = await request.body()
    body = decode_body(raw, ProofRequestIn)
    correlation = request.headers.get("x-correlation-id")
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ProblemError("invalid-request", "Idempotency-Key: 1-255 printable ASCII characters.")
    return _json_response(await broker.request_proof(
        claims["sub"], body, correlation, idempotency_key=key,
        request_hash=hashlib.sha256(raw).hexdigest()))


@post("/v1/consents", summary="Grant a consent", tags=["citizens"])
async def grant_consent(request: Request[Any, Any, Any], broker: NamedDependency[BrokerService],
                        citizen: NamedDependency[Citizen]) -> Response[bytes]:
    body = decode_body(await request.body(), ConsentIn)
    return _json_response(await broker.grant_consent(citizen.idnr, body), status=201)


@get("/v1/consents", summary="List my consents", tags=["citizens"])
async def list_consents(broker: NamedDependency[BrokerService], citizen: NamedDependency[Citizen]) -> Response[bytes]:
    return _json_response({"items": await broker.list_consents(citizen.idnr)})


@delete("/v1/consents/{consent_id:str}", summary="Revoke a consent", tags=["citizens"],
        status_code=200)
async def revoke_consent(consent_id: FromPath[str], broker: NamedDependency[BrokerService],
                         citizen: NamedDependency[Citizen]) -> Response[bytes]:
    return _json_response(await broker.revoke_consent(citizen.idnr, consent_id))


def create_broker_router(*, broker: BrokerService, service_tokens: TokenVerifier,
                         citizens: CitizenAuth, jwks: dict[str, Any]) -> Router:
    jwks_body = _json.encode(jwks)

    @get("/.well-known/jwks.json", summary="The broker's public signing keys",
         tags=["online services"], status_code=200)
    async def jwks_handler() -> Response[bytes]:
        return Response(content=jwks_body, media_type="application/json",
                        headers={"cache-control": "public, max-age=300"})

    return Router(
        path="/",
        route_handlers=[token, proof_request, grant_consent, list_consents, revoke_consent,
                        jwks_handler],
        dependencies={
            "broker": Provide(lambda: broker, use_cache=True, sync_to_thread=False),
            "service_tokens": Provide(lambda: service_tokens, use_cache=True,
                                      sync_to_thread=False),
            "citizen": Provide(citizens.dependency(), sync_to_thread=False),
        },
    )
