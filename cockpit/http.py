"""Cockpit HTTP controllers (the API; the web view is cockpit/web): they parse, call the
service or the log, and map the cockpit's errors to problem details - in one table,
``PROBLEMS``."""

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import jwt
import msgspec
import structlog
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream
from litestar.types import ExceptionHandlersMap

from cockpit.errors import (
    CockpitError,
    InvalidRequestError,
    NotFoundError,
    OutOfRangeError,
    TreeIntegrityError,
)
from cockpit.log import TransferLog
from cockpit.log.proofs import ConsistencyProof, EntryPosition, InclusionProof
from cockpit.relay import (
    ContentQuery,
    Relay,
    RelayedContent,
    SourceList,
    SourceQuery,
    SourceQueryAnswer,
)
from cockpit.service import VISIBLE_FOR, CockpitService, IngestResult, TransferPage
from einmal.citizen import Citizen, CitizenAuth
from einmal.domain.transfer import TransferBatch
from einmal.keys import load_public_keys, retirement_deadlines
from einmal.openapi import inline_schema, json_body, problems, text_body, with_request_body
from einmal.problems import ProblemError, problem_response
from einmal.store import StoreError
from einmal.tokens import TokenVerifier, bearer_token
from einmal_client.receipt import RECEIPT_SUFFIX

__all__ = ["AUDIT_AUDIENCE", "EXCEPTION_HANDLERS", "PROBLEMS", "AuditorAuth", "ChannelAuth",
           "WitnessList", "WitnessView", "create_cockpit_router", "problem_for"]

AUDIT_AUDIENCE = "einmal-audit"
#: A backlog is delivered in batches of up to 200 records (~1 KB each) after an outage: the
#: channel needs more than the 64 KiB the public endpoints accept (found by bench/faults.py).
INGEST_MAX_BODY_BYTES = 8 * 1024 * 1024
#: Litestar appends "; charset=utf-8" to text/* itself (it was doubled when named here).
_TEXT = "text/plain"
_NDJSON = "application/x-ndjson"

_json = msgspec.json.Encoder()
log = structlog.get_logger()
#: transfer ids as the broker makes them (UUIDs); anything else is no transfer of anyone's
_TRANSFER_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class WitnessView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    #: C2SP signed-note verifier key, signature type 0x04 (cosignature/v1)
    vkey: str
    #: the witness takes add-checkpoint requests at ``<url>/add-checkpoint``
    url: str


class WitnessList(msgspec.Struct, frozen=True, kw_only=True):
    #: cosignatures a checkpoint needs before it is published
    quorum: int
    witnesses: list[WitnessView]
_batch = msgspec.json.Decoder(TransferBatch)

_STORE_DETAIL = "The cockpit store is unavailable."
#: The cockpit's errors as problems: error class -> (problem type, HTTP status; None: the
#: type's own). The most specific class of an error's MRO in the table wins.
PROBLEMS: dict[type[Exception], tuple[str, int | None]] = {
    OutOfRangeError: ("invalid-request", 400),
    InvalidRequestError: ("invalid-request", None),  # 422
    NotFoundError: ("not-found", None),
    TreeIntegrityError: ("internal", None),
    CockpitError: ("internal", None),  # none is raised bare; a new kind without a row
    StoreError: ("store-unavailable", None),  # 503, Retry-After (einmal.problems.RETRY_AFTER)
}


def problem_for(exc: Exception) -> ProblemError:
    """The problem an error of the cockpit (or of its store) is answered with."""
    slug, status = next(PROBLEMS[cls] for cls in type(exc).__mro__ if cls in PROBLEMS)
    if slug == "store-unavailable":  # the driver's message is for the log, not the client
        return ProblemError(slug, _STORE_DETAIL)
    return ProblemError(slug, str(exc), status=status)


def _handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    problem = problem_for(exc)
    if problem.slug == "store-unavailable":
        log.error("store.unavailable", error=str(exc))
    elif problem.slug == "internal":
        log.error("cockpit.tree_damaged", error=str(exc))
    return problem_response(problem, request)


#: The router's handlers: every class of ``PROBLEMS`` (Litestar picks the nearest in the MRO).
EXCEPTION_HANDLERS: ExceptionHandlersMap = {CockpitError: _handle, StoreError: _handle}


class ChannelAuth:
    """Authenticates the broker -> cockpit channel: a short-lived JWT signed with the broker's
    channel key, whose public part the cockpit reads (lazily) from a JWK set file.

    Key rotation (``einmal keys rotate broker-channel``): the file then lists the new key and
    the retired ones with ``retired_at``; a retired key is accepted until its last token has
    expired (einmal/keys.py: ROLLOVER_S + ``lifetime_s``). The file is read again when a token
    does not verify and the file changed, so a cockpit in its own process follows a rotation
    without a restart."""

    def __init__(self, *, keys_file: Path, issuer: str, audience: str,
                 lifetime_s: float = 60) -> None:
        self._keys_file = keys_file
        self._issuer = issuer
        self._audience = audience
        self._lifetime_s = lifetime_s
        self._verifier: TokenVerifier | None = None
        self._loaded: int | None = None

    def _load(self) -> TokenVerifier:
        if not self._keys_file.exists():
            raise ProblemError("unauthenticated", "No broker channel key is configured.")
        self._loaded = self._keys_file.stat().st_mtime_ns
        self._verifier = TokenVerifier(
            keys=load_public_keys(self._keys_file), issuer=self._issuer,
            audience=self._audience,
            not_after=retirement_deadlines(self._keys_file, lifetime_s=self._lifetime_s))
        return self._verifier

    def check(self, request: Request[Any, Any, Any]) -> None:
        token = bearer_token(request)
        verifier = self._verifier or self._load()
        try:
            verifier.verify(token)
        except ProblemError:
            if self._keys_file.exists() and self._keys_file.stat().st_mtime_ns != self._loaded:
                self._load().verify(token)
                return
            raise


class AuditorAuth:
    """Auditors sign a short-lived JWT themselves (``iss`` = ``sub`` = their key id,
    ``aud`` = ``einmal-audit``, at most 5 minutes); the cockpit knows their public keys."""

    def __init__(self, *, keys_file: Path) -> None:
        self._keys_file = keys_file

    def check(self, request: Request[Any, Any, Any]) -> str:
        unverified = bearer_token(request)
        keys = load_public_keys(self._keys_file) if self._keys_file.exists() else {}
        try:
            kid = str(jwt.get_unverified_header(unverified).get("kid"))
            key = keys.get(kid)
            if key is None:
                raise jwt.InvalidTokenError("unknown auditor key")
            claims = jwt.decode(unverified, key, algorithms=["EdDSA"], audience=AUDIT_AUDIENCE,
                                issuer=kid, options={"require": ["exp", "iat", "iss", "sub"]})
            if claims["sub"] != kid or claims["exp"] - time.time() > 300:
                raise jwt.InvalidTokenError("bad claims")
        except jwt.InvalidTokenError as exc:
            raise ProblemError("unauthenticated", "An auditor token is required.",
                               headers={"WWW-Authenticate": "Bearer"}) from exc
        return kid


@get("/v1/log/checkpoint", summary="The latest signed checkpoint (C2SP tlog-checkpoint)",
     tags=["transfer log"], media_type=_TEXT, responses=problems(404))
async def checkpoint(transfer_log: NamedDependency[TransferLog]) -> Response[str]:
    _, note = await transfer_log.checkpoint()
    return Response(content=note, media_type=_TEXT, headers={"cache-control": "no-cache"})


@get("/v1/log/verifier-key", summary="The log's verifier key (C2SP signed-note)",
     tags=["transfer log"], media_type=_TEXT)
async def verifier_key(transfer_log: NamedDependency[TransferLog]) -> Response[str]:
    return Response(content=transfer_log.verifier_key + "\n", media_type=_TEXT)


@get("/v1/log/verifier-keys", summary="All of the log's verifier keys, current first",
     tags=["transfer log"], media_type=_TEXT)
async def verifier_keys(transfer_log: NamedDependency[TransferLog]) -> Response[str]:
    return Response(content="".join(k + "\n" for k in transfer_log.verifier_keys),
                    media_type=_TEXT)


@get("/v1/log/proof/inclusion", summary="Inclusion proof (RFC 9162 §2.1.3.1)",
     tags=["transfer log"], responses=json_body(InclusionProof) | problems(400, 404))
async def inclusion_proof(transfer_log: NamedDependency[TransferLog], index: FromQuery[int],
                          tree_size: FromQuery[int]) -> Response[bytes]:
    return Response(content=_json.encode(await transfer_log.inclusion(index, tree_size)),
                    media_type="application/json")


@get("/v1/log/entries/{transfer_id:str}", summary="A transfer's place in the log",
     tags=["transfer log"], responses=json_body(EntryPosition) | problems(404))
async def log_entry(transfer_log: NamedDependency[TransferLog],
                    transfer_id: FromPath[str]) -> Response[bytes]:
    return Response(content=_json.encode(await transfer_log.entry_of(transfer_id)),
                    media_type="application/json", headers={"cache-control": "no-store"})


@get("/v1/log/proof/consistency", summary="Consistency proof (RFC 9162 §2.1.4.1)",
     tags=["transfer log"], responses=json_body(ConsistencyProof) | problems(400, 404))
async def consistency_proof(transfer_log: NamedDependency[TransferLog],
                            first: Annotated[int, QueryParameter(name="from")],
                            second: Annotated[int, QueryParameter(name="to")]) -> Response[bytes]:
    return Response(content=_json.encode(await transfer_log.consistency(first, second)),
                    media_type="application/json")


@get("/v1/log/witnesses", summary="The log's witnesses and how many must cosign a checkpoint",
     tags=["transfer log"])
async def witnesses(transfer_log: NamedDependency[TransferLog]) -> WitnessList:
    policy = transfer_log.witnesses
    return WitnessList(quorum=policy.quorum, witnesses=[
        WitnessView(name=w.name, vkey=w.vkey, url=w.url) for w in policy.witnesses])


@get("/v1/audit/export", summary="Export the log for offline verification (NDJSON)",
     tags=["auditors"], media_type=_NDJSON,
     responses=text_body(_NDJSON, description="One JSON object per line: the log's entries "
                         "in index order (einmal_client.audit reads and verifies them)")
     | problems(400, 401))
async def audit_export(request: Request[Any, Any, Any],
                       transfer_log: NamedDependency[TransferLog],
                       auditors: NamedDependency[AuditorAuth],
                       since: FromQuery[datetime | None] = None,
                       until: FromQuery[datetime | None] = None,
                       service: FromQuery[str | None] = None,
                       register: FromQuery[str | None] = None,
                       tree_size: FromQuery[int | None] = None,
                       after: FromQuery[int] = -1) -> Stream:
    auditor = auditors.check(request)
    size, after = await transfer_log.export_bounds(tree_size, after)
    log.info("audit.export", auditor=auditor, tree_size=size, filtered=bool(service or register
                                                                            or since or until))
    lines = transfer_log.export(tree_size=size, after=after, since=since, until=until,
                                service=service, register=register)
    return Stream(lines, media_type=_NDJSON,
                  headers={"x-einmal-tree-size": str(size), "cache-control": "no-store"})


@post("/v1/transfer-records", summary="Accept transfer records (broker channel only)",
      tags=["broker channel"], status_code=200,
      request_max_body_size=INGEST_MAX_BODY_BYTES,
      responses=json_body(IngestResult) | problems(401, 413, 422),
      operation_class=with_request_body(inline_schema(TransferBatch)))
async def ingest(request: Request[Any, Any, Any], cockpit: NamedDependency[CockpitService],
                 channel: NamedDependency[ChannelAuth]) -> Response[bytes]:
    channel.check(request)
    try:
        batch = _batch.decode(await request.body())
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProblemError("invalid-request", f"Invalid transfer batch: {exc}.") from exc
    result = await cockpit.ingest(batch.records)
    return Response(content=_json.encode(result), media_type="application/json")


@get("/v1/me/transfers", summary="Transfers about me and my children", tags=["citizens"],
     responses=json_body(TransferPage) | problems(400, 401, 422, 429))
async def my_transfers(cockpit: NamedDependency[CockpitService],
                       citizen: NamedDependency[Citizen], limit: FromQuery[int] = 50,
                       cursor: FromQuery[str | None] = None) -> Response[bytes]:
    page = await cockpit.transfers_of(citizen.idnr, limit=limit, cursor=cursor)
    return Response(content=_json.encode(page), media_type="application/json",
                    headers={"cache-control": "no-store"})


@get("/v1/me/transfers/{transfer_id:str}/receipt",
     summary="My receipt of a transfer: entry, inclusion proof, cosigned checkpoint "
             "(C2SP tlog-proof)",
     tags=["citizens"], media_type=_TEXT, responses=problems(401, 404, 429))
async def my_receipt(cockpit: NamedDependency[CockpitService],
                     citizen: NamedDependency[Citizen], transfer_log: NamedDependency[TransferLog],
                     transfer_id: FromPath[str]) -> Response[str]:
    if not _TRANSFER_ID.fullmatch(transfer_id):
        msg = "No such transfer among yours."
        raise NotFoundError(msg)
    receipt = await transfer_log.receipt(cockpit.pseudonym(citizen.idnr), transfer_id,
                                         visible_for=VISIBLE_FOR)
    filename = f"einmal-receipt-{transfer_id}{RECEIPT_SUFFIX}"
    return Response(content=receipt, media_type=_TEXT, headers={
        "cache-control": "no-store",
        "content-disposition": f'attachment; filename="{filename}"'})


# -- the citizen API in the source model: asked live, relayed unopened (cockpit/relay.py) ---

_source_query = msgspec.json.Decoder(SourceQuery)
_content_query = msgspec.json.Decoder(ContentQuery)
#: a query names a session key and at most 500 source ids
_QUERY_MAX_BODY = 64 * 1024


def _with_sources(relay: Relay | None) -> Relay:
    if relay is None:
        raise ProblemError("not-found", "This cockpit asks no sources.")
    return relay


def _decode_query(body: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    try:
        return decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProblemError("invalid-request", f"Invalid query: {exc}.") from exc


@get("/v1/me/sources", summary="The sources the cockpit can ask about me (source model)",
     tags=["citizens"], responses=json_body(SourceList) | problems(401, 429))
async def my_sources(relay: NamedDependency[Relay],
                     citizen: NamedDependency[Citizen]) -> Response[bytes]:
    del citizen  # only a logged-in citizen sees the list
    return Response(content=_json.encode(relay.sources()), media_type="application/json",
                    headers={"cache-control": "no-store"})


@post("/v1/me/source-queries",
      summary="Ask the sources about me; their answers relayed, encrypted to my key",
      tags=["citizens"], status_code=200, request_max_body_size=_QUERY_MAX_BODY,
      responses=json_body(SourceQueryAnswer) | problems(401, 413, 422, 429),
      operation_class=with_request_body(inline_schema(SourceQuery)))
async def my_source_query(request: Request[Any, Any, Any], relay: NamedDependency[Relay],
                          citizen: NamedDependency[Citizen]) -> Response[bytes]:
    query = _decode_query(await request.body(), _source_query)
    answer = await relay.query(citizen.idnr, query)
    return Response(content=_json.encode(answer), media_type="application/json",
                    headers={"cache-control": "no-store"})


@post("/v1/me/source-queries/content",
      summary="The content data of one entry from its source, encrypted to my key",
      tags=["citizens"], status_code=200, request_max_body_size=_QUERY_MAX_BODY,
      responses=json_body(RelayedContent) | problems(401, 404, 413, 422, 429, 502),
      operation_class=with_request_body(inline_schema(ContentQuery)))
async def my_source_content(request: Request[Any, Any, Any], relay: NamedDependency[Relay],
                            citizen: NamedDependency[Citizen]) -> Response[bytes]:
    query = _decode_query(await request.body(), _content_query)
    answer = await relay.content(citizen.idnr, query)
    return Response(content=_json.encode(answer), media_type="application/json",
                    headers={"cache-control": "no-store"})


def create_cockpit_router(*, cockpit: CockpitService, citizens: CitizenAuth,
                          channel: ChannelAuth, transfer_log: TransferLog,
                          auditors: AuditorAuth, relay: Relay | None = None) -> Router:
    """The cockpit's API. ``relay``: the citizen API's source queries (None: a cockpit with no
    sources, whose source-query routes answer 404)."""
    return Router(path="/", route_handlers=[
        ingest, my_transfers, my_receipt, my_sources, my_source_query, my_source_content,
        checkpoint, verifier_key, inclusion_proof,
        consistency_proof, log_entry, verifier_keys, witnesses, audit_export],
        exception_handlers=EXCEPTION_HANDLERS, dependencies={
        "transfer_log": Provide(lambda: transfer_log, use_cache=True, sync_to_thread=False),
        "auditors": Provide(lambda: auditors, use_cache=True, sync_to_thread=False),
        "cockpit": Provide(lambda: cockpit, use_cache=True, sync_to_thread=False),
        "relay": Provide(lambda: _with_sources(relay), use_cache=True, sync_to_thread=False),
        "channel": Provide(lambda: channel, use_cache=True, sync_to_thread=False),
        "citizen": Provide(citizens.dependency()),
    })
