"""The source model's types, shared by the desk (``cockpit.sources.desk``) and the web view
(``cockpit.web``): what a citizen's session holds after it asked the sources (issue 15).

Nothing here is stored: a ``SessionAnswers`` lives in this process's memory for one web
session and is dropped at logout or when the session ends (decision 0034).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from einmal_client.sources import ContentGroup, SessionKey, SourceEntry

__all__ = ["EntryCheck", "MergedEntry", "QueryResult", "SessionAnswers", "SourceDesk",
           "SourceInfo", "SourceOutcome"]


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A source as its document describes it (what the picker shows)."""

    id: str                      # e.g. "standesamt:04011000" - the tokens' audience
    name: str                    # "Standesamt Bremen"
    kind: Literal["register", "broker"]
    group: str                   # what the picker groups by: "Standesämter", "Sorgeregister", ...


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    """How one asked source fared in a query."""

    source: SourceInfo
    status: Literal["ok", "late", "error"]
    #: "late": no answer by the deadline; "error": unreachable, refused, or an answer that was
    #: refused (garbage, too large, wrong key, replay, another citizen) - ``detail`` says which,
    #: in words fit for the citizen (never the source's raw answer)
    detail: str = ""
    count: int = 0               # entries it listed (ok only)
    #: why, as a stable code for the page to translate: "late", or for "error" one of
    #: "unavailable", "refused", "invalid", "too-much", "not-set-up"; "" when ok
    reason: str = ""


#: the transparency log's view of an entry that went through the broker (item 6):
#: "logged" - its inclusion proof checks against the published, signed checkpoint;
#: "pending" - the log has it but no published checkpoint covers it yet;
#: "missing" - the source names a broker transfer the log does not have (flagged);
#: "not-applicable" - the entry did not go through the broker
EntryCheck = Literal["logged", "pending", "missing", "not-applicable"]


@dataclass(frozen=True, slots=True)
class MergedEntry:
    """One row of the overview: a source's protocol entry with its log check."""

    key: str                     # stable within the session: "<source id>/<entry id>"
    source: SourceInfo
    entry: SourceEntry
    log: EntryCheck = "not-applicable"
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One query over the chosen sources, merged: newest first."""

    asked_at: datetime
    outcomes: tuple[SourceOutcome, ...]
    entries: tuple[MergedEntry, ...]
    #: transfers the log holds about this citizen that no asked source reported (flagged):
    #: (transfer id, occurred_at, register id) - pseudonymous log metadata only
    unreported: tuple[tuple[str, datetime, str], ...] = ()


@dataclass(slots=True)
class SessionAnswers:
    """What one web session holds, in memory only."""

    session_key: SessionKey
    expires_at: float            # epoch seconds: dropped after this
    chosen: tuple[str, ...] = ()
    result: QueryResult | None = None
    #: content data fetched for an entry, by ``MergedEntry.key``
    contents: dict[str, tuple[ContentGroup, ...]] = field(default_factory=dict)


class SourceDesk(Protocol):
    """The cockpit's desk that asks the sources (``cockpit.sources.desk.Desk``)."""

    @property
    def sources(self) -> tuple[SourceInfo, ...]: ...

    def answers(self, session_id: str) -> SessionAnswers | None:
        """This session's answers, or None (never asked, dropped or expired)."""

    def open(self, session_id: str, *, expires_at: float) -> SessionAnswers:
        """This session's answers, made (with a fresh session key) if there are none."""

    async def query(self, session_id: str, idnr: str, source_ids: tuple[str, ...],
                    ) -> QueryResult:
        """Ask the chosen sources in parallel; answer by the deadline with what came in
        (late ones named), merge, cross-check with the log; keep it in the session."""

    async def content(self, session_id: str, idnr: str, key: str) -> tuple[ContentGroup, ...]:
        """The content data of one merged entry, fetched from its source (kept in the
        session). ``KeyError``: no such entry in this session's result;
        ``einmal_client.sources.SourceError``: the source failed or its answer was refused."""

    def drop(self, session_id: str) -> None:
        """Forget everything of this session (logout, session end)."""
