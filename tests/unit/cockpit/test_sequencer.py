"""The sequencer's loop (cockpit/log/sequencer.py) on a fake log store and an injected clock:
retried after a failure, woken by new entries, batches drained, retention shredded hourly."""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cockpit.errors import TreeIntegrityError
from cockpit.log.checkpoints import CheckpointSigner
from cockpit.log.export import Retention
from cockpit.log.sequencer import RETRY_S, Sequencer
from cockpit.store.base import Sign
from einmal.keys import SigningKey
from einmal.store import StoreError

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class FakeLogStore:
    """Answers ``integrate`` from a script: a count to return, or an exception to raise."""

    def __init__(self, script: list[int | Exception]) -> None:
        self.script = script
        self.integrated: list[datetime] = []
        self.shredded: list[datetime] = []
        self.times: list[float] = []

    async def integrate(self, *, batch: int, sign: Sign, now: datetime) -> tuple[int, int]:
        self.integrated.append(now)
        self.times.append(time.monotonic())
        step = self.script.pop(0) if self.script else 0
        if isinstance(step, Exception):
            raise step
        return min(step, batch), 0

    async def shred(self, before: datetime) -> int:
        self.shredded.append(before)
        return 0


async def _until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def _longer_than(items: list[datetime], length: int) -> Callable[[], bool]:
    return lambda: len(items) > length


def _sequencer(store: FakeLogStore, *, interval_s: float = 60.0,
               clock: Callable[[], datetime] = lambda: T0) -> Sequencer:
    signer = CheckpointSigner(key=SigningKey(kid="k", private_key=Ed25519PrivateKey.generate()),
                              origin="test/log")
    return Sequencer(store, signer, Retention(store, retention_days=30),  # type: ignore[arg-type]  # a fake of the two methods used
                     batch_size=10, interval_s=interval_s, clock=clock)


class TestSequencer:
    @pytest.mark.parametrize("failure", [StoreError("down"), TreeIntegrityError("gap")])
    async def test_a_failed_batch_is_retried_after_a_second_and_the_loop_lives_on(
            self, failure: Exception) -> None:
        store = FakeLogStore([failure, 3])
        sequencer = _sequencer(store, interval_s=0.0)
        sequencer.worker.start()
        try:
            await _until(lambda: len(store.times) >= 2)
            assert store.times[1] - store.times[0] >= RETRY_S * 0.9
            await _until(lambda: sequencer.worker.backoff_s == 0)
            assert sequencer.worker.running
        finally:
            await sequencer.worker.stop()

    async def test_new_entries_wake_it_before_its_interval(self) -> None:
        store = FakeLogStore([])
        sequencer = _sequencer(store, interval_s=3600)
        sequencer.worker.start()
        try:
            sequencer.worker.notify()
            await _until(lambda: store.integrated)
        finally:
            await sequencer.worker.stop()

    async def test_full_batches_are_drained_at_once(self) -> None:
        store = FakeLogStore([10, 10, 4, 10])
        sequencer = _sequencer(store, interval_s=3600)
        sequencer.worker.start()
        try:
            sequencer.worker.notify()
            await _until(lambda: len(store.integrated) >= 3)
            assert store.script == [10]  # a batch short of full ends the drain
        finally:
            await sequencer.worker.stop()

    async def test_retention_is_shredded_once_an_hour(self) -> None:
        now = [T0]
        store = FakeLogStore([])
        sequencer = _sequencer(store, interval_s=3600, clock=lambda: now[0])
        sequencer.worker.start()
        try:
            for minutes, shreds in ((0, 1), (30, 1), (61, 2)):
                now[0] = T0 + timedelta(minutes=minutes)
                runs = len(store.integrated)
                sequencer.worker.notify()
                await _until(_longer_than(store.integrated, runs))
                await _until(_longer_than(store.shredded, shreds - 1))
        finally:
            await sequencer.worker.stop()
        # steps run one after another: a shred at 30 minutes would be in the list
        assert store.shredded == [T0 - timedelta(days=30),
                                  T0 + timedelta(minutes=61) - timedelta(days=30)]
