"""Previews (EU OOTS): proofs the broker holds until the citizen releases them.

``/previews`` lists what is waiting; ``/previews/{id}`` shows the values exactly as the service
would get them, with the service, purpose, legal basis and expiry, and a CSRF-protected form
with two buttons (release / refuse). After the decision the same page says what happens next
and, if the service sent one of its registered return addresses, links back to the service.
"""

import re
from typing import Any
from urllib.parse import urlencode

import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath

from cockpit.web.api import ApiError
from cockpit.web.core import WebView
from cockpit.web.session import WebSession

__all__ = ["ROUTES"]

log = structlog.get_logger()
_REQUEST_ID = re.compile(r"[0-9a-f-]{36}")
_DECISIONS = ("accept", "refuse")
#: how many decided previews the list shows below the waiting ones
_RECENT = 20


def _request_id(value: str) -> str:
    if not _REQUEST_ID.fullmatch(value):
        raise NotFoundException
    return value


def _back_link(web: WebView, service_id: str, uri: str | None) -> str | None:
    """A link back to the service: only one of the addresses its policy registers."""
    if not uri or len(uri) > 2000:
        return None
    allowed = getattr(web.policies, "redirect_allowed", None)
    return uri if allowed is not None and allowed(service_id, uri) else None


def _with_return(path: str, uri: str | None) -> str:
    return f"{path}?{urlencode({'return': uri})}" if uri else path


@get("/previews", name="previews", include_in_schema=False)
async def previews(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                   login: NamedDependency[WebSession]) -> Response[Any]:
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    every = await web.api.previews(login.access_token, status="all")
    pending = [p for p in every if p["status"] == "pending"]
    decided = [p for p in every if p["status"] != "pending"][:_RECENT]
    return web.page(request, "previews/list.html", session=login, pending=pending,
                    decided=decided)


@get("/previews/{request_id:str}", name="preview", include_in_schema=False)
async def preview(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                  login: NamedDependency[WebSession], request_id: FromPath[str]) -> Response[Any]:
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    # another citizen's preview is "not found" (the broker answers 404 for it)
    item = await web.api.preview(login.access_token, _request_id(request_id))
    back = _back_link(web, item["service_id"], request.query_params.get("return"))
    notice = login.notice
    if notice:
        login.notice = None
        await web.sessions.save(login)
    values = [(name, item["data"][name]) for name in item["fields"]
              if item.get("data") and name in item["data"]]
    subfields = {key.removeprefix("subfield.") for key in web.catalogs.messages["de"]
                 if key.startswith("subfield.")}
    return web.page(request, "previews/detail.html", session=login, item=item, values=values,
                    back=back, notice=notice, subfields=subfields,
                    action=_with_return(f"/previews/{item['request_id']}", back))


@post("/previews/{request_id:str}", name="preview_decide", include_in_schema=False,
      status_code=303)
async def decide(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                 login: NamedDependency[WebSession], request_id: FromPath[str]) -> Response[Any]:
    fields = await web.check_csrf(request, login)
    request_id = _request_id(request_id)
    decision = fields.get("decision", "")
    if decision not in _DECISIONS:
        raise _bad_request()
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    try:
        await web.api.decide_preview(login.access_token, request_id, decision)
        login.notice = f"previews.notice_{decision}"
    except ApiError as exc:
        if exc.status not in (409, 410):
            raise
        login.notice = "previews.notice_expired" if exc.status == 410 else \
            "previews.notice_already"
    await web.sessions.save(login)
    log.info("web.preview_decided", decision=decision)
    return web.redirect(request, _with_return(f"/previews/{request_id}",
                                              request.query_params.get("return")))


def _bad_request() -> Exception:
    return HTTPException(status_code=400, detail="decision")


ROUTES = [previews, preview, decide]
