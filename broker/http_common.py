"""What the broker's controllers share (broker/http.py, broker/http_previews.py): strict JSON
bodies, JSON answers, the proof answer (200, or 202 while a preview is pending), and the one
answer to a store failure, and the rate limits."""

import json
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.types import Receive, Scope, Send

from broker.previews import PREVIEW_REQUIRED
from einmal.problems import ProblemError, problem_response
from einmal.ratelimit import Limiter

__all__ = ["MAX_JSON_DEPTH", "BrokerLimits", "JsonAnswer", "decode_body", "json_response",
           "proof_answer", "store_unavailable"]

log = structlog.get_logger()
_json = msgspec.json.Encoder()
#: Deepest nesting a request body may have (ours are at most 3 deep).
MAX_JSON_DEPTH = 16


class _DuplicateMemberError(Exception):
    """A JSON object names a member twice (raised by ``_members`` while parsing)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as the C decoder hands it over (its pairs, in order), refused if it names
    a member twice."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateMemberError(name)
            seen.add(name)
    return value


#: made once: ``json.loads(..., object_pairs_hook=...)`` builds a decoder on every call
_STRICT = json.JSONDecoder(object_pairs_hook=_members)


def _too_deep(value: Any) -> bool:
    """Nesting deeper than MAX_JSON_DEPTH in a parsed document: one walk, no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if type(item) is dict or type(item) is list:
            if level > MAX_JSON_DEPTH:
                return True
            stack.extend((child, level + 1)
                         for child in (item.values() if type(item) is dict else item))
    return False


def _precheck(raw: bytes) -> None:
    """Refuse what a strict decoder would silently accept or choke on: duplicate member
    names (msgspec keeps the last one; another parser in the chain might keep the first)
    and deep nesting (a RecursionError would be a 500). Malformed JSON is left to msgspec.

    Duplicates are caught while the C decoder parses (``_members``, once per object); the
    nesting is walked only if the body holds more than MAX_JSON_DEPTH brackets and braces
    (it cannot be nested deeper than that, strings included)."""
    try:
        parsed = _STRICT.decode(raw.decode())
    except RecursionError as exc:
        raise ProblemError("invalid-request", "The body is nested too deeply.") from exc
    except _DuplicateMemberError as exc:
        raise ProblemError("invalid-request", f"The body names the member {exc.name[:64]!r} "
                           "more than once.") from exc
    except ValueError:  # not JSON / not UTF-8 (msgspec reads UTF-8 only): msgspec says why,
        # with a 400
        return
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _too_deep(parsed):
        raise ProblemError("invalid-request",
                           f"The body is nested deeper than {MAX_JSON_DEPTH} levels.")


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


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """Token buckets: per service on proof requests, per client address on the token endpoint."""

    service: Limiter
    token: Limiter


def json_response(content: Any, status: int = 200) -> Response[bytes]:
    return Response(content=_json.encode(content), status_code=status,
                    media_type="application/json", headers={"cache-control": "no-store"})


class JsonAnswer:
    """A JSON answer with ``cache-control: no-store`` as a bare ASGI app: a handler annotated
    to return it is handed on by Litestar as it is, where a ``Response`` is turned into an
    ``ASGIResponse`` and its headers built one by one on every request (~12 CPU-us; bench
    figures in the commit). The same status, headers (in the same order) and body as
    ``json_response``; the middleware adds ``x-request-id`` as to any answer."""

    __slots__ = ("_body", "_headers", "_status")

    def __init__(self, body: bytes, *, status: int = 200, location: str | None = None) -> None:
        headers = [(b"cache-control", b"no-store")]
        if location is not None:
            headers.append((b"location", location.encode("latin-1")))
        headers += ((b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)))
        self._body = body
        self._headers = headers
        self._status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self._status,
                    "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body, "more_body": False})


def proof_answer(answer: dict[str, Any]) -> JsonAnswer:
    """200 with the signed proof, or 202 + Location while the citizen's preview is pending."""
    if answer.get("status") == PREVIEW_REQUIRED:
        return JsonAnswer(_json.encode(answer), status=202,
                          location=f"/v1/proof-requests/{answer['request_id']}")
    return JsonAnswer(_json.encode(answer))


def store_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The handler of ``StoreError`` (einmal/store.py) on every broker route: 503
    ``store-unavailable`` with ``Retry-After``. Nothing was released: a proof leaves only
    after its transfer record is committed."""
    log.error("store.unavailable", error=str(exc))
    problem = ProblemError("store-unavailable", "The transfer record could not be written; "
                           "nothing was released. Retry later.")
    return problem_response(problem, request)
