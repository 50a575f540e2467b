"""My data: download my transfers as JSON and as a PDF report (fpdf2, decision 0016)."""

import asyncio
import io
from datetime import UTC, datetime
from typing import Any

import msgspec
from fpdf import FPDF
from fpdf.fonts import FontFace
from litestar import Request, Response, get
from litestar.di import NamedDependency

from cockpit.web.core import WebView, _to_berlin
from cockpit.web.session import WebSession
from einmal.domain.idnr import mask_idnr

__all__ = ["ROUTES", "latin1", "pdf_report"]

_json = msgspec.json.Encoder()
_PLAIN = str.maketrans({
    "\N{LEFT DOUBLE QUOTATION MARK}": '"', "\N{RIGHT DOUBLE QUOTATION MARK}": '"',
    "\N{DOUBLE LOW-9 QUOTATION MARK}": '"', "\N{EN DASH}": "-", "\N{EM DASH}": "-",
    "\N{LEFT SINGLE QUOTATION MARK}": "'", "\N{RIGHT SINGLE QUOTATION MARK}": "'",
    "\N{HORIZONTAL ELLIPSIS}": "..."})


def latin1(text: str) -> str:
    """The PDF core fonts speak Latin-1: typographic quotes become plain, the rest '?'."""
    return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def pdf_report(items: list[dict[str, Any]], *, idnr: str, t: Any, generated: datetime,
               ) -> bytes:
    pdf = FPDF(orientation="L", format="A4")
    pdf.set_title(latin1(t("mydata.pdf_title")))
    pdf.set_author("Einmal")
    pdf.set_creator("Einmal Datenschutzcockpit")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, latin1(t("mydata.pdf_title")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for line in (t("mydata.pdf_idnr", idnr=mask_idnr(idnr)),
                 t("mydata.pdf_generated", when=_to_berlin(generated).strftime("%d.%m.%Y %H:%M")),
                 t("mydata.pdf_count", count=len(items)), t("mydata.pdf_note")):
        pdf.multi_cell(0, 6, latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", size=8)
    headings = [t("overview.col_when"), t("overview.col_who"), t("overview.col_what"),
                t("mydata.pdf_register"), t("overview.col_about"), t("transfer.purpose"),
                t("overview.col_outcome"), t("mydata.pdf_log")]
    with pdf.table(col_widths=(22, 45, 25, 35, 25, 75, 20, 15), text_align="LEFT",
                   headings_style=FontFace(emphasis="BOLD"), line_height=4) as table:
        row = table.row()
        for heading in headings:
            row.cell(latin1(heading))
        for item in items:
            row = table.row()
            values = [
                _to_berlin(item["occurred_at"]).strftime("%d.%m.%Y %H:%M"),
                f"{item['service']['name']} ({item['service']['authority']})",
                t(f"proof.{item['proof_type']}"),
                (item.get("register") or {}).get("name", "-"),
                f"{t('relation.' + item['relation'])} ({item['subject_masked']})",
                item.get("purpose_text") or item["purpose"],
                t(f"outcome.{item['outcome']}"),
                str(item["log_index"]) if item.get("log_index") is not None else "-",
            ]
            for value in values:
                row.cell(latin1(str(value)))
    out = io.BytesIO()
    pdf.output(out)
    return out.getvalue()


@get("/my-data", name="my_data", include_in_schema=False)
async def my_data(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                  login: NamedDependency[WebSession]) -> Response[Any]:
    return web.page(request, "mydata.html", session=login)


@get("/my-data/transfers.json", name="my_data_json", include_in_schema=False)
async def my_data_json(web: NamedDependency[WebView],
                       login: NamedDependency[WebSession]) -> Response[bytes]:
    assert login.access_token is not None and login.idnr is not None  # noqa: S101 - the login dependency ensures it
    items = await web.api.all_transfers(login.access_token)
    body = {"generated_at": datetime.now(UTC), "idnr_masked": mask_idnr(login.idnr),
            "count": len(items), "transfers": items}
    return Response(content=_json.encode(body), media_type="application/json",
                    headers={"content-disposition":
                             'attachment; filename="einmal-uebermittlungen.json"'})


@get("/my-data/report.pdf", name="my_data_pdf", include_in_schema=False)
async def my_data_pdf(request: Request[Any, Any, Any], web: NamedDependency[WebView],
                      login: NamedDependency[WebSession]) -> Response[bytes]:
    assert login.access_token is not None and login.idnr is not None  # noqa: S101 - the login dependency ensures it
    items = await web.api.all_transfers(login.access_token)
    # ~20 ms a row (fpdf2's line breaking): rendered in a worker thread, not the event loop
    content = await asyncio.to_thread(pdf_report, items, idnr=login.idnr, t=web.t(request),
                                      generated=datetime.now(UTC))
    return Response(content=content, media_type="application/pdf",
                    headers={"content-disposition":
                             'attachment; filename="einmal-bericht.pdf"'})


ROUTES = [my_data, my_data_json, my_data_pdf]
