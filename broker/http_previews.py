"""HTTP for the preview flow (broker/previews.py): the service polls and collects, the citizen
looks and decides. Registered by ``broker/http.py: create_broker_router``."""

import re
from typing import Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from broker.http_common import BrokerLimits, JsonAnswer, decode_body, json_response, proof_answer
from broker.schemas import PreviewDetail, PreviewList, PreviewRequired, ProofAnswer
from broker.service import BrokerService
from einmal.citizen import Citizen
from einmal.openapi import inline_schema, json_body, problems, with_request_body
from einmal.problems import ProblemError
from einmal.tokens import TokenVerifier, bearer_token

__all__ = ["PREVIEW_HANDLERS"]

_REQUEST_ID = re.compile(r"[0-9a-f-]{36}")


class DecisionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    decision: Literal["accept", "refuse"]


def _request_id(value: str, what: str) -> str:
    if not _REQUEST_ID.fullmatch(value):
        raise ProblemError("not-found", f"No such {what}.")
    return value


@get("/v1/proof-requests/{request_id:str}", summary="Status of a proof request held for the "
     "citizen's preview; the released proof, once", tags=["online services"],
     description="202 while the citizen has not decided (the body of the 202 from POST "
                 "/v1/proof-requests); 200 with the signed proof once it was released.",
     responses=json_body(ProofAnswer) | json_body(PreviewRequired, 202)
     | problems(401, 403, 404, 410, 429, 503))
async def proof_request_status(request_id: FromPath[str], request: Request[Any, Any, Any],
                               broker: NamedDependency[BrokerService],
                               service_tokens: NamedDependency[TokenVerifier],
                               limits: NamedDependency[BrokerLimits]) -> JsonAnswer:
    claims = service_tokens.verify(bearer_token(request))
    await limits.service.take(claims["sub"])
    return proof_answer(await broker.previews.status(
        claims["sub"], _request_id(request_id, "proof request")))


@get("/v1/me/previews", summary="My proofs waiting for my release (preview)", tags=["citizens"],
     responses=json_body(PreviewList) | problems(401, 422, 429, 503))
async def list_previews(request: Request[Any, Any, Any], broker: NamedDependency[BrokerService],
                        citizen: NamedDependency[Citizen]) -> Response[bytes]:
    status = request.query_params.get("status")
    return json_response({"items": await broker.previews.list_for(citizen.idnr, status)})


@get("/v1/me/previews/{request_id:str}", summary="One preview, with the data the service "
     "would get", tags=["citizens"],
     responses=json_body(PreviewDetail) | problems(401, 404, 429, 503))
async def show_preview(request_id: FromPath[str], broker: NamedDependency[BrokerService],
                       citizen: NamedDependency[Citizen]) -> Response[bytes]:
    return json_response(await broker.previews.show(citizen.idnr,
                                                     _request_id(request_id, "preview")))


@post("/v1/me/previews/{request_id:str}", summary="Release (accept) or refuse a preview",
      tags=["citizens"], status_code=200,
      responses=json_body(PreviewDetail) | problems(400, 401, 404, 409, 410, 413, 422, 429, 503),
      operation_class=with_request_body(inline_schema(DecisionIn)))
async def decide_preview(request_id: FromPath[str], request: Request[Any, Any, Any],
                         broker: NamedDependency[BrokerService],
                         citizen: NamedDependency[Citizen]) -> Response[bytes]:
    body = decode_body(await request.body(), DecisionIn)
    return json_response(await broker.previews.decide(
        citizen.idnr, _request_id(request_id, "preview"), body.decision))


PREVIEW_HANDLERS = [proof_request_status, list_previews, show_preview, decide_preview]
