"""What the broker's controllers share (broker/http.py, broker/http_previews.py): strict JSON
bodies, JSON answers, the proof answer (200, or 202 while a preview is pending), and the one
answer to a store failure, and the rate limits."""

import json
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request, Response

from broker.previews import PREVIEW_REQUIRED
from einmal.problems import ProblemError, problem_response
from einmal.ratelimit import Limiter

__all__ = ["MAX_JSON_DEPTH", "BrokerLimits", "decode_body", "json_response", "proof_answer",
           "store_unavailable"]

log = structlog.get_logger()
_json = msgspec.json.Encoder()
#: Deepest nesting a request body may have (ours are at most 3 deep).
MAX_JSON_DEPTH = 16


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


class _Pairs(list[Any]):
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


def proof_answer(answer: dict[str, Any]) -> Response[bytes]:
    """200 with the signed proof, or 202 + Location while the citizen's preview is pending."""
    headers = {"cache-control": "no-store"}
    status = 200
    if answer.get("status") == PREVIEW_REQUIRED:
        status = 202
        headers["location"] = f"/v1/proof-requests/{answer['request_id']}"
    return Response(content=_json.encode(answer), status_code=status,
                    media_type="application/json", headers=headers)


def store_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The handler of ``StoreError`` (einmal/store.py) on every broker route: 503
    ``store-unavailable`` with ``Retry-After``. Nothing was released: a proof leaves only
    after its transfer record is committed."""
    log.error("store.unavailable", error=str(exc))
    problem = ProblemError("store-unavailable", "The transfer record could not be written; "
                           "nothing was released. Retry later.")
    return problem_response(problem, request)
