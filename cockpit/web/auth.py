"""Login (OpenID Connect, authorization code + PKCE), callback and logout."""

from typing import Any

import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery

from cockpit.web.core import WebView, safe_next
from cockpit.web.errors import error_page
from cockpit.web.oidc import LoginError
from cockpit.web.session import WebSession
from einmal.domain.idnr import InvalidIdNrError, validate_idnr

__all__ = ["ROUTES"]

log = structlog.get_logger()


@get("/login", name="login", include_in_schema=False)
async def login_page(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                     maybe_login: NamedDependency[WebSession | None],
                     next: FromQuery[str | None] = None, expired: FromQuery[str | None] = None,
                     logged_out: FromQuery[str | None] = None) -> Response[Any]:
    target = safe_next(next)
    if maybe_login is not None:
        return web.redirect(request, target)
    return web.page(request, "login.html", target=target, expired=bool(expired),
                    logged_out=bool(logged_out), configured=web.oidc is not None)


@get("/login/start", name="login_start", include_in_schema=False)
async def login_start(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                      next: FromQuery[str | None] = None) -> Response[Any]:
    if web.oidc is None:
        return error_page(web, request, 503, "login_unconfigured")
    old = web.sessions.cookie_id(request)
    if old:
        web.drop_answers(old)
        await web.sessions.delete(old)
    pending, url = await web.oidc.start(safe_next(next))
    session = await web.sessions.new(pending=pending)
    return web.redirect(request, url, cookies=[web.sessions.cookie(session.id)])


@get("/auth/callback", name="auth_callback", include_in_schema=False)
async def auth_callback(request: Request[Any, Any, Any],
                        web: NamedDependency[WebView]) -> Response[Any]:
    """The identity provider sends the browser back here. Every failure is a ``LoginError``:
    one log line with its reason and the "Anmeldung fehlgeschlagen" page (cockpit.web.errors)."""
    if web.oidc is None:
        return error_page(web, request, 400, "login_failed")
    session = await web.sessions.load(request)
    if session is None or session.pending is None:  # e.g. a callback replayed or too late
        raise LoginError("no_pending_login")
    pending = session.pending
    await web.sessions.delete(session.id)  # one attempt per pending login
    params = {key: str(value) for key, value in request.query_params.items()}
    result = await web.oidc.finish(pending, params)
    try:
        idnr = validate_idnr(result.idnr, allow_test=web.demo)
    except InvalidIdNrError as exc:
        raise LoginError("idnr_invalid") from exc
    # A new session id after login (no session fixation), with the cockpit's own API token
    # for it: the provider's tokens are not kept (decision 0027).
    fresh = await web.sessions.login(idnr)
    log.info("web.login", session_ends_in_s=round(fresh.ends_at - fresh.created))
    return web.redirect(request, pending.next, cookies=[web.sessions.cookie(fresh.id)])


@post("/logout", name="logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                 login: NamedDependency[WebSession]) -> Response[Any]:
    await web.check_csrf(request, login)
    await web.end_session(login)  # the sources' answers go with it (WebView.drop_answers)
    return web.redirect(request, "/login?logged_out=1", cookies=[web.sessions.clear_cookie()])


ROUTES = [login_page, login_start, auth_callback, logout]
