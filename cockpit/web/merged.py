"""The source model's overview, as pure functions of a session's ``QueryResult`` (issue 15):
the picker's groups, the filters over ``MergedEntry`` rows, the entries' page handles.

Nothing here keeps anything: the answers live in the desk (``cockpit.sources``), in memory,
for one web session.
"""

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from cockpit.sources.model import MergedEntry, QueryResult, SourceInfo, SourceOutcome

__all__ = ["PERIODS", "category_namer", "entry_handle", "filter_entries", "filter_options",
           "find_entry", "occurred", "picker_groups", "problems", "report_url"]

#: the overview's periods (as the central overview's): days back from now
PERIODS = {"30d": 30, "90d": 90, "1y": 365, "2y": 730}


def entry_handle(key: str) -> str:
    """An entry's name in a URL: the hash of its ``MergedEntry.key`` (which holds ``:`` and
    ``/``); stable within the session, says nothing about the entry."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def find_entry(result: QueryResult | None, handle: str) -> MergedEntry | None:
    if result is None:
        return None
    return next((e for e in result.entries if entry_handle(e.key) == handle), None)


def category_namer(known: Callable[[str], bool], t: Callable[..., str],
                   ) -> Callable[[str], str]:
    """A data category's name: the catalog's (``field.<name>``) where it has one."""
    return lambda name: t(f"field.{name}") if known(f"field.{name}") else name


def picker_groups(sources: Sequence[SourceInfo], chosen: Iterable[str],
                  ) -> list[tuple[str, list[tuple[SourceInfo, bool]]]]:
    """The picker's fieldsets: the sources by ``group`` (groups in the desk's order, the
    sources of a group by name, so that one is found in a long list), each with whether it is
    ticked."""
    ticked = set(chosen)
    groups: dict[str, list[tuple[SourceInfo, bool]]] = {}
    for source in sources:
        groups.setdefault(source.group, []).append((source, source.id in ticked))
    return [(group, sorted(members, key=lambda m: m[0].name.casefold()))
            for group, members in groups.items()]


def problems(result: QueryResult) -> list[SourceOutcome]:
    """The asked sources that did not answer in time or whose answer was refused."""
    return [o for o in result.outcomes if o.status != "ok"]


def _recipient_id(entry: MergedEntry) -> str:
    recipient = entry.entry.recipient
    return recipient.service_id if recipient is not None else ""


def filter_options(entries: Sequence[MergedEntry]) -> dict[str, list[tuple[str, str]]]:
    """The values the filters offer: (value, shown name), sorted by name."""
    sources = {e.source.id: e.source.name for e in entries}
    recipients = {e.entry.recipient.service_id: e.entry.recipient.service_name
                  or e.entry.recipient.service_id
                  for e in entries if e.entry.recipient is not None}
    categories = {c for e in entries for c in e.entry.data_categories}
    return {"source": sorted(sources.items(), key=lambda kv: kv[1].lower()),
            "recipient": sorted(recipients.items(), key=lambda kv: kv[1].lower()),
            "category": [(c, c) for c in sorted(categories, key=str.lower)]}


def occurred(entry: MergedEntry) -> datetime:
    """When the transfer happened (a source's naive time is taken as UTC)."""
    when = entry.entry.occurred_at
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def filter_entries(entries: Sequence[MergedEntry], *, source: str | None = None,
                   recipient: str | None = None, category: str | None = None,
                   period: str | None = None, now: datetime | None = None,
                   ) -> list[MergedEntry]:
    since = None
    if period in PERIODS:
        since = (now or datetime.now(UTC)) - timedelta(days=PERIODS[period])
    return [e for e in entries
            if (not source or e.source.id == source)
            and (not recipient or _recipient_id(e) == recipient)
            and (not category or category in e.entry.data_categories)
            and (since is None or occurred(e) >= since)]


def report_url(chosen: Mapping[str, str]) -> str:
    """The PDF of what the overview shows with these filters."""
    query = urlencode({key: value for key, value in chosen.items() if value})
    return "/sources/report.pdf" + (f"?{query}" if query else "")
