"""The tests' double of the source side: a ``SourceDesk`` that answers from fixed data and
records what the pages asked of it. The assertions are about the pages, not about it."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cockpit.sources.model import (
    EntryCheck,
    MergedEntry,
    QueryResult,
    SessionAnswers,
    SourceInfo,
    SourceOutcome,
)
from einmal_client.sources import (
    ContentGroup,
    ContentItem,
    Recipient,
    SessionKey,
    SourceEntry,
    SourceError,
)

NOW = datetime.now(UTC)
STANDESAMT = SourceInfo(id="standesamt:04011000", name="Standesamt Bremen", kind="register",
                        group="Standesämter")
SORGEREGISTER = SourceInfo(id="sorgeregister:HB", name="Sorgeregister Bremen",
                           kind="register", group="Sorgeregister")
BROKER = SourceInfo(id="broker:einmal", name="Vermittlungsstelle Einmal", kind="broker",
                    group="Vermittlungsstellen")
SOURCES = (STANDESAMT, SORGEREGISTER, BROKER)


def entry(source: SourceInfo, number: int, *, days_ago: int = 1, service: str = "elterngeld",
          service_name: str = "Elterngeld online", categories: tuple[str, ...] = ("birth",),
          log: EntryCheck = "not-applicable", transfer_id: str | None = None,
          log_index: int | None = None, purpose: str = "elterngeld-antrag",
          consent_id: str | None = None) -> MergedEntry:
    raw = SourceEntry(
        id=f"e{number}", occurred_at=NOW - timedelta(days=days_ago), source=source.id,
        source_name=source.name,
        recipient=Recipient(service_id=service, service_name=service_name,
                            authority="Elterngeldstelle Bremen"),
        intermediary="broker:einmal" if transfer_id else None, purpose=purpose,
        legal_basis="§ 9 IDNrG", consent_id=consent_id, data_categories=categories,
        transfer_id=transfer_id)
    return MergedEntry(key=f"{source.id}/e{number}", source=source, entry=raw,
                       log=log, log_index=log_index)


#: a birth proof's content as the Standesamt sent it: nested groups, a value to escape
BIRTH_CONTENT = (
    ContentGroup(label="Kind", items=(
        ContentItem(label="Vornamen", value="Émile Dvořák"),
        ContentItem(label="Bemerkung", value="<b>nicht fett</b>")), groups=(
        ContentGroup(label="Lebensdaten", items=(
            ContentItem(label="Geburtsdatum", value="2024-03-01"),
            ContentItem(label="Geburtsort", value="Bremen")), groups=(
            ContentGroup(label="Eltern", items=(
                ContentItem(label="Mutter", value="Anna Müller"),)),)),)),
)


@dataclass
class FakeDesk:
    """Answers ``result`` to every query; ``contents`` by key, or raises what is there."""

    entries: tuple[MergedEntry, ...] = ()
    outcomes: tuple[SourceOutcome, ...] = ()
    unreported: tuple[tuple[str, datetime, str], ...] = ()
    contents: Mapping[str, tuple[ContentGroup, ...] | SourceError] = field(default_factory=dict)
    sessions: dict[str, SessionAnswers] = field(default_factory=dict)
    opened: list[tuple[str, float]] = field(default_factory=list)
    queried: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    fetched: list[tuple[str, str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def sources(self) -> tuple[SourceInfo, ...]:
        return SOURCES

    def answers(self, session_id: str) -> SessionAnswers | None:
        return self.sessions.get(session_id)

    def open(self, session_id: str, *, expires_at: float) -> SessionAnswers:
        self.opened.append((session_id, expires_at))
        return self.sessions.setdefault(
            session_id, SessionAnswers(session_key=SessionKey(), expires_at=expires_at))

    async def query(self, session_id: str, idnr: str, source_ids: tuple[str, ...],
                    ) -> QueryResult:
        self.queried.append((session_id, idnr, source_ids))
        answers = self.sessions[session_id]  # KeyError unless opened, as the real desk
        result = QueryResult(asked_at=NOW, outcomes=self.outcomes, entries=self.entries,
                             unreported=self.unreported)
        answers.chosen = source_ids
        answers.result = result
        answers.contents.clear()
        return result

    async def content(self, session_id: str, idnr: str, key: str) -> tuple[ContentGroup, ...]:
        self.fetched.append((session_id, idnr, key))
        answers = self.sessions[session_id]
        if answers.result is None or key not in {e.key for e in answers.result.entries}:
            raise KeyError(key)
        found = self.contents.get(key, ())
        if isinstance(found, SourceError):
            raise found
        answers.contents[key] = found
        return found

    def drop(self, session_id: str) -> None:
        self.dropped.append(session_id)
        self.sessions.pop(session_id, None)
