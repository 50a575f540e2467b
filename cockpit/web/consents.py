"""Consents: the list with status, revocation with confirmation, and the grant flow an online
service starts by redirecting the citizen here (an OAuth-like consent screen)."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from cockpit.web.core import BERLIN, LoginRequired, WebView, origin_of
from cockpit.web.session import WebSession
from einmal.domain.idnr import InvalidIdNrError, mask_idnr, validate_idnr
from einmal.domain.proofs import ProofType

__all__ = ["ROUTES", "ConsentRequest", "parse_consent_request", "with_query"]

log = structlog.get_logger()
_CONSENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9-]{2,63}")
_STATE = re.compile(r"[\x21-\x7e]{1,512}")
MAX_CONSENT_DAYS = 730
#: the query parameters of the redirect flow (docs/cockpit.md, "The consent redirect")
FLOW_PARAMS = ("client_id", "proof_types", "purpose", "valid_until", "max_uses", "subject",
               "redirect_uri", "state")


class ConsentRequestError(Exception):
    """The consent request cannot be shown; ``field`` names what is wrong (never redirected)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True)
class ConsentRequest:
    service: Any  # PolicyDocument
    proofs: list[tuple[str, Any]]  # (proof type, Permission)
    purpose: str
    valid_until: datetime
    max_uses: int | None
    subject: str | None
    redirect_uri: str
    state: str | None
    params: dict[str, str]

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "service_id": self.service.id, "proof_types": [p for p, _ in self.proofs],
            "purpose": self.purpose,
            "valid_until": self.valid_until.astimezone(UTC).isoformat().replace("+00:00", "Z")}
        if self.max_uses is not None:
            body["max_uses"] = self.max_uses
        if self.subject is not None:
            body["subject"] = self.subject
        return body


def with_query(uri: str, **params: str | None) -> str:
    """``uri`` with ``params`` added to its query (a registered URI may have one)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _valid_until(raw: str, now: datetime) -> datetime:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):  # a day: valid to its end (Berlin time)
            day = datetime.fromisoformat(raw).date()
            value = datetime.combine(day, time(23, 59, 59), tzinfo=BERLIN)
        else:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConsentRequestError("valid_until") from exc
    if value.tzinfo is None or value <= now or value > now + timedelta(days=MAX_CONSENT_DAYS):
        raise ConsentRequestError("valid_until")
    return value


def parse_consent_request(params: dict[str, str], policies: Any, *, allow_test_idnrs: bool,
                          now: datetime | None = None) -> ConsentRequest:
    """Validate everything before the screen is shown: an unknown service or an unregistered
    redirect_uri is an error page, never a redirect."""
    now = now or datetime.now(UTC)
    client_id = params.get("client_id", "")
    service = policies.service(client_id) if client_id else None
    if service is None:
        raise ConsentRequestError("client_id")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or not policies.redirect_allowed(client_id, redirect_uri):
        raise ConsentRequestError("redirect_uri")
    purpose = params.get("purpose", "")
    if not _PURPOSE.fullmatch(purpose):
        raise ConsentRequestError("purpose")
    names = [p.strip() for p in params.get("proof_types", "").split(",") if p.strip()]
    if not names or len(names) != len(set(names)):
        raise ConsentRequestError("proof_types")
    proofs = []
    for name in names:
        try:
            proof_type = ProofType(name)
        except ValueError as exc:
            raise ConsentRequestError("proof_types") from exc
        permission = policies.permission(client_id, proof_type, purpose)
        if permission is None:
            raise ConsentRequestError("proof_types")
        proofs.append((proof_type.value, permission))
    valid_until = _valid_until(params.get("valid_until", ""), now)
    max_uses = None
    if params.get("max_uses"):
        try:
            max_uses = int(params["max_uses"])
        except ValueError as exc:
            raise ConsentRequestError("max_uses") from exc
        if not 1 <= max_uses <= 1000:
            raise ConsentRequestError("max_uses")
    subject = None
    if params.get("subject"):
        try:
            subject = validate_idnr(params["subject"], allow_test=allow_test_idnrs)
        except InvalidIdNrError as exc:
            raise ConsentRequestError("subject") from exc
    state = params.get("state") or None
    if state is not None and not _STATE.fullmatch(state):
        raise ConsentRequestError("state")
    kept = {k: params[k] for k in FLOW_PARAMS if params.get(k)}
    return ConsentRequest(service=service, proofs=proofs, purpose=purpose,
                          valid_until=valid_until, max_uses=max_uses, subject=subject,
                          redirect_uri=redirect_uri, state=state, params=kept)


def _flow_error(web: WebView, request: Request[Any, Any, Any], exc: ConsentRequestError,
                session: WebSession | None) -> Response[Any]:
    log.info("web.consent_request_refused", field=exc.field)
    return web.page(request, "consents/request_error.html", session=session, status=400,
                    field=exc.field)


@get("/consents", name="consents", include_in_schema=False)
async def consents(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                   login: NamedDependency[WebSession]) -> Response[Any]:
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    items = await web.api.consents(login.access_token)
    items.sort(key=lambda c: (c["status"] != "active", c["granted_at"]), reverse=False)
    notice = login.notice
    if notice:
        login.notice = None
        await web.sessions.save(login)
    return web.page(request, "consents/list.html", session=login, items=items, notice=notice)


@get("/consents/new", name="consent_new", include_in_schema=False)
async def consent_screen(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                         maybe_login: NamedDependency[WebSession | None]) -> Response[Any]:
    params = {k: str(v) for k, v in request.query_params.items()}
    try:
        flow = parse_consent_request(params, web.policies, allow_test_idnrs=web.demo)
    except ConsentRequestError as exc:
        return _flow_error(web, request, exc, maybe_login)
    if maybe_login is None:  # log in first, then come back to this very screen
        raise LoginRequired(f"/consents/new?{urlencode(flow.params)}")
    return web.page(request, "consents/new.html", session=maybe_login, flow=flow,
                    subject_masked=mask_idnr(flow.subject) if flow.subject else None,
                    subject_is_me=flow.subject in (None, maybe_login.idnr),
                    form_action=(origin_of(flow.redirect_uri),))


@post("/consents/new", name="consent_decide", include_in_schema=False, status_code=303)
async def consent_decide(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                         login: NamedDependency[WebSession]) -> Response[Any]:
    fields = await web.check_csrf(request, login)
    try:
        flow = parse_consent_request(fields, web.policies, allow_test_idnrs=web.demo)
    except ConsentRequestError as exc:
        return _flow_error(web, request, exc, login)
    if fields.get("decision") != "accept":
        log.info("web.consent_declined", service_id=flow.service.id)
        return web.redirect(request, with_query(flow.redirect_uri, error="access_denied",
                                                state=flow.state))
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    consent = await web.api.grant_consent(login.access_token, flow.body())
    return web.redirect(request, with_query(flow.redirect_uri, consent_id=consent["id"],
                                            state=flow.state))


async def _own_consent(web: WebView, login: WebSession, consent_id: str) -> dict[str, Any]:
    if not _CONSENT_ID.fullmatch(consent_id):
        raise NotFoundException
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    for item in await web.api.consents(login.access_token):
        if item["id"] == consent_id:
            return item
    raise NotFoundException


@get("/consents/{consent_id:str}/revoke", name="consent_revoke_confirm",
     include_in_schema=False)
async def revoke_confirm(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                         login: NamedDependency[WebSession],
                         consent_id: FromPath[str]) -> Response[Any]:
    consent = await _own_consent(web, login, consent_id)
    return web.page(request, "consents/revoke.html", session=login, consent=consent)


@post("/consents/{consent_id:str}/revoke", name="consent_revoke", include_in_schema=False,
      status_code=303)
async def revoke(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                 login: NamedDependency[WebSession], consent_id: FromPath[str]) -> Response[Any]:
    await web.check_csrf(request, login)
    if not _CONSENT_ID.fullmatch(consent_id):
        raise NotFoundException
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    await web.api.revoke_consent(login.access_token, consent_id)  # 404 for another's
    login.notice = "consents.revoked_notice"
    await web.sessions.save(login)
    return web.redirect(request, "/consents")


ROUTES = [consents, consent_screen, consent_decide, revoke_confirm, revoke]
