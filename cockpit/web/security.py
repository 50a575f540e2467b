"""Security headers on every web response (pages, redirects, errors, static files).

An ASGI middleware, so error pages and static files get them too. A handler may set its own
``Content-Security-Policy`` (e.g. the consent screen, whose form redirects to the service).
"""

from collections.abc import Iterable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["csp", "header_dict", "security_headers"]

_BASE = ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
         "frame-ancestors 'none'; base-uri 'none'")


def csp(form_action: Iterable[str] = ()) -> str:
    """The strict policy; ``form_action``: origins a form may submit (or redirect) to."""
    sources = " ".join(["'self'", *sorted(set(form_action))])
    return f"{_BASE}; form-action {sources}"


def _defaults(form_action: Iterable[str] = ()) -> list[tuple[bytes, bytes]]:
    return [(b"content-security-policy", csp(form_action).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()")]


def header_dict() -> dict[str, str]:
    """The same headers for a page rendered outside the web router (the app-wide 404 page)."""
    return {k.decode(): v.decode() for k, v in _defaults()} | {"cache-control": "no-store"}


def security_headers(form_action: Iterable[str] = ()) -> Any:
    """Middleware factory: ``Router(middleware=[security_headers([...])])``."""
    default = _defaults(form_action)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return

            async def send_with_headers(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers") or [])
                    present = {name.lower() for name, _ in headers}
                    headers.extend(h for h in default if h[0] not in present)
                    if b"cache-control" not in present:
                        headers.append((b"cache-control", b"no-store"))
                    message["headers"] = headers
                await send(message)

            await app(scope, receive, send_with_headers)

        return middleware

    return factory
