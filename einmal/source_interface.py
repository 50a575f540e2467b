"""The source interface after XDatenschutzcockpit, served by any body that keeps a protocol:
a register (``connectors.protocol``) or the broker (``broker.source``). Wire format and the
cockpit's client: ``einmal_client.sources``; docs/api.md "Source interface".

* ``POST <path>/protokolldaten``  anfrageListeProtokolldaten -> antwortListeProtokolldaten
* ``POST <path>/inhaltsdaten``    anfrageInhaltsdaten -> antwortInhaltsdaten
* ``GET  <path>/status``          antwortStatus (plain: it says nothing about a citizen)

A body serves it through a ``SourceBackend``: its protocol (entries, content), the cockpit's
key (``CockpitKeys``), a replay store for token ids, its clock and its answer signing key.

Every request, in this order (nothing is parsed before the token is checked):

1. a bearer token: an EdDSA JWT of the cockpit (its key: ``<keys>/cockpit-sources.public.json``),
   issuer the cockpit, audience this source's id, at most 60 s between ``iat`` and ``exp``;
2. the body at most 16 KiB (413), and ``req_sha256`` in the token is its hash (a token is for
   one request);
3. its ``jti`` was not seen before (kept until the token expires, in the body's database);
4. then the body: the IdNr and the session's public key (X25519 JWK).

Refusals are problem+json (401 ``unauthenticated``, 413 ``payload-too-large``, 422
``invalid-request``, 404 ``not-found`` - also for an entry about someone else -, 503
``store-unavailable``). An answer is an envelope around a JWE (ECDH-ES, A256GCM) to the session
key of a JWS (EdDSA) with the source's key: nobody else can read it, nobody else can make it
(decisions 0033, 0035).
"""

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar import Request, Response, get, post

from einmal.keys import SigningKey, load_public_keys
from einmal.problems import ProblemError
from einmal.store import StoreError
from einmal.tokens import TokenVerifier, bearer_token
from einmal_client.sources import (
    CONTENT_ANSWER,
    LIST_ANSWER,
    MAX_TOKEN_TTL_S,
    VERSION,
    ContentAnswer,
    ContentGroup,
    ContentRequest,
    Envelope,
    ListAnswer,
    ListRequest,
    SourceEntry,
    StatusAnswer,
    body_hash,
    public_session_key,
    seal_answer,
)

__all__ = ["COCKPIT_SOURCES_KEY", "MAX_BODY", "CockpitKeys", "Source", "SourceBackend",
           "SourceReadError", "source_handlers"]

log = structlog.get_logger()

#: the cockpit's public key file in a source's keys dir: ``<name>.public.json`` (JWK set)
COCKPIT_SOURCES_KEY = "cockpit-sources"
#: the largest request body a source reads (a request holds an IdNr, an id and a key)
MAX_BODY = 16 * 1024
_LEEWAY_S = 5
_encode = msgspec.json.Encoder().encode
R = TypeVar("R", ListRequest, ContentRequest)


class SourceReadError(Exception):
    """The body's protocol cannot be read (a sealed entry does not open): 503, like a store
    failure."""


@dataclass(frozen=True, slots=True)
class Source:
    """A source as the interface names it: its id (the tokens' audience) and its name."""

    id: str
    name: str


class SourceBackend(Protocol):
    """What a body that serves the source interface provides."""

    @property
    def answer_key(self) -> SigningKey:
        """The body's own Ed25519 key: every answer about a citizen is signed with it."""
        ...

    def now(self) -> datetime:
        """The body's clock (aware UTC): tokens are checked against it."""
        ...

    def verifier(self, source_id: str) -> TokenVerifier | None:
        """The cockpit's token verifier for ``source_id``; None: no cockpit key (refuse)."""
        ...

    async def use_token_id(self, token_id: str, *, expires_at: datetime) -> bool:
        """Note a request token's id until ``expires_at``; False if seen before (a replay).
        Raises ``StoreError`` if it cannot."""
        ...

    async def entries(self, source_id: str, idnr: str) -> Sequence[SourceEntry]:
        """The protocol entries about ``idnr`` within two years, newest first."""
        ...

    async def content(self, source_id: str, idnr: str, entry_id: str,
                      ) -> Sequence[ContentGroup] | None:
        """The content data of ``entry_id`` if it is about ``idnr``, else None (404)."""
        ...


@dataclass(slots=True)
class CockpitKeys:
    """The cockpit's public key as a source reads it (``<keys_dir>/<name>.public.json``, read
    again when the file changes); without a file there is no verifier: refuse everyone."""

    keys_dir: Path | None
    issuer: str = "einmal-cockpit"
    name: str = COCKPIT_SOURCES_KEY
    _mtime: float | None = None
    _keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    _verifiers: dict[str, TokenVerifier] = field(default_factory=dict)

    def verifier(self, source_id: str) -> TokenVerifier | None:
        """The verifier of request tokens for ``source_id`` (its audience), or None."""
        if self.keys_dir is None:
            return None
        path = self.keys_dir / f"{self.name}.public.json"
        mtime = None
        with contextlib.suppress(OSError):
            mtime = path.stat().st_mtime
        if mtime != self._mtime:
            self._mtime = mtime
            self._verifiers.clear()
            self._keys = {}
            if mtime is not None:
                try:
                    self._keys = load_public_keys(path)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("source.cockpit_key_unreadable", error=type(exc).__name__)
        if not self._keys:
            return None
        verifier = self._verifiers.get(source_id)
        if verifier is None:
            verifier = self._verifiers[source_id] = TokenVerifier(
                keys=dict(self._keys), issuer=self.issuer, audience=source_id,
                leeway_s=_LEEWAY_S)
        return verifier


def _unauthenticated(detail: str) -> ProblemError:
    return ProblemError("unauthenticated", detail,
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def _authorized(backend: SourceBackend, request: Request[Any, Any, Any],
                      resolve: Callable[[Mapping[str, Any]], Source | None],
                      ) -> tuple[Source, bytes]:
    """The source asked and the request body, once the token is good (module docstring)."""
    source = resolve(request.path_params)
    if source is None:
        raise ProblemError("not-found", "No source at this address.")
    unverified_token = bearer_token(request)
    verifier = backend.verifier(source.id)
    if verifier is None:
        raise _unauthenticated("This source knows no cockpit key: it answers nobody.")
    now = backend.now().timestamp()
    claims = verifier.verify(unverified_token, now=now)
    jti = claims.get("jti")
    if (not isinstance(jti, str) or not 0 < len(jti) <= 128
            or claims["exp"] - claims["iat"] > MAX_TOKEN_TTL_S
            or claims["iat"] > now + _LEEWAY_S):
        raise _unauthenticated("The token must live at most 60 s and carry a jti.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:  # refused before it is read
        raise ProblemError("payload-too-large", f"At most {MAX_BODY} bytes.")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ProblemError("payload-too-large", f"At most {MAX_BODY} bytes.")
    if claims.get("req_sha256") != body_hash(body):
        raise _unauthenticated("The token was made for another request.")
    try:
        first_use = await backend.use_token_id(
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


def _sealed(backend: SourceBackend, message: str, asked: ListRequest | ContentRequest,
            source: Source, plain: bytes) -> Response[bytes]:
    key = backend.answer_key
    envelope = Envelope(nachrichtentyp=message, version=VERSION,
                        correlation_id=asked.correlation_id, source=source.id,
                        payload=seal_answer(asked.session_key, plain,
                                            private_key=key.private_key, kid=key.kid))
    return Response(content=_encode(envelope), media_type="application/json",
                    headers={"cache-control": "no-store"})


def source_handlers(backend: SourceBackend, path: str,
                    resolve: Callable[[Mapping[str, Any]], Source | None]) -> list[Any]:
    """The three endpoints under ``path`` (e.g. ``/standesamt/{ags:str}/dsc``); ``resolve``
    maps the path parameters to the source, or None (404)."""

    @post(f"{path}/protokolldaten", include_in_schema=False, status_code=200)
    async def list_entries(request: Request[Any, Any, Any]) -> Response[bytes]:
        source, body = await _authorized(backend, request, resolve)
        asked = _parse(body, ListRequest)
        try:
            entries = await backend.entries(source.id, asked.idnr)
        except (StoreError, SourceReadError) as exc:
            raise ProblemError("store-unavailable", "The protocol cannot be read.") from exc
        answer = ListAnswer(correlation_id=asked.correlation_id, source=source.id,
                            idnr=asked.idnr, entries=tuple(entries))
        return _sealed(backend, LIST_ANSWER, asked, source, _encode(answer))

    @post(f"{path}/inhaltsdaten", include_in_schema=False, status_code=200)
    async def content(request: Request[Any, Any, Any]) -> Response[bytes]:
        source, body = await _authorized(backend, request, resolve)
        asked = _parse(body, ContentRequest)
        try:
            groups = await backend.content(source.id, asked.idnr, asked.entry_id)
        except (StoreError, SourceReadError) as exc:
            raise ProblemError("store-unavailable", "The protocol cannot be read.") from exc
        if groups is None:
            raise ProblemError("not-found", "No such entry about this citizen.")
        answer = ContentAnswer(correlation_id=asked.correlation_id, source=source.id,
                               idnr=asked.idnr, entry_id=asked.entry_id, groups=tuple(groups))
        return _sealed(backend, CONTENT_ANSWER, asked, source, _encode(answer))

    @get(f"{path}/status", include_in_schema=False)
    async def status(request: Request[Any, Any, Any]) -> Response[bytes]:
        source, _ = await _authorized(backend, request, resolve)
        answer = StatusAnswer(source=source.id, name=source.name)
        return Response(content=_encode(answer), media_type="application/json",
                        headers={"cache-control": "no-store"})

    return [list_entries, content, status]
