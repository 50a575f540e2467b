"""Error pages of the web view: what happened and what to do, in German and English.

API routes keep problem+json (einmal.problems); these handlers apply to the web router only.
"""

from typing import Any
from urllib.parse import urlencode

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect, Template

from cockpit.web.api import ApiError
from cockpit.web.oidc import LoginError
from einmal.problems import ProblemError


class LoginRequired(Exception):
    """Raised by the ``login`` dependency: the page needs a logged-in citizen."""

    def __init__(self, next_path: str, *, expired: bool = False) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


__all__ = ["ROUTES", "LoginRequired", "error_page", "exception_handlers"]

log = structlog.get_logger()
ROUTES: list[Any] = []

#: status -> error kind (a key group in the catalogs: errors.<kind>.title/what/todo)
_KINDS = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "bad_request",
          413: "bad_request", 415: "bad_request", 422: "bad_request", 429: "too_many",
          502: "unavailable", 503: "unavailable", 504: "unavailable"}


def error_page(view: Any, request: Request[Any, Any, Any], status: int, kind: str,
               ) -> Template:
    return view.page(request, "error.html", status=status, kind=kind, session=None)


def exception_handlers(view: Any) -> dict[Any, Any]:
    def login_required(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        assert isinstance(exc, LoginRequired)  # noqa: S101 - registered for LoginRequired only
        params = {"next": exc.next_path}
        if exc.expired:
            params["expired"] = "1"
        return Redirect(path=f"/login?{urlencode(params)}", status_code=303)

    def http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if isinstance(exc, ProblemError):
            status = exc.status
        kind = "csrf" if (status == 403 and getattr(exc, "detail", "") == "csrf") \
            else _KINDS.get(status, "server_error" if status >= 500 else "bad_request")
        return error_page(view, request, status, kind)

    def api_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
        if exc.status == 401:
            return Redirect(path="/login?expired=1", status_code=303)
        if exc.status == 404:
            return error_page(view, request, 404, "not_found")
        if exc.status in {400, 409, 422}:
            return error_page(view, request, 400, "bad_request")
        if exc.status == 429:
            return error_page(view, request, 429, "too_many")
        log.warning("web.api_error", status=exc.status, problem=exc.slug)
        return error_page(view, request, 502, "unavailable")

    def login_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        assert isinstance(exc, LoginError)  # noqa: S101 - registered for LoginError only
        log.warning("web.login_failed", reason=exc.reason, **exc.context)
        kind = "login_denied" if exc.reason == "denied" else "login_failed"
        return error_page(view, request, exc.status, kind)

    def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        log.error("web.unhandled_error", path=request.url.path, error=type(exc).__name__,
                  exc_info=exc)
        return error_page(view, request, 500, "server_error")

    return {LoginRequired: login_required, NotFoundException: http_error,
            HTTPException: http_error, ProblemError: http_error, ApiError: api_error,
            LoginError: login_error, Exception: unexpected}
