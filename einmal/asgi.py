"""Reading an ASGI request without the framework's request objects, for the hot paths: a
few header values in one pass over the raw headers, as ``request.headers.get`` reads them,
and the body straight from ``receive``, as ``await request.body()`` reads it."""

import math
from collections.abc import Collection, Iterable
from typing import Any

from litestar import Request
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.utils.scope.state import ScopeState

__all__ = ["header_values", "read_body"]


def header_values(headers: Iterable[tuple[bytes, bytes]],
                  names: Collection[bytes]) -> dict[bytes, str]:
    """The headers named (lower-case bytes) as ``request.headers.get`` reads them - any case,
    the first of repeated ones, latin-1 - without building a multidict of every header
    (Litestar's ``Headers``) for a few values. ``headers``: an ASGI scope's ``headers``."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in names and lower not in found:
            found[lower] = value.decode("latin-1")
    return found


async def read_body(request: Request[Any, Any, Any], content_length: str | None) -> bytes:
    """``await request.body()`` read straight from ASGI ``receive``: the same limit (the
    route's ``request_max_body_size``; an announced ``content_length`` above it is refused
    before anything is read) and the same errors (413, 400 for a Content-Length that is no
    number, 500 when the client is gone), without the ``Headers`` and the async generator
    Litestar builds for it. ``content_length``: the request's Content-Length header as
    ``header_values`` reads it (None: none sent). Call it once, before anything else read
    the body; the body is kept in the scope's state, where ``request.body()`` finds it."""
    limit = request.route_handler.resolve_request_max_body_size() or math.inf
    if content_length is not None:
        try:
            announced = int(content_length)
        except ValueError:
            msg = f"Invalid content-length: {content_length!r}"
            raise ClientException(msg) from None
        if announced > limit:
            raise RequestEntityTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await request.receive()
        if event["type"] == "http.request":
            chunk = event.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise RequestEntityTooLarge
                chunks.append(chunk)
            if not event.get("more_body", False):
                break
        elif event["type"] == "http.disconnect":
            msg = "client disconnected prematurely"
            raise InternalServerException(msg)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    ScopeState.from_scope(request.scope).body = body
    return body
