"""The broker's store: ONE interface (``BrokerStore``) and the values that cross it.

Two complete backends implement it, one chosen once at start-up (``broker.store.open_store``):

* ``SqliteBrokerStore`` - a SQLite file: the hot write transactions (group commit, outbox read,
  delivery marks) in plain SQL on the engine's ``SqliteWriter`` (decision 0024);
* ``SqlAlchemyBrokerStore`` - SQLAlchemy Core for everything: PostgreSQL (several broker
  processes share the outbox), and usable on SQLite too.

One conformance suite (tests/integration/test_broker_store.py) runs against both: same rows,
same answers, same errors. Both keep a transfer record sealed while it waits for delivery and
only its protocol entry once delivered (broker/protocol.py: ``OutboxSeal``, given to the
backend at start-up), and the entry's pseudonyms in ``broker_protocol_subject`` (written and
deleted with it: the source interface's lookup, broker/source.py); both apply the retention
rules (broker/retention.py) with ``apply_retention``. Every failure of the store is a
``StoreError`` (einmal/store.py), the driver's error chained; the HTTP layer answers it with
one 503 ``store-unavailable``.
"""

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Literal, Protocol

import msgspec

from einmal.domain.transfer import TransferRecord

__all__ = ["BrokerStore", "ClaimState", "CollectResult", "ConsentUse", "IdempotentAnswer",
           "PendingTransfer", "ProtocolHit", "RetentionCutoffs", "StoredConsent",
           "StoredPreview"]

#: An Idempotency-Key claim: new ("claimed"), answered before ("done"), its first request
#: still running ("in_flight"), or used for another request body ("mismatch").
ClaimState = Literal["claimed", "done", "in_flight", "mismatch"]
#: Collecting an accepted preview: released ("collected"), no longer accepted ("gone"), or its
#: consent no longer usable ("consent"); nothing is written unless "collected".
CollectResult = Literal["collected", "gone", "consent"]


class StoredConsent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    #: keyed pseudonyms (HMAC-SHA256 with the broker's key), never the IdNr itself
    citizen_ref: str
    subject_ref: str
    subject_masked: str
    service_id: str
    proof_types: tuple[str, ...]
    purpose: str
    granted_at: datetime
    valid_until: datetime
    max_uses: int | None
    uses: int
    revoked_at: datetime | None
    preview: bool = False


class StoredPreview(msgspec.Struct, frozen=True, kw_only=True):
    """A held proof (broker/previews.py); ``sealed`` is None once destroyed."""

    id: str
    client_id: str
    citizen_ref: str
    subject_masked: str
    proof_type: str
    purpose: str
    consent_id: str | None
    state: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    sealed: bytes | None


class IdempotentAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """Complete an Idempotency-Key claim in the same transaction as the transfer record."""

    client_id: str
    key: str
    sealed_response: bytes


class ConsentUse(msgspec.Struct, frozen=True, kw_only=True):
    """Consume one use of a consent in the same transaction as the transfer record."""

    consent_id: str
    now: datetime


class PendingTransfer(msgspec.Struct, frozen=True):
    """One item of a group commit: a transfer record, the consent use it consumes and the
    Idempotency-Key answer it completes, all or nothing."""

    record: TransferRecord
    use: ConsentUse | None = None
    answer: IdempotentAnswer | None = None


class ProtocolHit(msgspec.Struct, frozen=True, kw_only=True):
    """A protocol entry found by a citizen's pseudonym: how it names them, and its JSON."""

    relation: str
    protocol: bytes


class RetentionCutoffs(msgspec.Struct, frozen=True, kw_only=True):
    """What ``apply_retention`` deletes (broker/retention.py computes these from the rules)."""

    #: Idempotency-Key answers and client-assertion ids that expired before this
    now: datetime
    #: delivered transfer rows (protocol entries) delivered before this
    protocol_before: datetime
    #: consents that ended (revoked, or valid until) before this
    consents_before: datetime
    #: ended previews (not pending or accepted) whose time was up before this
    previews_before: datetime
    #: rate-limit buckets untouched since before this (epoch seconds, as the buckets count)
    buckets_before: float


class BrokerStore(Protocol):
    """Consents, transfer records (the outbox), the client-assertion replay cache,
    Idempotency-Key answers and held previews. Every method raises ``StoreError`` (and only
    that) when the store fails; writes are committed (durably) when they return."""

    async def create_schema(self) -> None:
        """Migrate a fresh database; refuse one that is behind (``einmal db upgrade``)."""
        ...

    async def aclose(self) -> None:
        """Let queued commits finish (graceful shutdown)."""
        ...

    # -- client assertion replay cache -------------------------------------------------------
    async def remember_jti(self, client_id: str, jti: str, expires_at: datetime,
                           now: datetime) -> bool:
        """True if the ``jti`` is new; False if it was seen before (a replay). Forgets the
        ``jti``s that expired before ``now``."""
        ...

    # -- consents ------------------------------------------------------------------------------
    async def add_consent(self, consent: StoredConsent) -> None: ...

    async def consent(self, consent_id: str) -> StoredConsent | None: ...

    async def consents_of(self, citizen_ref: str) -> list[StoredConsent]:
        """The citizen's consents, newest first."""
        ...

    async def revoke_consent(self, consent_id: str, citizen_ref: str, now: datetime,
                             ) -> StoredConsent | None:
        """Revoke (idempotent: a revoked consent keeps its first time). None if the citizen
        has no such consent. Committed before this returns: later requests see it."""
        ...

    # -- Idempotency-Key -----------------------------------------------------------------------
    async def claim_idempotency(self, client_id: str, key: str, request_hash: str,
                                now: datetime, expires_at: datetime,
                                ) -> tuple[ClaimState, bytes | None]:
        """Claim ``key`` for a request: ("claimed", None) for a new key, ("done", sealed) for
        an answered one, ("in_flight", None) while the first request runs, ("mismatch", None)
        for another request body. Forgets the keys that expired before ``now``."""
        ...

    async def release_idempotency(self, client_id: str, key: str) -> None:
        """The first request failed before releasing anything: a retry may run again."""
        ...

    # -- transfer records ----------------------------------------------------------------------
    def commit_transfer(self, record: TransferRecord, use: ConsentUse | None = None,
                        answer: IdempotentAnswer | None = None) -> Awaitable[bool]:
        """Commit the transfer record durably, with the consent use and the Idempotency-Key
        answer, all or nothing. False (nothing written for this record) if the consent is
        no longer usable (revoked, expired or used up meanwhile): the caller then records a
        refusal instead. On SQLite, concurrent calls share one transaction (group commit)."""
        ...

    async def commit_transfers(self, items: Sequence[PendingTransfer]) -> list[bool]:
        """``commit_transfer`` for a batch in ONE transaction: one result per item, in order."""
        ...

    # -- the outbox ----------------------------------------------------------------------------
    async def deliver_pending(self, limit: int,
                              send: Callable[[list[bytes]], Awaitable[None]]) -> int:
        """Send one batch of undelivered records (oldest first) with ``send``, then mark them
        delivered; if ``send`` raises they stay pending (the error propagates). Returns how
        many were sent. Several processes may share the outbox on PostgreSQL (the batch is
        locked for the send); on SQLite there is one."""
        ...

    async def pending_transfers(self, limit: int) -> list[tuple[int, bytes]]:
        """The first ``limit`` undelivered records, (seq, record JSON), in ``seq`` order: opened
        from their sealed form (a record that does not open is a ``StoreError``)."""
        ...

    async def mark_delivered(self, seqs: Sequence[int], now: datetime) -> None:
        """Mark these records delivered and destroy their sealed record, in one statement:
        the protocol entry is all that stays."""
        ...

    async def mark_attempt(self, seqs: Sequence[int]) -> None:
        """Count a failed delivery attempt for these records."""
        ...

    async def outbox_status(self) -> tuple[int, datetime | None]:
        """(undelivered records, creation time of the oldest)."""
        ...

    # -- the source interface (broker/source.py) ----------------------------------------------
    async def protocol_of(self, ref: str, *, since: datetime, limit: int = 1000,
                          ) -> list[ProtocolHit]:
        """The protocol entries naming the pseudonym ``ref`` (subject or concerned) written
        since ``since``, newest first, pending or delivered."""
        ...

    async def protocol_entry_of(self, ref: str, transfer_id: str, *, since: datetime,
                                ) -> ProtocolHit | None:
        """One protocol entry, only if it names ``ref`` and is not older than ``since``."""
        ...

    async def use_source_token(self, token_id: str, expires_at: datetime,
                               now: datetime) -> bool:
        """True if the cockpit's request token id is new, False for a replay (kept until
        ``expires_at``, with the client assertions' ids). Forgets the ids expired before
        ``now``."""
        ...

    # -- previews (broker/previews.py) ---------------------------------------------------------
    async def add_preview(self, preview: StoredPreview,
                          answer: IdempotentAnswer | None = None) -> None:
        """Hold a proof; complete an Idempotency-Key claim (the 202 answer) atomically."""
        ...

    async def preview(self, request_id: str) -> StoredPreview | None: ...

    async def previews_of(self, citizen_ref: str, limit: int = 200) -> list[StoredPreview]:
        """The citizen's previews, newest first."""
        ...

    async def accept_preview(self, request_id: str, now: datetime, expires_at: datetime,
                             ) -> bool:
        """Pending and not expired -> accepted, to be collected before ``expires_at``.
        False if it was not (someone else decided, or it expired)."""
        ...

    async def finish_preview(self, request_id: str, from_states: Sequence[str], state: str,
                             now: datetime, record: TransferRecord | None) -> bool:
        """End an open preview: destroy its content and write its transfer record, atomically.
        False (nothing written) if it was no longer in ``from_states``."""
        ...

    async def collect_preview(self, request_id: str, record: TransferRecord,
                              use: ConsentUse | None) -> CollectResult:
        """Release an accepted preview: in one transaction mark it collected, destroy the
        content, consume the consent use and write the transfer record."""
        ...

    async def due_previews(self, now: datetime, limit: int) -> list[StoredPreview]:
        """Open (pending or accepted) previews whose time is up, the most overdue first."""
        ...

    async def purge_previews(self, now: datetime, forget_before: datetime) -> None:
        """Backstop: no sealed content past its expiry, whatever the state; previews that
        expired before ``forget_before`` are deleted."""
        ...

    # -- retention (broker/retention.py) -------------------------------------------------------
    async def apply_retention(self, cutoffs: RetentionCutoffs) -> dict[str, int]:
        """Delete what the retention rules no longer allow to keep; the rows deleted per table
        (every broker table with rows of its own: ``broker_transfer``, ``broker_consent``,
        ``broker_idempotency``, ``broker_assertion_jti``, ``broker_preview``,
        ``broker_bucket``). Transfer rows still waiting for delivery are never deleted, nor
        open previews (the preview desk ends those, with their transfer record)."""
        ...

    async def seal_legacy_transfers(self, limit: int) -> int:
        """Seal up to ``limit`` rows written before migration 0004 (plain record, no protocol
        entry): a delivered one keeps only its protocol entry, a pending one its sealed record
        and protocol entry. Returns how many; 0 once none is left."""
        ...
