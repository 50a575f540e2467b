"""RFC 9457 problem details: the one error shape of every HTTP endpoint.

``ProblemError`` is raised by handlers and services' HTTP adapters; ``exception_handlers()``
turns it, Litestar's own HTTP errors and anything unexpected into ``application/problem+json``
with a stable ``type`` (``urn:einmal:problem:<slug>``) and, where one fits, the EU OOTS code.
"""

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

__all__ = ["PROBLEM_MEDIA_TYPE", "RETRY_AFTER", "ProblemError", "exception_handlers",
           "problem_response"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:einmal:problem:"

log = structlog.get_logger()

#: slug -> (status, title, OOTS code)
CATALOGUE: dict[str, tuple[int, str, str | None]] = {
    "invalid-request": (422, "Invalid request", "EDM:ERR:0003"),
    "invalid-client": (401, "Client authentication failed", "EDM:ERR:0001"),
    "unauthenticated": (401, "Authentication required", "EDM:ERR:0001"),
    "forbidden": (403, "Forbidden", None),
    "permission-denied": (403, "Not permitted by the service's policy", None),
    "consent-required": (403, "Consent required", "EDM:ERR:0002"),
    "not-found": (404, "Not found", "EDM:ERR:0004"),
    "method-not-allowed": (405, "Method not allowed", None),
    "conflict": (409, "Conflict", None),
    "preview-refused": (403, "The citizen refused the preview", None),
    "preview-expired": (410, "Preview expired", None),
    "preview-collected": (410, "Already collected", None),
    "payload-too-large": (413, "Request body too large", "EDM:ERR:0003"),
    "unsupported-media-type": (415, "Unsupported media type", "EDM:ERR:0003"),
    "rate-limited": (429, "Too many requests", None),
    "routing-failed": (422, "No register is responsible", "EDM:ERR:0006"),
    "register-unavailable": (502, "Register unavailable", "EDM:ERR:0008"),
    "register-timeout": (504, "Register timeout", "EDM:ERR:0005"),
    "register-busy": (503, "Register busy", "EDM:ERR:0008"),
    "store-unavailable": (503, "Store unavailable", None),
    "source-unavailable": (502, "Source unavailable", None),
    "internal": (500, "Internal error", None),
}


#: slug -> seconds a client should wait before it retries (RFC 9110 ``Retry-After``): sent with
#: every problem of that type unless the raiser names its own.
RETRY_AFTER: dict[str, str] = {"store-unavailable": "5"}


class ProblemError(Exception):
    """An error with a problem-details representation. ``slug`` must be in CATALOGUE."""

    def __init__(self, slug: str, detail: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        if slug not in CATALOGUE:
            msg = f"unknown problem type {slug!r}"
            raise ValueError(msg)
        super().__init__(detail)
        self.slug = slug
        self.detail = detail
        self.status = status or CATALOGUE[slug][0]
        self.headers = headers or {}
        retry_after = RETRY_AFTER.get(slug)
        if retry_after is not None and not any(k.lower() == "retry-after" for k in self.headers):
            self.headers = {**self.headers, "Retry-After": retry_after}
        self.extensions = {k: v for k, v in extensions.items() if v is not None}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        _, title, code = CATALOGUE[self.slug]
        body: dict[str, Any] = {"type": _TYPE_PREFIX + self.slug, "title": title,
                                "status": self.status, "detail": self.detail}
        if code:
            body["code"] = code
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


def problem_response(problem: ProblemError, request: Request[Any, Any, Any] | None = None,
                     ) -> Response[bytes]:
    instance = request.url.path if request is not None else None
    return Response(
        content=msgspec.json.encode(problem.body(instance)),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


_HTTP_SLUGS = {400: "invalid-request", 401: "unauthenticated", 403: "forbidden",
               404: "not-found", 405: "method-not-allowed", 409: "conflict",
               413: "payload-too-large", 415: "unsupported-media-type", 422: "invalid-request",
               429: "rate-limited", 503: "store-unavailable"}


def _handle_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ProblemError)  # noqa: S101 - registered for ProblemError only
    return problem_response(exc, request)


def _handle_http(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    slug = _HTTP_SLUGS.get(exc.status_code,
                           "internal" if exc.status_code >= 500 else "invalid-request")
    detail = exc.detail if exc.status_code < 500 else "The server could not complete the request."
    problem = ProblemError(slug, detail, status=exc.status_code,
                           headers=dict(exc.headers or {}))
    return problem_response(problem, request)


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # the route template, not the path (a path can carry an IdNr)
    log.error("http.unhandled_error", route=str(request.scope.get("path_template", "unmatched")),
              error=type(exc).__name__, exc_info=exc)
    problem = ProblemError("internal", "The server could not complete the request.")
    return problem_response(problem, request)


def exception_handlers(html_not_found: Any = None) -> dict[type[Exception], Any]:
    """The app's handlers. ``html_not_found(request)``: a page for a browser that asked for an
    unknown page (the cockpit web view's 404); API clients always get problem+json."""
    http = _handle_http
    if html_not_found is not None:
        def http(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
            if (isinstance(exc, HTTPException) and exc.status_code == 404
                    and _wants_html(request)):
                page: Response[Any] = html_not_found(request)
                return page
            return _handle_http(request, exc)

    return {ProblemError: _handle_problem, HTTPException: http, Exception: _handle_unexpected}


#: Paths of machine interfaces: always problem+json, whatever the Accept header says.
_API_PREFIXES = ("/v1/", "/schema", "/.well-known/", "/registers", "/demo/", "/health",
                 "/metrics", "/static/")


def _wants_html(request: Request[Any, Any, Any]) -> bool:
    return ("text/html" in request.headers.get("accept", "")
            and not request.url.path.startswith(_API_PREFIXES))
