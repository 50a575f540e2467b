"""The PDF of what a session shows in the source model (issue 15): the merged entries, the
sources that did not answer, the log's warnings, and the content data fetched so far.

fpdf2 (decision 0016). Content data holds names as the sources sent them, which may reach
beyond Latin-1 ("Dvořák"): where DejaVu Sans is installed it is embedded (fpdf2 ``add_font``,
a subset); elsewhere the built-in Helvetica with the texts mapped to Latin-1 (``?`` for the
rest), as the transfer report does.
"""

import io
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from cockpit.sources.model import MergedEntry, QueryResult
from cockpit.web.core import _to_berlin
from cockpit.web.mydata import latin1
from einmal.domain.idnr import mask_idnr
from einmal_client.sources import ContentGroup

__all__ = ["UNICODE_FONT_DIRS", "find_unicode_font", "sources_report"]

#: where a Unicode font for the PDF is looked for (Debian: fonts-dejavu-core)
UNICODE_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),
                     Path("/usr/share/fonts/dejavu"))
_REGULAR, _BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"
_DATE = "%d.%m.%Y %H:%M"


def find_unicode_font(dirs: Sequence[Path] = UNICODE_FONT_DIRS) -> Path | None:
    """A directory with DejaVu Sans (regular and bold), or None."""
    return next((d for d in dirs if (d / _REGULAR).is_file() and (d / _BOLD).is_file()), None)


class _Writer:
    """One report: the font and the text mapping it needs."""

    def __init__(self, font_dir: Path | None) -> None:
        self.pdf = FPDF(orientation="L", format="A4")
        if font_dir is not None:
            self.pdf.add_font("DejaVu", fname=str(font_dir / _REGULAR))
            self.pdf.add_font("DejaVu", style="B", fname=str(font_dir / _BOLD))
            self.family = "DejaVu"
            self.text: Callable[[str], str] = str
        else:
            self.family = "Helvetica"
            self.text = latin1

    def font(self, size: float, *, bold: bool = False) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)

    def line(self, text: str, *, height: float = 6, indent: float = 0) -> None:
        self.pdf.set_x(self.pdf.l_margin + indent)
        self.pdf.multi_cell(0, height, self.text(text), new_x="LMARGIN", new_y="NEXT")


def _recipient(entry: MergedEntry, t: Callable[..., str]) -> str:
    recipient = entry.entry.recipient
    if recipient is None:
        return t("sources.no_recipient")
    name = recipient.service_name or recipient.service_id
    return f"{name} ({recipient.authority})" if recipient.authority else name


def _basis(entry: MergedEntry, t: Callable[..., str]) -> str:
    parts = [t("sources.basis_consent")] if entry.entry.consent_id else []
    if entry.entry.legal_basis:
        parts.append(entry.entry.legal_basis)
    return "; ".join(parts) or t("sources.no_recipient")


def _tree(writer: _Writer, groups: Sequence[ContentGroup], depth: int) -> None:
    for group in groups:
        writer.font(10, bold=True)
        writer.line(group.label, indent=depth * 5)
        writer.font(10)
        for item in group.items:
            writer.line(f"{item.label}: {item.value}", height=5, indent=depth * 5 + 3)
        _tree(writer, group.groups, depth + 1)  # at most 8 deep (check_tree)


def sources_report(result: QueryResult, entries: Sequence[MergedEntry],
                   contents: Mapping[str, Sequence[ContentGroup]], *, idnr: str,
                   t: Callable[..., str], category: Callable[[str], str], generated: datetime,
                   font_dir: Path | None = None) -> bytes:
    """``entries``: the rows the overview shows (filtered); ``contents``: the content data
    fetched in this session, by entry key (only those of ``entries`` are printed);
    ``font_dir``: DejaVu Sans to embed (``find_unicode_font``), None: Helvetica, Latin-1."""
    writer = _Writer(font_dir)
    pdf = writer.pdf
    pdf.set_title(writer.text(t("sources.pdf_title")))
    pdf.set_author("Einmal")
    pdf.set_creator("Einmal Datenschutzcockpit")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    writer.font(16, bold=True)
    writer.line(t("sources.pdf_title"), height=10)
    writer.font(10)
    for text in (t("sources.pdf_idnr", idnr=mask_idnr(idnr)),
                 t("sources.pdf_generated", when=_to_berlin(generated).strftime(_DATE),
                   asked=_to_berlin(result.asked_at).strftime(_DATE)),
                 t("sources.pdf_count", count=len(entries)), t("sources.pdf_note")):
        writer.line(text)
    for outcome in result.outcomes:
        if outcome.status == "late":
            writer.line(t("sources.late", name=outcome.source.name))
        elif outcome.status == "error":
            reason = (f"sources.reason_{outcome.reason.replace('-', '_')}" if outcome.reason
                      else "sources.error_text")
            writer.line(t("sources.error", name=outcome.source.name) + " - " + t(reason))
    if result.unreported:
        writer.font(10, bold=True)
        writer.line(t("sources.unreported"))
        writer.font(10)
        for transfer_id, when, register in result.unreported:
            writer.line(t("sources.unreported_item", when=_to_berlin(when).strftime(_DATE),
                          register=register, id=transfer_id), indent=3)
    pdf.ln(3)
    writer.font(8)
    headings = [t("sources.col_when"), t("sources.col_recipient"), t("sources.col_source"),
                t("sources.purpose"), t("sources.basis"), t("sources.col_categories"),
                t("sources.col_log")]
    with pdf.table(col_widths=(24, 55, 40, 55, 45, 38, 20), text_align="LEFT",
                   headings_style=FontFace(emphasis="BOLD"), line_height=4) as table:
        row = table.row()
        for heading in headings:
            row.cell(writer.text(heading))
        for entry in entries:
            row = table.row()
            values = [_to_berlin(entry.entry.occurred_at).strftime(_DATE),
                      _recipient(entry, t), entry.source.name,
                      entry.entry.purpose or t("sources.no_recipient"), _basis(entry, t),
                      ", ".join(category(c) for c in entry.entry.data_categories)
                      or t("sources.no_categories"),
                      t("sources.log_" + entry.log.replace("-", "_"))]
            for value in values:
                row.cell(writer.text(value))
    fetched = [e for e in entries if e.key in contents]
    if fetched:
        pdf.ln(4)
        writer.font(13, bold=True)
        writer.line(t("sources.pdf_contents"), height=8)
        for entry in fetched:
            pdf.ln(2)
            writer.font(11, bold=True)
            writer.line(t("sources.pdf_entry",
                          date=_to_berlin(entry.entry.occurred_at).strftime(_DATE),
                          recipient=_recipient(entry, t)))
            groups = contents[entry.key]
            if groups:
                _tree(writer, groups, 0)
            else:
                writer.font(10)
                writer.line(t("sources.content_empty"))
    out = io.BytesIO()
    pdf.output(out)
    return out.getvalue()
