"""The desk: asks the sources for a citizen's session and holds the answers (issue 15 §3, §4).

``query`` asks the chosen sources in parallel and answers by the deadline with what came in.
A source not done by then is named "late"; its request keeps running up to the hard timeout
and its answer is folded into the session's result when it comes (the next page shows it).
An error of a source (unreachable, refused, an answer refused by the client: garbage, too
large, wrong key, a replay, another citizen) is named with a short reason and nothing of its
answer is kept. The merged entries are cross-checked with the transparency log
(``cockpit.sources.logcheck``). Everything is held in memory for the session
(``cockpit.sources.holding``) and nowhere else.
"""

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
import structlog

from cockpit.sources.clients import NoKeyError, SourceClients
from cockpit.sources.documents import SourceSpec
from cockpit.sources.holding import Holding, Slot
from cockpit.sources.logcheck import LogCheck
from cockpit.sources.model import (
    MergedEntry,
    QueryResult,
    SessionAnswers,
    SourceInfo,
    SourceOutcome,
)
from einmal_client.sources import (
    ContentGroup,
    InvalidSourceAnswerError,
    SessionKey,
    SourceEntry,
    SourceError,
    SourceRefusedError,
    SourceTokenSigner,
    SourceUnavailableError,
)

__all__ = ["MAX_ENTRIES", "Desk"]

log = structlog.get_logger()

#: the most entries one source may list in one answer (more: refused as "too much")
MAX_ENTRIES = 5_000
#: what the citizen reads about a source that failed (the web view may translate by status)
UNAVAILABLE = "not reachable or no answer in time"
REFUSED = "refused the cockpit's request"
INVALID = "answered something the cockpit refused (unreadable, not for this session or person)"
TOO_MUCH = "answered too much"
NOT_SET_UP = "cannot be asked yet: the cockpit lacks its key"
#: detail -> the outcome's stable reason code (``SourceOutcome.reason``)
REASONS = {UNAVAILABLE: "unavailable", REFUSED: "refused", INVALID: "invalid",
           TOO_MUCH: "too-much", NOT_SET_UP: "not-set-up"}


@dataclass(frozen=True, slots=True)
class _Answer:
    outcome: SourceOutcome
    entries: tuple[SourceEntry, ...] = ()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Desk:
    """The cockpit's ``model.SourceDesk``.

    ``sources``: from the documents (``cockpit.sources.documents.load_sources``); ``signer``:
    the cockpit's request tokens; ``checks``: the log cross-check (None: every entry
    "not-applicable", nothing unreported); ``deadline_s``: how long ``query`` waits;
    ``timeout_s``: the hard limit of one request to a source (a late one included);
    ``transport``: the HTTP transport all sources share (one connection pool); ``clients``:
    the sources' clients, shared (then ``signer`` and ``transport`` are theirs)."""

    def __init__(self, sources: Sequence[SourceSpec], *, signer: SourceTokenSigner,
                 checks: LogCheck | None = None, deadline_s: float = 1.5,
                 timeout_s: float = 10.0, max_sessions: int = 10_000,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clients: SourceClients | None = None,
                 clock: Callable[[], float] = time.time,
                 now: Callable[[], datetime] = _utc_now) -> None:
        if not 0 < deadline_s <= timeout_s:
            msg = "0 < deadline_s <= timeout_s"
            raise ValueError(msg)
        self._specs = {s.id: s for s in sources}
        self._infos = tuple(s.info for s in sources)
        self._deadline = deadline_s
        self._timeout = timeout_s
        self._checks = checks
        self._now = now
        self._clock = clock
        #: shared with the citizen API's relay when given (one pool); else the desk's own
        self._owns_clients = clients is None
        self._sources = clients or SourceClients(sources, signer=signer, timeout_s=timeout_s,
                                                 transport=transport)
        self._holding = Holding(max_sessions=max_sessions, clock=clock)

    # -- the model's protocol ---------------------------------------------------------------

    @property
    def sources(self) -> tuple[SourceInfo, ...]:
        return self._infos

    def answers(self, session_id: str) -> SessionAnswers | None:
        slot = self._holding.get(session_id)
        return None if slot is None else slot.answers

    def open(self, session_id: str, *, expires_at: float) -> SessionAnswers:
        slot = self._holding.get(session_id)
        if slot is None:
            slot = Slot(SessionAnswers(session_key=SessionKey(), expires_at=expires_at))
            self._holding.put(session_id, slot)
        else:
            slot.answers.expires_at = expires_at
        return slot.answers

    def drop(self, session_id: str) -> None:
        self._holding.drop(session_id)

    async def query(self, session_id: str, idnr: str, source_ids: tuple[str, ...],
                    ) -> QueryResult:
        """See ``model.SourceDesk.query``. ``KeyError``: the session was not opened (or has
        ended); ``ValueError``: an id that is no source's."""
        slot = self._holding.get(session_id)
        if slot is None:
            msg = "no such session: open it first"
            raise KeyError(msg)
        unknown = [s for s in source_ids if s not in self._specs]
        if unknown:
            msg = f"no such source: {', '.join(unknown[:5])}"
            raise ValueError(msg)
        chosen = tuple(dict.fromkeys(source_ids))
        slot.cancel()  # a late answer of an earlier query is not wanted any more
        slot.generation += 1
        generation = slot.generation
        session_key = slot.answers.session_key
        asked_at = self._now()
        tasks = {asyncio.create_task(self._ask(self._specs[s].info, idnr, session_key)): s
                 for s in chosen}
        finished: dict[str, _Answer] = {}
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=self._deadline)
            finished.update((tasks[t], t.result()) for t in done)
        else:
            pending = set()
        citizen_ref = self._checks.pseudonym(idnr) if self._checks is not None else ""
        result = await self._compose(asked_at, chosen, finished, citizen_ref)
        slot.answers.chosen = chosen
        slot.answers.result = result
        slot.answers.contents.clear()
        if pending:
            late = {t: tasks[t] for t in pending}
            follow = asyncio.create_task(self._follow(slot, generation, asked_at, chosen,
                                                      finished, late, citizen_ref))
            slot.tasks.update(pending)
            slot.tasks.add(follow)
            follow.add_done_callback(slot.tasks.discard)
        return result

    async def content(self, session_id: str, idnr: str, key: str,
                      ) -> tuple[ContentGroup, ...]:
        """See ``model.SourceDesk.content``."""
        slot = self._holding.get(session_id)
        result = None if slot is None else slot.answers.result
        if slot is None or result is None:
            raise KeyError(key)
        held = slot.answers.contents.get(key)
        if held is not None:
            return held
        merged = next((e for e in result.entries if e.key == key), None)
        if merged is None:
            raise KeyError(key)
        client = self._sources.get(merged.source.id)
        try:
            answer = await asyncio.wait_for(
                client.content(idnr, merged.entry.id, slot.answers.session_key), self._timeout)
        except TimeoutError as exc:
            msg = f"{merged.source.id} did not answer in time"
            raise SourceUnavailableError(msg) from exc
        if slot.answers.result is result:  # not a new query meanwhile
            slot.answers.contents[key] = answer.groups
        return answer.groups

    async def aclose(self) -> None:
        """Forget every session, stop late requests, close the connections (its own)."""
        self._holding.clear()
        if self._owns_clients:
            await self._sources.aclose()

    # -- asking -----------------------------------------------------------------------------

    async def _ask(self, source: SourceInfo, idnr: str, session_key: SessionKey) -> _Answer:
        """One source's list, or its outcome "error" with a reason (never raises)."""
        started = time.perf_counter()
        try:
            client = self._sources.get(source.id)
            answer = await asyncio.wait_for(client.list_entries(idnr, session_key),
                                            self._timeout)
            _check_entries(answer.entries)
        except (TimeoutError, SourceUnavailableError) as exc:
            return self._failed(source, UNAVAILABLE, exc, started)
        except SourceRefusedError as exc:
            return self._failed(source, REFUSED, exc, started)
        except _TooMuchError as exc:
            return self._failed(source, TOO_MUCH, exc, started)
        except NoKeyError as exc:
            return self._failed(source, NOT_SET_UP, exc, started)
        except InvalidSourceAnswerError as exc:
            return self._failed(source, INVALID, exc, started)
        except SourceError as exc:
            return self._failed(source, INVALID, exc, started)
        log.info("sources.answered", source=source.id, entries=len(answer.entries),
                 duration_ms=round((time.perf_counter() - started) * 1000, 1))
        return _Answer(SourceOutcome(source=source, status="ok", count=len(answer.entries)),
                       answer.entries)

    @staticmethod
    def _failed(source: SourceInfo, detail: str, exc: BaseException, started: float,
                ) -> _Answer:
        # the exception's text names the source and what went wrong, never citizen data
        log.warning("sources.failed", source=source.id, error=type(exc).__name__,
                    reason=str(exc)[:200],
                    duration_ms=round((time.perf_counter() - started) * 1000, 1))
        return _Answer(SourceOutcome(source=source, status="error", detail=detail,
                                     reason=REASONS[detail]))

    async def _follow(self, slot: Slot, generation: int, asked_at: datetime,
                      chosen: tuple[str, ...], finished: dict[str, _Answer],
                      late: dict["asyncio.Task[_Answer]", str], citizen_ref: str) -> None:
        """Fold each late source's answer into the session's result as it comes."""
        remaining = set(late)
        while remaining:
            done, remaining = await asyncio.wait(remaining,
                                                 return_when=asyncio.FIRST_COMPLETED)
            finished.update((late[t], t.result()) for t in done)
            if slot.generation != generation or slot.answers.result is None:
                return
            result = await self._compose(asked_at, chosen, finished, citizen_ref)
            if slot.generation != generation:
                return
            slot.answers.result = result
            slot.tasks.difference_update(done)

    # -- merging ----------------------------------------------------------------------------

    async def _compose(self, asked_at: datetime, chosen: tuple[str, ...],
                       finished: Mapping[str, _Answer], citizen_ref: str) -> QueryResult:
        outcomes = []
        merged: list[MergedEntry] = []
        for source_id in chosen:
            info = self._specs[source_id].info
            answer = finished.get(source_id)
            if answer is None:
                outcomes.append(SourceOutcome(source=info, status="late", reason="late",
                                              detail=f"no answer within {self._deadline:g} s"))
                continue
            outcomes.append(answer.outcome)
            merged.extend(MergedEntry(key=f"{info.id}/{e.id}", source=info, entry=e)
                          for e in answer.entries)
        merged.sort(key=lambda m: (m.entry.occurred_at, m.key), reverse=True)
        unreported: tuple[tuple[str, datetime, str], ...] = ()
        if self._checks is not None and merged:
            checks = await self._checks.entry_checks(citizen_ref, [m.entry for m in merged])
            merged = [replace(m, log=check, log_index=index)
                      for m, (check, index) in zip(merged, checks, strict=True)]
        if self._checks is not None:
            answered = [o.source for o in outcomes if o.status == "ok"]
            reported = {m.entry.transfer_id for m in merged if m.entry.transfer_id}
            unreported = await self._checks.unreported(citizen_ref, reported, answered)
        return QueryResult(asked_at=asked_at, outcomes=tuple(outcomes), entries=tuple(merged),
                           unreported=unreported)


class _TooMuchError(SourceError):
    """More entries than ``MAX_ENTRIES``."""


def _check_entries(entries: Sequence[SourceEntry]) -> None:
    """Refuse a list that is too long or names one entry twice (its keys must be unique)."""
    if len(entries) > MAX_ENTRIES:
        msg = f"more than {MAX_ENTRIES} entries"
        raise _TooMuchError(msg)
    if len({e.id for e in entries}) != len(entries):
        msg = "an entry id twice"
        raise InvalidSourceAnswerError(msg)
