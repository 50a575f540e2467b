"""The sequencer: integrates new entries into the tree in batches and signs a checkpoint each.

One sequencer at a time integrates (the store locks the log's state row first in the same
transaction: a row lock on PostgreSQL, the write lock on SQLite), so a crashed sequencer leaves
either the whole batch or nothing - the tree never forks. In the server it runs on a
``BackgroundWorker``: woken by each ingest (``notify``), a burst coalesced for 0.1 s, at least
every ``interval_s``; once an hour it shreds what is past retention; a failure is logged and
retried after a second.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from cockpit.errors import TreeIntegrityError
from cockpit.log.checkpoints import CheckpointSigner
from cockpit.log.export import Retention
from cockpit.store.base import LogStore
from einmal.store import StoreError
from einmal.worker import BackgroundWorker
from einmal_client import tlog

__all__ = ["COALESCE_S", "RETRY_S", "SHRED_EVERY", "Sequencer"]

log = structlog.get_logger()

#: integrate a burst of ingests in one batch (entries are integrated within about a second)
COALESCE_S = 0.1
#: after a failure (store down, damaged tree) try again after this long
RETRY_S = 1.0
SHRED_EVERY = timedelta(hours=1)


class Sequencer:
    def __init__(self, store: LogStore, signer: CheckpointSigner, retention: Retention, *,
                 batch_size: int = 5000, interval_s: float = 0.5,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_integrated: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._on_integrated = on_integrated
        self._signer = signer
        self._retention = retention
        self._batch = batch_size
        self._clock = clock
        self._last_shred: datetime | None = None
        self.worker = BackgroundWorker(
            "sequencer", self._step, interval_s=interval_s, coalesce_s=COALESCE_S,
            retry_on=(StoreError, TreeIntegrityError, OSError),
            min_backoff_s=RETRY_S, max_backoff_s=RETRY_S)

    async def initialise(self) -> None:
        """Create the log's state and its signed empty checkpoint, once."""
        await self._store.initialise_log(empty_note=self._signer.sign(0, tlog.EMPTY_ROOT),
                                         now=self._clock())

    async def integrate(self) -> int:
        """Integrate one batch of pending entries and sign a checkpoint. Returns the count."""
        count, size = await self._store.integrate(batch=self._batch, sign=self._signer.sign,
                                                  now=self._clock())
        if count:
            log.info("log.integrated", count=count, tree_size=size)
            self._on_integrated()  # a new checkpoint: the cosigner shows it to the witnesses
        return count

    async def _step(self) -> None:
        while await self.integrate() == self._batch:
            pass
        now = self._clock()
        if self._last_shred is None or now - self._last_shred > SHRED_EVERY:
            await self._retention.shred_expired(now)
            self._last_shred = now
