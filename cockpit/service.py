"""Cockpit use-cases: accept transfer records from the broker, show citizens their transfers.

The service turns records into entries (leaf, citizen view, pseudonyms) and pages into views;
the store (``cockpit.store``) keeps them, the vault (``cockpit.vault``) seals and opens the
views. Errors are the cockpit's own (``cockpit.errors``); the HTTP layer maps them.
"""

import base64
import hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit.errors import InvalidRequestError
from cockpit.leaf import encode_leaf
from cockpit.store import EntryStore, NewEntry, open_store
from cockpit.vault import CitizenVault
from einmal.domain.idnr import mask_idnr
from einmal.domain.transfer import Outcome, TransferRecord
from einmal_client import tlog

__all__ = ["MAX_PAGE", "VISIBLE_FOR", "CockpitService", "IngestResult", "TransferPage",
           "TransferView"]

log = structlog.get_logger()

VISIBLE_FOR = timedelta(days=730)  # OZG § 10: the last two years
#: the most transfers one page of a citizen's feed holds
MAX_PAGE = 200
_PARENTAL_PROOFS = frozenset({"birth", "custody"})


class TransferView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    occurred_at: datetime
    outcome: str
    error_type: str | None
    proof_type: str
    data_categories: tuple[str, ...]
    service: dict[str, str]
    register: dict[str, str] | None
    intermediaries: tuple[str, ...]
    purpose: str
    purpose_text: str
    legal_basis: str
    consent_id: str | None
    subject_masked: str
    retention_until: datetime | None
    correlation_id: str | None
    relation: str = "self"
    #: position in the signed transfer log; None until integrated (within about a second)
    log_index: int | None = None
    included: bool = False


_view_encoder = msgspec.json.Encoder()
_view_decoder = msgspec.json.Decoder(TransferView)


class IngestResult(TypedDict):
    accepted: int
    duplicates: int


class TransferPage(TypedDict):
    items: list[TransferView]
    #: the cursor of the next page; None on the last one
    next_cursor: str | None


class CockpitService:
    """``store``: the cockpit's store (``cockpit.store.open_store``); tools may give an
    ``engine`` (and ``read_engine``) instead, whose store is then opened here."""

    def __init__(self, *, pseudonym_key: bytes, vault: CitizenVault,
                 store: EntryStore | None = None, engine: AsyncEngine | None = None,
                 read_engine: AsyncEngine | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_ingested: Callable[[], None] = lambda: None) -> None:
        if store is None:
            if engine is None:
                msg = "give a store or an engine"
                raise TypeError(msg)
            store = open_store(engine, read_engine=read_engine)
        elif engine is not None:
            msg = "give a store or an engine, not both"
            raise TypeError(msg)
        self._store = store
        self._vault = vault
        self._key = pseudonym_key
        self._clock = clock
        self._on_ingested = on_ingested

    def pseudonym(self, idnr: str) -> str:
        """The citizen's keyed pseudonym (HMAC-SHA256): the only form the store holds."""
        return hmac.digest(self._key, idnr.encode(), "sha256").hex()

    async def ingest(self, records: Sequence[TransferRecord]) -> IngestResult:
        """Store a batch in order. Idempotent by transfer id: a repeated record is counted as
        a duplicate and changes nothing. The readers of each record are the same as if the
        records were stored one by one (``cockpit.readers``)."""
        now = self._clock()
        refs: dict[str, str] = {}  # every IdNr of the batch -> its pseudonym, computed once
        entries = [self._entry(record, refs) for record in records]
        accepted = await self._store.ingest(entries, received_at=now, keys=self._vault)
        duplicates = len(records) - accepted
        log.info("cockpit.ingested", accepted=accepted, duplicates=duplicates)
        if accepted:
            self._on_ingested()
        return {"accepted": accepted, "duplicates": duplicates}

    def _entry(self, record: TransferRecord, refs: dict[str, str]) -> NewEntry:
        def ref(idnr: str) -> str:
            found = refs.get(idnr)
            if found is None:
                found = refs[idnr] = self.pseudonym(idnr)
            return found

        subject_ref = ref(record.subject)
        leaf = encode_leaf(record, subject_ref)
        return NewEntry(
            id=record.id, occurred_at=record.occurred_at, subject_ref=subject_ref,
            view=_view_encoder.encode(_view(record)), leaf=leaf, leaf_hash=tlog.leaf_hash(leaf),
            service_id=record.service.id,
            register_id=record.register.id if record.register else None,
            named_refs=tuple(ref(c.idnr) for c in record.concerned if c.idnr != record.subject),
            names_parents=(record.outcome is Outcome.DELIVERED
                           and record.proof_type in _PARENTAL_PROOFS))

    async def transfers_of(self, idnr: str, *, limit: int = 50, cursor: str | None = None,
                           ) -> TransferPage:
        """A page of the transfers the citizen may see (their own, their children's, those
        naming them) of the last two years, newest first. Shredded entries are left out."""
        if not 1 <= limit <= MAX_PAGE:
            msg = f"limit: between 1 and {MAX_PAGE}."
            raise InvalidRequestError(msg)
        after = _decode_cursor(cursor) if cursor else None
        rows = await self._store.feed(self.pseudonym(idnr), since=self._clock() - VISIBLE_FOR,
                                      limit=limit + 1, after=after)
        items = []
        for row in rows[:limit]:
            if row.sealed_view is None or row.wrapped_key is None:  # shredded
                continue
            key = self._vault.key(row.subject_ref, row.wrapped_key)
            view = _view_decoder.decode(self._vault.open(key, row.transfer_id, row.sealed_view))
            items.append(msgspec.structs.replace(
                view, relation=row.relation, log_index=row.log_index,
                included=row.log_index is not None))
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(last.occurred_at, last.transfer_id)
        return {"items": items, "next_cursor": next_cursor}


def _view(record: TransferRecord) -> TransferView:
    return TransferView(
        id=record.id, occurred_at=record.occurred_at, outcome=record.outcome.value,
        error_type=record.error_type, proof_type=record.proof_type,
        data_categories=record.data_categories,
        service=msgspec.structs.asdict(record.service),
        register=msgspec.structs.asdict(record.register) if record.register else None,
        intermediaries=record.intermediaries, purpose=record.purpose,
        purpose_text=record.purpose_text, legal_basis=record.legal_basis,
        consent_id=record.consent_id, subject_masked=mask_idnr(record.subject),
        retention_until=record.retention_until, correlation_id=record.correlation_id)


def _encode_cursor(occurred_at: datetime, transfer_id: str) -> str:
    raw = f"{occurred_at.isoformat()}|{transfer_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, transfer_id = raw.split("|", 1)
        return datetime.fromisoformat(when), transfer_id
    except ValueError as exc:
        msg = "cursor: not a cursor from this API."
        raise InvalidRequestError(msg) from exc
