"""The broker as a source of the Datenschutzcockpit (issue 15 §5): the same source interface
the registers serve (``einmal.source_interface``), over the broker's own protocol (§ 9 IDNrG,
broker/protocol.py, decision 0031), at ``<broker>/dsc/protokolldaten``, ``/dsc/inhaltsdaten``
and ``/dsc/status``. Decision 0035.

* Its id is ``broker:<host[:port]>`` of the broker's public base URL (``broker_source_id``):
  the cockpit's tokens name it as their audience, a source document names it; its name
  "Einmal-Vermittlung".
* The listing: every transfer the broker *delivered* in the last two years whose protocol entry
  names the citizen's keyed pseudonym (the subject, or concerned: a parent named in a child's
  birth proof), found through ``broker_protocol_subject``. Refusals and failures stay in the
  protocol and the transparency log, but no data went out: they are no "Datenübermittlung".
  The entry id is the transfer id (``transfer_id`` too): the cockpit matches it against the
  log and against the register's entry of the same transfer.
* The content: the broker keeps no content (decision 0031), so the answer says what it
  relayed - service, purpose, basis, the data categories, the register the data came from -
  and where the content is: "beim Register anfragen" (a 200 answer, not a 404: the entry
  exists and the citizen should learn where its content is).
* Answers are signed with ``broker-source`` (Ed25519; ``broker-source.public.json`` is what
  a source document names); the cockpit's tokens are checked with
  ``cockpit-sources.public.json`` in the broker's keys dir; request token ids are remembered
  in the broker's database until they expire (``BrokerStore.use_source_token``).
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import msgspec
from litestar import Router

from broker.protocol import ProtocolEntry, Pseudonyms
from broker.retention import PROTOCOL_YEARS, years_before
from broker.store import BrokerStore, ProtocolHit
from einmal.domain.transfer import Outcome
from einmal.keys import SigningKey
from einmal.source_interface import CockpitKeys, Source, SourceReadError, source_handlers
from einmal.tokens import TokenVerifier
from einmal_client.sources import ContentGroup, Recipient, SourceEntry, content_groups

__all__ = ["ANSWER_KEY", "SOURCE_NAME", "BrokerSource", "broker_source_id"]

#: the broker's answer signing key in its keys dir (``<name>.jwk.json``, ``.public.json``)
ANSWER_KEY = "broker-source"
SOURCE_NAME = "Einmal-Vermittlung"
#: what the content answer says about where the content is
CONTENT_AT_REGISTER = "beim Register anfragen"
_PROOF_NAMES = {"birth": "Geburtsnachweis", "custody": "Sorgerechtsnachweis",
                "income": "Einkommensnachweis"}
_decode_entry = msgspec.json.Decoder(ProtocolEntry).decode


def broker_source_id(base_url: str) -> str:
    """The broker's source id: ``broker:`` and the host (and port) of its public base URL,
    e.g. ``broker:einmal.bremen.de`` or ``broker:127.0.0.1:8000`` - stable as long as the
    broker's address is."""
    netloc = urlsplit(base_url).netloc.lower()
    if not netloc:
        msg = f"not a base URL: {base_url!r}"
        raise ValueError(msg)
    return f"broker:{netloc}"


def _plus_years(when: datetime, years: int) -> datetime:
    return years_before(when, -years)


class BrokerSource:
    """The broker's protocol as a source (``einmal.source_interface.SourceBackend``).

    ``keys_dir``: where the cockpit's public key is read from (None: it answers nobody);
    ``clock``: the broker's (epoch seconds)."""

    def __init__(self, *, store: BrokerStore, pseudonyms: Pseudonyms, source_id: str,
                 answer_key: SigningKey, keys_dir: Path | None,
                 clock: Callable[[], float], cockpit_issuer: str = "einmal-cockpit",
                 name: str = SOURCE_NAME) -> None:
        self._store = store
        self._pseudonym = pseudonyms
        self.source = Source(id=source_id, name=name)
        self._answer_key = answer_key
        self._cockpit = CockpitKeys(keys_dir, issuer=cockpit_issuer)
        self._clock = clock

    # -- SourceBackend -------------------------------------------------------------------------
    @property
    def answer_key(self) -> SigningKey:
        return self._answer_key

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def verifier(self, source_id: str) -> TokenVerifier | None:
        return self._cockpit.verifier(source_id)

    async def use_token_id(self, token_id: str, *, expires_at: datetime) -> bool:
        return await self._store.use_source_token(token_id, expires_at, self.now())

    def _since(self) -> datetime:
        return years_before(self.now(), PROTOCOL_YEARS)

    async def entries(self, source_id: str, idnr: str) -> Sequence[SourceEntry]:
        hits = await self._store.protocol_of(self._pseudonym(idnr), since=self._since())
        found = [(hit, _entry(hit)) for hit in hits]
        return [self._view(hit, entry) for hit, entry in found
                if entry.outcome == Outcome.DELIVERED.value]

    async def content(self, source_id: str, idnr: str, entry_id: str,
                      ) -> Sequence[ContentGroup] | None:
        hit = await self._store.protocol_entry_of(self._pseudonym(idnr), entry_id,
                                                  since=self._since())
        if hit is None:
            return None
        entry = _entry(hit)
        if entry.outcome != Outcome.DELIVERED.value:
            return None
        return _relayed(entry)

    # -- the view ------------------------------------------------------------------------------
    def _view(self, hit: ProtocolHit, entry: ProtocolEntry) -> SourceEntry:
        service = entry.service
        return SourceEntry(
            id=entry.id, occurred_at=entry.occurred_at, source=self.source.id,
            source_name=self.source.name,
            recipient=Recipient(service_id=service.id, service_name=service.name,
                                authority=service.authority),
            intermediary=None, purpose=entry.purpose, legal_basis=entry.legal_basis,
            consent_id=entry.consent_id, data_categories=entry.data_categories,
            relation="self" if hit.relation == "self" else "concerned",
            retention_until=_plus_years(entry.occurred_at, PROTOCOL_YEARS),
            transfer_id=entry.id)

    def router(self) -> Router:
        """``/dsc/protokolldaten``, ``/dsc/inhaltsdaten``, ``/dsc/status``."""
        source = self.source

        def resolve(_: Mapping[str, Any]) -> Source:
            return source

        return Router(path="/dsc", route_handlers=source_handlers(self, "", resolve),
                      include_in_schema=False)


def _entry(hit: ProtocolHit) -> ProtocolEntry:
    try:
        return _decode_entry(hit.protocol)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        msg = "a protocol entry does not decode"
        raise SourceReadError(msg) from exc


_BERLIN = ZoneInfo("Europe/Berlin")


def _relayed(entry: ProtocolEntry) -> tuple[ContentGroup, ...]:
    """What the broker can say about a transfer it relayed: everything but the content."""
    register = entry.register
    return content_groups({
        "Vermittlung": {
            "Vorgang": entry.id,
            "Zeitpunkt": f"{entry.occurred_at.astimezone(_BERLIN):%d.%m.%Y %H:%M:%S} Uhr",
            "Nachweis": _PROOF_NAMES.get(entry.proof_type, entry.proof_type),
            "Empfänger": entry.service.name,
            "Behörde": entry.service.authority,
            "Zweck": entry.purpose,
            "Rechtsgrundlage": entry.legal_basis or None,
            "Einwilligung": entry.consent_id,
            "Übermittelte Datenkategorien": list(entry.data_categories) or None,
        },
        "Herkunft der Daten": {
            "Register": register.name if register else None,
            "Registerkennung": register.id if register else None,
        },
        "Inhaltsdaten": {
            "Inhalt": CONTENT_AT_REGISTER,
            "Hinweis": "Die Vermittlung speichert keine Inhalte: sie protokolliert nur, wer "
                       "welche Daten wofür erhalten hat. Den Inhalt nennt das Register, von "
                       "dem die Daten stammen.",
        },
    })
