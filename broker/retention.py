"""Retention: what the broker keeps, and for how long (docs/retention.md has every store's
rules in one table; decision 0031 the reasons).

* ``broker_transfer``      the protocol entry (pseudonyms only) two years (§ 9 (3) IDNrG),
                           counted from delivery; the sealed record only until delivery;
                           an undelivered row is never deleted
* ``broker_consent``       two years after it ended (revoked or expired): as long as a
                           protocol entry that names it may need it (Art. 7 (1) GDPR)
* ``broker_idempotency``   its answer until it expires (24 h after the request)
* ``broker_assertion_jti`` until the assertion expires (at most 300 s)
* ``broker_preview``       content until decided or expired (service.py, previews.py); the
                           row a day after its time was up (decision 0017)
* ``broker_bucket``        a rate-limit bucket one hour after its last use

``Retention.sweep`` applies them; ``retention_sweeper`` runs it by itself (started with the
broker, every ``retention_sweep_interval_s``) and ``einmal broker shred`` on demand. Time comes
from the injected clock.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from broker.previews import KEEP_DECIDED
from broker.store import BrokerStore, RetentionCutoffs
from einmal.store import StoreError
from einmal.worker import BackgroundWorker

__all__ = ["BUCKET_IDLE", "LEGACY_BATCH", "PROTOCOL_YEARS", "Retention", "RetentionError",
           "retention_cutoffs", "retention_sweeper", "years_before"]

log = structlog.get_logger()

#: § 9 (3) IDNrG: protocol data is kept two years, then deleted without delay.
PROTOCOL_YEARS = 2
#: A rate-limit bucket untouched this long is full again: nothing is lost by forgetting it.
BUCKET_IDLE = timedelta(hours=1)
#: Rows from before migration 0004 sealed per transaction.
LEGACY_BATCH = 500


class RetentionError(ValueError):
    """A retention request the rules do not allow (e.g. shredding protocol data too early)."""


def years_before(moment: datetime, years: int) -> datetime:
    """The same calendar moment ``years`` earlier (29 February: the 28th)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February in a year without one
        return moment.replace(year=moment.year - years, day=28)


def retention_cutoffs(now: datetime, *, before: datetime | None = None) -> RetentionCutoffs:
    """The cut-offs of the rules at ``now``. ``before`` shreds protocol entries and ended
    consents up to that time instead of two years back: only earlier (an operator who keeps
    the protocol longer for a documented reason, § 9 (3) sentence 2 IDNrG), never later -
    ``RetentionError``."""
    two_years = years_before(now, PROTOCOL_YEARS)
    if before is not None and before > two_years:
        msg = (f"protocol data is kept two years (§ 9 (3) IDNrG): the date must be on or "
               f"before {two_years.isoformat(timespec='seconds')}")
        raise RetentionError(msg)
    keep_from = two_years if before is None else before
    return RetentionCutoffs(now=now, protocol_before=keep_from, consents_before=keep_from,
                            previews_before=now - KEEP_DECIDED,
                            buckets_before=(now - BUCKET_IDLE).timestamp())


class Retention:
    """The broker's retention rules over its store (module docstring)."""

    def __init__(self, store: BrokerStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def cutoffs(self, *, before: datetime | None = None) -> RetentionCutoffs:
        """The cut-offs at the clock's now (``retention_cutoffs``)."""
        return retention_cutoffs(self.now(), before=before)

    async def seal_legacy(self) -> int:
        """Seal every transfer row from before migration 0004 (broker/protocol.py); before the
        outbox delivers, which opens only sealed records. Returns how many."""
        total = 0
        while count := await self._store.seal_legacy_transfers(LEGACY_BATCH):
            total += count
        if total:
            log.info("retention.legacy_sealed", count=total)
        return total

    async def sweep(self, *, before: datetime | None = None) -> dict[str, int]:
        """Seal what is left from before 0004, then delete what the rules no longer allow to
        keep; the rows deleted per table (``sealed`` first: legacy rows sealed)."""
        cutoffs = self.cutoffs(before=before)
        sealed = await self.seal_legacy()
        deleted = {"sealed": sealed, **await self._store.apply_retention(cutoffs)}
        if any(deleted.values()):
            log.info("retention.swept", **deleted)
        return deleted


def retention_sweeper(retention: Retention, *, interval_s: float) -> BackgroundWorker:
    """Applies the retention rules every ``interval_s`` (and once soon after ``start`` if
    notified). A failed sweep is logged and retried at the next interval."""

    async def sweep() -> None:
        await retention.sweep()

    return BackgroundWorker("retention", sweep, interval_s=interval_s, retry_on=(StoreError,),
                            min_backoff_s=0.0, max_backoff_s=0.0)
