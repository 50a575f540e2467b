"""The source model's pages besides the overview (issue 15): the picker and the query, an
entry's detail with its content data ("Persönliche Daten anfragen"), and the PDF of what the
session shows. Everything is asked through the desk (``web.sources``) and lives only in its
memory for this session; without a desk these pages do not exist (404).
"""

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery

from cockpit.sources.model import MergedEntry, SourceDesk
from cockpit.web import merged
from cockpit.web.core import WebView
from cockpit.web.overview import PERIODS, picker_page
from cockpit.web.session import WebSession
from cockpit.web.sources_pdf import find_unicode_font, sources_report
from einmal_client.sources import (
    ContentGroup,
    InvalidSourceAnswerError,
    SourceError,
    SourceRefusedError,
    SourceUnavailableError,
)

__all__ = ["ROUTES", "error_kind"]

log = structlog.get_logger()

#: found once: the PDF's Unicode font (None: Helvetica and Latin-1)
_FONT_DIR = find_unicode_font()


def error_kind(exc: SourceError) -> str:
    """What the page says about a source's failure (never the error's own text)."""
    if isinstance(exc, SourceUnavailableError):
        return "unavailable"
    if isinstance(exc, SourceRefusedError):
        return "refused"
    if isinstance(exc, InvalidSourceAnswerError):
        return "invalid"
    return "unavailable"


def _desk(web: WebView) -> SourceDesk:
    if web.sources is None:  # a cockpit without sources: the central overview only
        raise NotFoundException
    return web.sources


def _end(web: WebView, login: WebSession) -> float:
    """When the session's answers go: when the session ends if the citizen does nothing
    (idle timeout or absolute end, whichever is first; every page request moves it on)."""
    return web.sessions.expires_at(login)


@get("/sources", name="sources", include_in_schema=False)
async def sources_page(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                       login: NamedDependency[WebSession]) -> Response[Any]:
    """The picker again ("Quellen erneut abfragen"): the last query's sources ticked."""
    desk = _desk(web)
    answers = desk.answers(login.id)
    chosen = answers.chosen if answers is not None and answers.chosen else [
        s.id for s in desk.sources]
    return picker_page(request, web, login, desk, chosen)


@post("/sources/query", name="sources_query", include_in_schema=False, status_code=303)
async def start_query(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                      login: NamedDependency[WebSession]) -> Response[Any]:
    """"Abfrage starten" (or "Alle/Keine auswählen", which only redraw the picker)."""
    desk = _desk(web)
    await web.check_csrf(request, login)
    form = await request.form()
    ticked = set(form.getall("source", []))
    action = form.get("action", "start")
    all_ids = [s.id for s in desk.sources]
    if action == "all":
        return picker_page(request, web, login, desk, all_ids)
    if action == "none":
        return picker_page(request, web, login, desk, [])
    chosen = tuple(i for i in all_ids if i in ticked)  # unknown ids are not asked
    if not chosen:
        return picker_page(request, web, login, desk, [], status=400,
                           error="sources.picker_none_chosen")
    assert login.idnr is not None  # noqa: S101 - the login dependency ensures it
    desk.open(login.id, expires_at=_end(web, login))
    result = await desk.query(login.id, login.idnr, chosen)
    log.info("web.sources_asked", sources=len(chosen), entries=len(result.entries),
             not_ok=sum(o.status != "ok" for o in result.outcomes))
    return web.redirect(request, "/")


def _entry(desk: SourceDesk, login: WebSession, handle: str,
           ) -> tuple[MergedEntry, tuple[ContentGroup, ...] | None]:
    answers = desk.answers(login.id)
    entry = merged.find_entry(answers.result if answers is not None else None, handle)
    if entry is None or answers is None:
        raise NotFoundException
    return entry, answers.contents.get(entry.key)


def _entry_page(request: Request[Any, Any, Any], web: WebView, login: WebSession,
                entry: MergedEntry, contents: tuple[ContentGroup, ...] | None, *,
                error: str | None = None, status: int = 200) -> Response[Any]:
    transfer_id = entry.entry.transfer_id
    # the receipt comes from the log (through the cockpit API): only for a logged transfer
    receipt = (f"/transfers/{transfer_id}/receipt" if transfer_id and entry.log == "logged"
               else None)
    return web.page(request, "sources/entry.html", session=login, status=status, row=entry,
                    handle=merged.entry_handle(entry.key), contents=contents, error=error,
                    receipt_url=receipt, pdf_url=merged.report_url({}),
                    category_name=merged.category_namer(web.catalogs.has, web.t(request)))


@get("/entries/{handle:str}", name="source_entry", include_in_schema=False)
async def entry_page(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                     login: NamedDependency[WebSession], handle: FromPath[str],
                     ) -> Response[Any]:
    entry, contents = _entry(_desk(web), login, handle)
    return _entry_page(request, web, login, entry, contents)


@post("/entries/{handle:str}/content", name="source_entry_content", include_in_schema=False,
      status_code=303)
async def fetch_content(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                        login: NamedDependency[WebSession], handle: FromPath[str],
                        ) -> Response[Any]:
    """"Persönliche Daten anfragen": the entry's content data from its source, kept in the
    session; a source's failure is shown as such, nothing of its answer."""
    desk = _desk(web)
    await web.check_csrf(request, login)
    entry, _ = _entry(desk, login, handle)
    assert login.idnr is not None  # noqa: S101 - the login dependency ensures it
    try:
        await desk.content(login.id, login.idnr, entry.key)
    except KeyError as exc:  # the session's result changed under the form
        raise NotFoundException from exc
    except SourceError as exc:
        kind = error_kind(exc)
        log.info("web.source_content_failed", source=entry.source.id, kind=kind,
                 error=type(exc).__name__)
        return _entry_page(request, web, login, entry, None, error=kind, status=502)
    return web.redirect(request, f"/entries/{handle}#content")


@get("/sources/report.pdf", name="sources_report", include_in_schema=False)
async def report(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                 login: NamedDependency[WebSession], source: FromQuery[str | None] = None,
                 recipient: FromQuery[str | None] = None, category: FromQuery[str | None] = None,
                 period: FromQuery[str | None] = None) -> Response[Any]:
    """"Als PDF speichern": the overview's rows (with its filters) and the content data
    fetched in this session."""
    desk = _desk(web)
    answers = desk.answers(login.id)
    if answers is None or answers.result is None:
        return web.redirect(request, "/")
    assert login.idnr is not None  # noqa: S101 - the login dependency ensures it
    result = answers.result
    shown = merged.filter_entries(result.entries, source=source, recipient=recipient,
                                  category=category,
                                  period=period if period in PERIODS else None)
    t = web.t(request)
    # a copy: another request of this session may add content meanwhile
    contents = dict(answers.contents)
    # fpdf2's line breaking takes a while per row: in a worker thread, not the event loop
    content = await asyncio.to_thread(
        sources_report, result, shown, contents, idnr=login.idnr, t=t,
        category=merged.category_namer(web.catalogs.has, t), generated=datetime.now(UTC),
        font_dir=_FONT_DIR)
    return Response(content=content, media_type="application/pdf", headers={
        "content-disposition": 'attachment; filename="einmal-datenschutzcockpit.pdf"',
        "cache-control": "no-store"})


ROUTES = [sources_page, start_query, entry_page, fetch_content, report]
