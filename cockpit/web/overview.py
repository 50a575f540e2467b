"""Overview: transfers about me and my children (last two years), filters, monthly chart."""

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from cockpit.web.core import BERLIN, WebView
from cockpit.web.session import WebSession

__all__ = ["ROUTES", "chart", "filter_options", "filter_transfers"]

PAGE_SIZE = 20
PERIODS = {"30d": 30, "90d": 90, "1y": 365, "2y": 730}
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


def chart(items: list[dict[str, Any]], *, months: int = 24, now: datetime | None = None,
          ) -> dict[str, Any]:
    """Transfers per month for the last ``months`` months: bars for the SVG and table rows."""
    current = (now or datetime.now(UTC)).astimezone(BERLIN)
    keys: list[tuple[int, int]] = []
    year, month = current.year, current.month
    for _ in range(months):
        keys.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    keys.reverse()
    counts = dict.fromkeys(keys, 0)
    for item in items:
        when = _when(item).astimezone(BERLIN)
        if (when.year, when.month) in counts:
            counts[(when.year, when.month)] += 1
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


@get("/", name="overview", include_in_schema=False)
async def overview(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                   login: NamedDependency[WebSession], service: FromQuery[str | None] = None,
                   register: FromQuery[str | None] = None, proof_type: FromQuery[str | None] = None,
                   outcome: FromQuery[str | None] = None, period: FromQuery[str | None] = None,
                   page: FromQuery[int] = 1, idnr: FromQuery[str | None] = None) -> Response[Any]:
    assert login.access_token is not None  # noqa: S101 - the login dependency ensures it
    items = await web.api.all_transfers(login.access_token)
    chosen = {"service": service or "", "register": register or "",
              "proof_type": proof_type or "", "outcome": outcome if outcome in OUTCOMES else "",
              "period": period if period in PERIODS else ""}
    shown = filter_transfers(items, service=chosen["service"] or None,
                             register=chosen["register"] or None,
                             proof_type=chosen["proof_type"] or None,
                             outcome=chosen["outcome"] or None, period=chosen["period"] or None)
    pages = max(1, -(-len(shown) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    notice = login.notice
    if notice:
        login.notice = None
        await web.sessions.save(login)
    return web.page(
        request, "overview.html", session=login, notice=notice, chosen=chosen,
        options=filter_options(items), outcomes=OUTCOMES, periods=list(PERIODS),
        items=shown[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], total=len(shown),
        all_total=len(items), page=page, pages=pages,
        prev_url=web.url_with(request, page=page - 1) if page > 1 else None,
        next_url=web.url_with(request, page=page + 1) if page < pages else None,
        chart=chart(shown), show_idnr=idnr == "show",
        idnr_full=login.idnr, idnr_toggle=web.url_with(
            request, idnr=None if idnr == "show" else "show"))


ROUTES = [overview]
