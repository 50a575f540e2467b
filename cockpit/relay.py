"""The citizen API in the source model (issue 15 §7): the cockpit relays, it does not read.

A citizen's own client (``einmal_client.client.CitizenClient.source_query``) makes an X25519
session key and sends its public half; the cockpit asks the chosen sources in parallel with
the citizen's IdNr (from the verified citizen token) and that key, and hands back each
source's envelope unopened. The answers are signed by the source and encrypted to the
citizen's key: the cockpit cannot read them, nor change them unnoticed, and keeps nothing
(decision 0034). The web view, which renders HTML on the server, uses the desk
(``cockpit.sources.desk``) instead; both read the same source documents.

Wire format (docs/api.md, "Datenschutzcockpit API"):

* ``GET /v1/me/sources`` -> ``{"items": [{id, name, kind, group, key}]}`` (``key``: the
  source's public signing key, a JWK set, so the client can check the signature);
* ``POST /v1/me/source-queries`` ``{"session_key": <X25519 JWK>, "sources"?: [ids]}`` ->
  ``{"answers": [{source, status: ok|late|error, detail, envelope}]}`` by the deadline;
* ``POST /v1/me/source-queries/content`` ``{"session_key", "source", "entry_id"}`` ->
  ``{"source", "envelope"}``, or a problem (``source-unavailable`` 502/504 with the source
  named).
"""

import asyncio
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec
import structlog

from cockpit.sources.clients import NoKeyError, SourceClients
from cockpit.sources.desk import INVALID, NOT_SET_UP, REFUSED, UNAVAILABLE
from einmal.problems import ProblemError
from einmal_client.sources import (
    Envelope,
    InvalidSourceAnswerError,
    SourceError,
    SourceRefusedError,
    SourceUnavailableError,
    public_session_key,
)

__all__ = ["ContentQuery", "Relay", "RelayedAnswer", "RelayedContent", "SourceItem",
           "SourceList", "SourceQuery", "SourceQueryAnswer"]

log = structlog.get_logger()

SourceId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class SourceQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a citizen's client asks for: its session's public key, and which sources (all
    when left out)."""

    session_key: dict[str, str]
    sources: Annotated[list[SourceId], msgspec.Meta(max_length=500)] | None = None


class ContentQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_key: dict[str, str]
    source: SourceId
    entry_id: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class SourceItem(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    kind: str
    group: str
    #: the source's public signing key (JWK or JWK set); None while the cockpit lacks it
    key: dict[str, Any] | None


class SourceList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SourceItem]


class RelayedAnswer(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    status: Literal["ok", "late", "error"]
    detail: str = ""
    envelope: Envelope | None = None


class SourceQueryAnswer(msgspec.Struct, frozen=True, kw_only=True):
    answers: list[RelayedAnswer]


class RelayedContent(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    envelope: Envelope


def _session_key(jwk: Mapping[str, Any]) -> None:
    try:
        public_session_key(jwk)
    except ValueError as exc:
        raise ProblemError("invalid-request", str(exc)) from exc


class Relay:
    """Asks sources for a citizen's own client and hands back their envelopes unopened.

    ``deadline_s``: how long a query waits (a late source is named, its request dropped -
    the client may ask it again); ``timeout_s``: one content request's limit."""

    def __init__(self, clients: SourceClients, *, deadline_s: float, timeout_s: float) -> None:
        self._clients = clients
        self._specs = clients.specs
        self._deadline = deadline_s
        self._timeout = timeout_s

    def sources(self) -> SourceList:
        return SourceList(items=[
            SourceItem(id=spec.id, name=spec.info.name, kind=spec.info.kind,
                       group=spec.info.group, key=self._clients.public_key(spec.id))
            for spec in self._specs.values()])

    def _chosen(self, asked: Sequence[str] | None) -> list[str]:
        if asked is None:
            return list(self._specs)
        unknown = sorted(set(asked) - set(self._specs))
        if unknown:
            raise ProblemError("invalid-request", f"Unknown sources: {', '.join(unknown[:5])}.")
        return list(dict.fromkeys(asked))

    async def _list(self, source_id: str, idnr: str, jwk: Mapping[str, Any],
                    ) -> RelayedAnswer:
        try:
            envelope = await self._clients.get(source_id).relay_list(idnr, jwk)
        except NoKeyError:
            return RelayedAnswer(source=source_id, status="error", detail=NOT_SET_UP)
        except SourceUnavailableError:
            return RelayedAnswer(source=source_id, status="error", detail=UNAVAILABLE)
        except SourceRefusedError:
            return RelayedAnswer(source=source_id, status="error", detail=REFUSED)
        except SourceError as exc:  # InvalidSourceAnswerError: not an answer to this request
            log.warning("relay.invalid_answer", source=source_id, reason=str(exc)[:200])
            return RelayedAnswer(source=source_id, status="error", detail=INVALID)
        return RelayedAnswer(source=source_id, status="ok", envelope=envelope)

    async def query(self, idnr: str, query: SourceQuery) -> SourceQueryAnswer:
        """Every chosen source asked in parallel; by the deadline, what came in."""
        _session_key(query.session_key)
        chosen = self._chosen(query.sources)
        tasks = {asyncio.create_task(self._list(s, idnr, query.session_key)): s
                 for s in chosen}
        done, late = await asyncio.wait(tasks, timeout=self._deadline) if tasks else (set(), set())
        for task in late:
            task.cancel()
        answers = {tasks[t]: t.result() for t in done}
        return SourceQueryAnswer(answers=[
            answers.get(s) or RelayedAnswer(source=s, status="late",
                                            detail=f"no answer within {self._deadline:g} s")
            for s in chosen])

    async def content(self, idnr: str, query: ContentQuery) -> RelayedContent:
        """One entry's content data from its source, relayed."""
        _session_key(query.session_key)
        self._chosen([query.source])
        try:
            envelope = await asyncio.wait_for(self._clients.get(query.source).relay_content(
                idnr, query.entry_id, query.session_key), self._timeout)
        except NoKeyError as exc:
            raise ProblemError("source-unavailable",
                               f"{query.source} cannot be asked yet.") from exc
        except SourceRefusedError as exc:
            if exc.status == 404:
                raise ProblemError("not-found", "The source has no such entry about you.",
                                   ) from exc
            raise ProblemError("source-unavailable",
                               f"{query.source} refused the request.") from exc
        except (TimeoutError, SourceUnavailableError, InvalidSourceAnswerError,
                SourceError) as exc:
            raise ProblemError("source-unavailable",
                               f"{query.source} gave no usable answer.") from exc
        return RelayedContent(source=query.source, envelope=envelope)
