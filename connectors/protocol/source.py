"""The source interface after XDatenschutzcockpit, mounted by the protocol next to a register
(wire format and the cockpit's client: ``einmal_client.sources``; docs/api.md):

* ``POST <path>/protokolldaten``  anfrageListeProtokolldaten -> antwortListeProtokolldaten
* ``POST <path>/inhaltsdaten``    anfrageInhaltsdaten -> antwortInhaltsdaten
* ``GET  <path>/status``          antwortStatus (plain: it says nothing about a citizen)

Every request, in this order (nothing is parsed before the token is checked):

1. a bearer token: an EdDSA JWT of the cockpit (its key: ``<keys>/cockpit-sources.public.json``),
   issuer the cockpit, audience this source's id, at most 60 s between ``iat`` and ``exp``;
2. ``req_sha256`` in the token is the hash of this request's body (a token is for one request);
3. its ``jti`` was not seen before (kept until the token expires, in the protocol's database);
4. then the body: the IdNr and the session's public key (X25519 JWK).

Refusals are problem+json (401 ``unauthenticated``, 422 ``invalid-request``, 404
``not-found`` - also for an entry about someone else -, 503 ``store-unavailable``). An answer is
an envelope around a JWE (ECDH-ES, A256GCM) to the session key: nobody else can read it.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, get, post

from connectors.protocol.protocol import ProtocolSealError, RegisterProtocol
from einmal.problems import ProblemError
from einmal.store import StoreError
from einmal.tokens import bearer_token
from einmal_client.sources import (
    CONTENT_ANSWER,
    LIST_ANSWER,
    MAX_TOKEN_TTL_S,
    VERSION,
    ContentAnswer,
    ContentRequest,
    Envelope,
    ListAnswer,
    ListRequest,
    StatusAnswer,
    body_hash,
    public_session_key,
    seal_for_session,
)

__all__ = ["Source", "source_handlers"]

_MAX_BODY = 16 * 1024
_LEEWAY_S = 5
_encode = msgspec.json.Encoder().encode
R = TypeVar("R", ListRequest, ContentRequest)


@dataclass(frozen=True, slots=True)
class Source:
    """A source as the interface names it: its id (the tokens' audience) and its name."""

    id: str
    name: str


def _unauthenticated(detail: str) -> ProblemError:
    return ProblemError("unauthenticated", detail,
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def _authorized(protocol: RegisterProtocol, request: Request[Any, Any, Any],
                      resolve: Callable[[Mapping[str, Any]], Source | None],
                      ) -> tuple[Source, bytes]:
    """The source asked and the request body, once the token is good (module docstring)."""
    source = resolve(request.path_params)
    if source is None:
        raise ProblemError("not-found", "No source at this address.")
    unverified_token = bearer_token(request)
    verifier = protocol.verifier(source.id)
    if verifier is None:
        raise _unauthenticated("This source knows no cockpit key: it answers nobody.")
    now = protocol.clock().timestamp()
    claims = verifier.verify(unverified_token, now=now)
    jti = claims.get("jti")
    if (not isinstance(jti, str) or not 0 < len(jti) <= 128
            or claims["exp"] - claims["iat"] > MAX_TOKEN_TTL_S
            or claims["iat"] > now + _LEEWAY_S):
        raise _unauthenticated("The token must live at most 60 s and carry a jti.")
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise ProblemError("payload-too-large", f"At most {_MAX_BODY} bytes.")
    if claims.get("req_sha256") != body_hash(body):
        raise _unauthenticated("The token was made for another request.")
    try:
        first_use = await protocol.store.use_token_id(
            f"{source.id}|{jti}", expires_at=datetime.fromtimestamp(claims["exp"] + _LEEWAY_S, UTC))
    except StoreError as exc:
        raise ProblemError("store-unavailable", "The protocol cannot be read.") from exc
    if not first_use:
        raise _unauthenticated("The token was used before.")
    return source, body


def _parse(body: bytes, kind: type[R]) -> R:
    try:
        asked = msgspec.json.decode(body, type=kind)
        public_session_key(asked.session_key)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        msg = f"Not a valid {kind.__name__} ({exc})."
        raise ProblemError("invalid-request", msg) from exc
    return asked


def _sealed(message: str, asked: ListRequest | ContentRequest, source: Source,
            plain: bytes) -> Response[bytes]:
    envelope = Envelope(nachrichtentyp=message, version=VERSION,
                        correlation_id=asked.correlation_id, source=source.id,
                        payload=seal_for_session(asked.session_key, plain))
    return Response(content=_encode(envelope), media_type="application/json",
                    headers={"cache-control": "no-store"})


def source_handlers(protocol: RegisterProtocol, path: str,
                    resolve: Callable[[Mapping[str, Any]], Source | None]) -> list[Any]:
    """The three endpoints under ``path`` (e.g. ``/standesamt/{ags:str}/dsc``); ``resolve``
    maps the path parameters to the source, or None (404)."""

    @post(f"{path}/protokolldaten", include_in_schema=False, status_code=200)
    async def list_entries(request: Request[Any, Any, Any]) -> Response[bytes]:
        source, body = await _authorized(protocol, request, resolve)
        asked = _parse(body, ListRequest)
        try:
            entries = await protocol.entries(source.id, asked.idnr)
        except (StoreError, ProtocolSealError) as exc:
            raise ProblemError("store-unavailable", "The protocol cannot be read.") from exc
        answer = ListAnswer(correlation_id=asked.correlation_id, source=source.id,
                            idnr=asked.idnr, entries=tuple(entries))
        return _sealed(LIST_ANSWER, asked, source, _encode(answer))

    @post(f"{path}/inhaltsdaten", include_in_schema=False, status_code=200)
    async def content(request: Request[Any, Any, Any]) -> Response[bytes]:
        source, body = await _authorized(protocol, request, resolve)
        asked = _parse(body, ContentRequest)
        try:
            groups = await protocol.content(source.id, asked.idnr, asked.entry_id)
        except (StoreError, ProtocolSealError) as exc:
            raise ProblemError("store-unavailable", "The protocol cannot be read.") from exc
        if groups is None:
            raise ProblemError("not-found", "No such entry about this citizen.")
        answer = ContentAnswer(correlation_id=asked.correlation_id, source=source.id,
                               idnr=asked.idnr, entry_id=asked.entry_id, groups=groups)
        return _sealed(CONTENT_ANSWER, asked, source, _encode(answer))

    @get(f"{path}/status", include_in_schema=False)
    async def status(request: Request[Any, Any, Any]) -> Response[bytes]:
        source, _ = await _authorized(protocol, request, resolve)
        answer = StatusAnswer(source=source.id, name=source.name)
        return Response(content=_encode(answer), media_type="application/json",
                        headers={"cache-control": "no-store"})

    return [list_entries, content, status]
