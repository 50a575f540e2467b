"""The web view's composition: templates, catalogs, sessions, OIDC, API client, router.

Everything is built once at start-up (``WebView.__init__``); handlers only use it. Pages are
collected by ``cockpit.web.routes.create_web_router`` from the page modules (each exports
``ROUTES``): see README.md.
"""

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.stores.base import Store
from litestar.template.config import TemplateConfig

from cockpit.sources.model import SourceDesk
from cockpit.web.api import ApiClient, ApiError
from cockpit.web.errors import LoginRequired
from cockpit.web.i18n import DEFAULT_LANGUAGE, LANGUAGES, Catalogs, load_catalogs
from cockpit.web.oidc import OidcClient
from cockpit.web.security import csp
from cockpit.web.session import SessionManager, WebSession
from einmal.citizen import WEB_KEY_NAME, WebTokenMinter
from einmal.domain.idnr import mask_idnr
from einmal.keys import load_or_create_secret, load_or_create_signing_key
from einmal.settings import Settings

__all__ = ["LANG_COOKIE", "LoginRequired", "WebView", "origin_of",
           "safe_next", "template_config"]

log = structlog.get_logger()

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
LANG_COOKIE = "einmal_lang"
BERLIN = ZoneInfo("Europe/Berlin")
#: modules of cockpit.web that contribute pages (a missing one is skipped)
_LOCAL_PATH = re.compile(r"/(?![/\\])[\x21-\x7e]*")




def safe_next(value: str | None) -> str:
    """Only a path on this site (never ``//host`` or a full URL): no open redirect."""
    if value and len(value) <= 2000 and _LOCAL_PATH.fullmatch(value):
        return value
    return "/"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in {"localhost", "127.0.0.1", "::1"}


def _environment(catalogs: Catalogs) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["LANGUAGES"] = LANGUAGES
    env.filters["berlin"] = lambda value, fmt="%d.%m.%Y %H:%M": _to_berlin(value).strftime(fmt)
    return env


def _to_berlin(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(BERLIN)


def template_config(catalogs: Catalogs | None = None) -> TemplateConfig[JinjaTemplateEngine]:
    """The app's template engine (Jinja2, autoescape on): one for all HTML pages."""
    env = _environment(catalogs or load_catalogs())
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


class WebView:
    """The citizen web view of the cockpit, wired once at start-up."""

    def __init__(self, settings: Settings, *, policies: Any,
                 http: httpx.AsyncClient | None = None,
                 session_store: Store | None = None,
                 sources: SourceDesk | None = None) -> None:
        """``sources``: the desk that asks the sources for a citizen's session (the source
        model, issue 15); None: the overview shows the central store's transfers."""

        self.settings = settings
        self.demo = settings.demo
        self.policies = policies
        self.catalogs = load_catalogs()
        self.templates = template_config(self.catalogs)
        self.public_url = settings.cockpit_base_url
        self.sessions = SessionManager(
            secret=load_or_create_secret(settings.keys_dir, "cockpit-web-session"),
            idle_s=settings.web_session_idle_s, max_s=settings.web_session_max_s,
            secure=not _is_loopback(self.public_url) or self.public_url.startswith("https:"),
            store=session_store,
            tokens=WebTokenMinter(  # the web view's own API tokens (decision 0027)
                key=load_or_create_signing_key(settings.keys_dir, WEB_KEY_NAME),
                audience=settings.citizen_audience))
        self.http = http or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        issuer = (settings.oidc_issuer or settings.citizen_issuer
                  or (settings.demo_issuer if settings.demo else None))
        self.oidc = OidcClient(
            issuer=issuer or "", client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret, scopes=settings.oidc_scopes,
            redirect_uri=f"{self.public_url}/auth/callback",
            idnr_claim=settings.citizen_idnr_claim, http=self.http) if issuer else None
        self.api = ApiClient(http=self.http, broker_url=settings.broker_base_url,
                             cockpit_url=settings.cockpit_base_url)
        self.idp_origin = origin_of(issuer) if issuer else None
        self.sources = sources

    async def close(self) -> None:
        await self.http.aclose()

    # -- request helpers ---------------------------------------------------------------------
    @staticmethod
    def language(request: Request[Any, Any, Any]) -> str:
        asked = request.query_params.get("lang")
        if asked in LANGUAGES:
            return asked
        remembered = request.cookies.get(LANG_COOKIE)
        return remembered if remembered in LANGUAGES else DEFAULT_LANGUAGE

    def t(self, request: Request[Any, Any, Any]) -> Callable[..., str]:
        return self.catalogs.translator(self.language(request))

    def _lang_cookie(self, request: Request[Any, Any, Any]) -> list[Cookie]:
        asked = request.query_params.get("lang")
        if asked in LANGUAGES and request.cookies.get(LANG_COOKIE) != asked:
            return [Cookie(key=LANG_COOKIE, value=asked, path="/", httponly=True,
                           samesite="lax", secure=self.sessions.secure,
                           max_age=365 * 24 * 3600)]
        return []

    @staticmethod
    def url_with(request: Request[Any, Any, Any], **changes: Any) -> str:
        """This page's URL with some query parameters changed (None removes one)."""
        params = {k: v for k, v in request.query_params.items()}
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = str(value)
        query = urlencode(params)
        return request.url.path + (f"?{query}" if query else "")

    def page(self, request: Request[Any, Any, Any], template: str, *,
             session: WebSession | None = None, status: int = 200,
             form_action: tuple[str, ...] = (), cookies: list[Cookie] | None = None,
             **context: Any) -> Template:
        """Render a page in the base layout. ``session``: the logged-in citizen (or None)."""
        language = self.language(request)
        other = "en" if language == "de" else "de"
        logged_in = session is not None and session.logged_in
        headers = {"content-security-policy": csp(form_action)} if form_action else {}
        base = {
            "t": self.catalogs.translator(language), "lang": language,
            "switch_lang": other, "switch_url": self.url_with(request, lang=other),
            "demo": self.demo, "path": request.url.path,
            "logged_in": logged_in,
            "citizen_masked": mask_idnr(session.idnr) if logged_in and session
            and session.idnr else "",
            "session_ends": (_to_berlin(self.sessions.expires_at(session)).strftime("%H:%M")
                             if logged_in and session else ""),
            "csrf": self.sessions.csrf_token(session) if session else "",
            "notice": None,
        }
        return Template(template_name=template, context={**base, **context},
                        status_code=status, headers=headers,
                        cookies=[*(cookies or []), *self._lang_cookie(request)])

    def redirect(self, request: Request[Any, Any, Any], url: str, *,
                 cookies: list[Cookie] | None = None) -> Redirect:
        return Redirect(path=url, status_code=303,
                        cookies=[*(cookies or []), *self._lang_cookie(request)])

    # -- dependencies ------------------------------------------------------------------------
    async def optional_session(self, request: Request[Any, Any, Any]) -> WebSession | None:
        session = await self.sessions.load(request)
        return session if session is not None and session.logged_in else None

    async def require_login(self, request: Request[Any, Any, Any]) -> WebSession:
        session = await self.sessions.load(request)
        if session is None or not session.logged_in:
            path = request.url.path
            if request.url.query:
                path += "?" + request.url.query
            cookie_id = self.sessions.cookie_id(request)
            had_cookie = cookie_id is not None
            if cookie_id is not None and session is None:
                self.drop_answers(cookie_id)  # the session ended (idle): its answers too
            raise LoginRequired(path, expired=had_cookie and session is None)
        if self.sources is not None:  # the answers live as long as the session: idle end too
            held = self.sources.answers(session.id)
            if held is not None:
                held.expires_at = self.sessions.expires_at(session)
        return session

    async def check_csrf(self, request: Request[Any, Any, Any], session: WebSession,
                         ) -> dict[str, str]:
        """The posted form, if its CSRF token belongs to this session (else 403)."""
        form = await request.form()
        fields = {key: str(value) for key, value in form.items()}
        if not self.sessions.csrf_ok(session, fields.get("csrf_token")):
            raise HTTPException(status_code=403, detail="csrf")
        return fields

    async def end_session(self, session: WebSession) -> None:
        self.drop_answers(session.id)
        await self.sessions.delete(session.id)

    def drop_answers(self, session_id: str) -> None:
        """Forget what the sources answered in this session (logout, session end)."""
        if self.sources is not None:
            self.sources.drop(session_id)

    async def on_api_error(self, exc: ApiError, session: WebSession) -> None:
        """An API refused the citizen's token: the session is over (expired token)."""
        if exc.status == 401:
            await self.end_session(session)
