"""The web view's router: every page module's ``ROUTES``, the static files, the dependencies
(``web``, ``login``, ``maybe_login``), the security headers and the error pages."""

from typing import Any

from litestar import Request, Router
from litestar.di import Provide
from litestar.static_files import create_static_files_router

from cockpit.web import auth, consents, errors, mydata, overview, previews, sources, transfers
from cockpit.web.core import STATIC_DIR, WebView
from cockpit.web.security import security_headers
from cockpit.web.session import WebSession

__all__ = ["PAGE_MODULES", "create_web_router"]

#: The page modules, in routing order; each exports ``ROUTES``.
PAGE_MODULES = (auth, overview, sources, transfers, consents, mydata, previews, errors)


def create_web_router(view: WebView) -> Router:
    """The router serving ``view``'s pages at ``/``."""
    static = create_static_files_router(path="/static", directories=[STATIC_DIR],
                                        include_in_schema=False,
                                        cache_control=None, name="static")

    # closures, not bound methods: Litestar deep-copies a router when it is registered
    async def login(request: Request[Any, Any, Any]) -> WebSession:
        return await view.require_login(request)

    async def maybe_login(request: Request[Any, Any, Any]) -> WebSession | None:
        return await view.optional_session(request)

    return Router(
        path="/", route_handlers=[*(h for m in PAGE_MODULES for h in m.ROUTES), static],
        dependencies={
            "web": Provide(lambda: view, use_cache=True, sync_to_thread=False),
            "login": Provide(login),
            "maybe_login": Provide(maybe_login),
        },
        middleware=[security_headers()],
        exception_handlers=errors.exception_handlers(view),
        include_in_schema=False,
    )
