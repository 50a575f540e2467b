"""Overview: transfers about me and my children (last two years), filters, monthly chart.

Two models (issue 15): with a source desk (``web.sources``) the overview shows what the
sources answered in this session - first the picker, then the merged entries; without one,
the central store's transfers (``/v1/me/transfers``).
"""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from cockpit.sources.model import SourceDesk
from cockpit.web import merged
from cockpit.web.core import BERLIN, WebView
from cockpit.web.session import WebSession

__all__ = ["ROUTES", "chart", "filter_options", "filter_transfers", "picker_page"]

PAGE_SIZE = 20
PERIODS = merged.PERIODS
OUTCOMES = ("delivered", "refused", "failed")


def _when(item: dict[str, Any]) -> datetime:
    value = item["occurred_at"]
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def filter_options(items: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    services = {i["service"]["id"]: i["service"]["name"] for i in items}
    registers = {i["register"]["id"]: i["register"]["name"] for i in items if i.get("register")}
    proofs = sorted({i["proof_type"] for i in items})
    return {"service": sorted(services.items(), key=lambda kv: kv[1].lower()),
            "register": sorted(registers.items(), key=lambda kv: kv[1].lower()),
            "proof_type": [(p, p) for p in proofs]}


def filter_transfers(items: list[dict[str, Any]], *, service: str | None = None,
                     register: str | None = None, proof_type: str | None = None,
                     outcome: str | None = None, period: str | None = None,
                     now: datetime | None = None) -> list[dict[str, Any]]:
    since = None
    if period in PERIODS:
        since = (now or datetime.now(UTC)) - timedelta(days=PERIODS[period])
    return [i for i in items
            if (not service or i["service"]["id"] == service)
            and (not register or (i.get("register") or {}).get("id") == register)
            and (not proof_type or i["proof_type"] == proof_type)
            and (not outcome or i["outcome"] == outcome)
            and (since is None or _when(i) >= since)]


def chart(items: Sequence[Any], *, months: int = 24, now: datetime | None = None,
          when: Callable[[Any], datetime] = _when) -> dict[str, Any]:
    """Transfers per month for the last ``months`` months: bars for the SVG and table rows.
    ``when``: an item's time (the default reads the central store's items; the source
    model's rows pass ``merged.occurred``)."""
    current = (now or datetime.now(UTC)).astimezone(BERLIN)
    keys: list[tuple[int, int]] = []
    year, month = current.year, current.month
    for _ in range(months):
        keys.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    keys.reverse()
    counts = dict.fromkeys(keys, 0)
    for item in items:
        moment = when(item).astimezone(BERLIN)
        if (moment.year, moment.month) in counts:
            counts[(moment.year, moment.month)] += 1
    top = max(counts.values()) or 1
    width, height, left, bottom, bar = 600, 180, 30, 30, 20
    plot = height - bottom - 10
    bars = []
    for index, key in enumerate(keys):
        count = counts[key]
        bar_height = round(plot * count / top)
        bars.append({"label": f"{key[1]:02d}/{key[0]}", "count": count,
                     "x": left + index * (bar + 4), "y": height - bottom - bar_height,
                     "width": bar, "height": bar_height,
                     # every third month is labelled, counted back from the current one
                     "tick": (len(keys) - 1 - index) % 3 == 0,
                     "short": f"{key[1]:02d}/{str(key[0])[2:]}"})
    return {"bars": bars, "max": top, "width": width, "height": height, "left": left,
            "baseline": height - bottom, "total": sum(counts.values())}


def picker_page(request: Request[Any, Any, Any], web: WebView, login: WebSession,
                desk: SourceDesk, chosen: Sequence[str], *, status: int = 200,
                error: str | None = None, notice: str | None = None) -> Response[Any]:
    """The sources to ask, grouped, ``chosen`` ticked; "Abfrage starten" posts them."""
    answers = desk.answers(login.id)
    return web.page(request, "sources/picker.html", session=login, status=status,
                    groups=merged.picker_groups(desk.sources, chosen), error=error,
                    notice=notice, asked=answers is not None and answers.result is not None)


async def _take_notice(web: WebView, login: WebSession) -> str | None:
    notice = login.notice
    if notice:
        login.notice = None
        await web.sessions.save(login)
    return notice


def _paged(request: Request[Any, Any, Any], web: WebView, rows: Sequence[Any], page: int,
           ) -> dict[str, Any]:
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    return {"items": rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], "total": len(rows),
            "page": page, "pages": pages,
            "prev_url": web.url_with(request, page=page - 1) if page > 1 else None,
            "next_url": web.url_with(request, page=page + 1) if page < pages else None}


def _idnr(request: Request[Any, Any, Any], web: WebView, login: WebSession, idnr: str | None,
          ) -> dict[str, Any]:
    return {"show_idnr": idnr == "show", "idnr_full": login.idnr,
            "idnr_toggle": web.url_with(request, idnr=None if idnr == "show" else "show")}


async def _sources_overview(request: Request[Any, Any, Any], web: WebView, login: WebSession,
                            desk: SourceDesk, query: dict[str, str | None], page: int,
                            idnr: str | None) -> Response[Any]:
    answers = desk.answers(login.id)
    notice = await _take_notice(web, login)
    if answers is None or answers.result is None:
        return picker_page(request, web, login, desk, [s.id for s in desk.sources],
                           notice=notice)
    result = answers.result
    entries = result.entries
    options = merged.filter_options(entries)
    known = {key: {value for value, _ in values} for key, values in options.items()}
    chosen = {key: value if value in known[key] else "" for key, value in query.items()
              if key != "period"}
    chosen["period"] = query["period"] if query["period"] in PERIODS else ""
    shown = merged.filter_entries(entries, source=chosen["source"] or None,
                                  recipient=chosen["recipient"] or None,
                                  category=chosen["category"] or None,
                                  period=chosen["period"] or None)
    return web.page(
        request, "sources/overview.html", session=login, notice=notice, result=result,
        problems=merged.problems(result), chosen=chosen, options=options,
        periods=list(PERIODS), all_total=len(entries), handle=merged.entry_handle,
        category_name=merged.category_namer(web.catalogs.has, web.t(request)),
        has_content=set(answers.contents), chart=chart(shown, when=merged.occurred),
        pdf_url=merged.report_url(chosen),
        **_paged(request, web, shown, page), **_idnr(request, web, login, idnr))


@get("/", name="overview", include_in_schema=False)
async def overview(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                   login: NamedDependency[WebSession], service: FromQuery[str | None] = None,
                   register: FromQuery[str | None] = None, proof_type: FromQuery[str | None] = None,
                   outcome: FromQuery[str | None] = None, period: FromQuery[str | None] = None,
                   source: FromQuery[str | None] = None, recipient: FromQuery[str | None] = None,
                   category: FromQuery[str | None] = None,
                   page: FromQuery[int] = 1, idnr: FromQuery[str | None] = None) -> Response[Any]:
    if web.sources is not None:
        return await _sources_overview(
            request, web, login, web.sources,
            {"source": source, "recipient": recipient, "category": category, "period": period},
            page, idnr)
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    items = await web.api.all_transfers(login.access_token)
    chosen = {"service": service or "", "register": register or "",
              "proof_type": proof_type or "", "outcome": outcome if outcome in OUTCOMES else "",
              "period": period if period in PERIODS else ""}
    shown = filter_transfers(items, service=chosen["service"] or None,
                             register=chosen["register"] or None,
                             proof_type=chosen["proof_type"] or None,
                             outcome=chosen["outcome"] or None, period=chosen["period"] or None)
    notice = await _take_notice(web, login)
    return web.page(
        request, "overview.html", session=login, notice=notice, chosen=chosen,
        options=filter_options(items), outcomes=OUTCOMES, periods=list(PERIODS),
        all_total=len(items), chart=chart(shown), **_paged(request, web, shown, page),
        **_idnr(request, web, login, idnr))


ROUTES = [overview]
