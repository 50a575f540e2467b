"""The one background-worker skeleton: wake-ups, interval, backoff, clean stop."""

import asyncio
from collections.abc import Callable

import pytest

from einmal.worker import BackgroundWorker


class Flaky(Exception):
    pass


async def _until(predicate: Callable[[], object], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


class TestBackgroundWorker:
    async def test_an_unexpected_error_ends_the_task_loudly(self) -> None:
        async def step() -> None:
            raise RuntimeError("bug")

        worker = BackgroundWorker("t", step, interval_s=0.001)
        worker.start()
        await _until(lambda: not worker.running)
        task = worker._task
        assert task is not None and isinstance(task.exception(), RuntimeError)
        await worker.stop()

    async def test_a_retryable_error_backs_off_then_resets(self) -> None:
        calls: list[float] = []
        fail = [True, True]

        async def step() -> None:
            calls.append(worker.backoff_s)
            if fail:
                fail.pop()
                raise Flaky

        worker = BackgroundWorker("t", step, interval_s=0.0, retry_on=(Flaky,),
                                  min_backoff_s=0.01, max_backoff_s=0.02)
        worker.start()
        await _until(lambda: len(calls) >= 4)
        await worker.stop()
        # before the first failure no backoff; then 0.01, then doubled (capped at 0.02); then reset
        assert calls[:3] == [0.0, 0.01, 0.02]
        assert worker.backoff_s == 0.0

    async def test_notify_runs_the_step_before_the_interval(self) -> None:
        ran = asyncio.Event()

        async def step() -> None:
            ran.set()

        worker = BackgroundWorker("t", step, interval_s=3600)
        worker.start()
        await asyncio.sleep(0)
        assert not ran.is_set()
        worker.notify()
        await asyncio.wait_for(ran.wait(), 2.0)
        await worker.stop()
        assert not worker.running

    async def test_stop_is_idempotent_and_start_twice_keeps_one_task(self) -> None:
        async def step() -> None:
            return None

        worker = BackgroundWorker("t", step, interval_s=3600)
        worker.start()
        first = worker._task
        worker.start()
        assert worker._task is first
        await worker.stop()
        await worker.stop()
        assert first is not None and first.cancelled()


@pytest.mark.parametrize("interval", [0.0])
async def test_interval_zero_keeps_calling(interval: float) -> None:
    count = [0]

    async def step() -> None:
        count[0] += 1

    worker = BackgroundWorker("t", step, interval_s=interval)
    worker.start()
    await _until(lambda: count[0] >= 3)
    await worker.stop()
    assert count[0] >= 3


async def test_a_notify_during_the_backoff_does_not_cut_it_short() -> None:
    """Under load every request notifies the delivery worker; with its peer down that must not
    turn a 0.3 s backoff into a retry per notify."""
    loop = asyncio.get_running_loop()
    calls: list[float] = []

    async def step() -> None:
        calls.append(loop.time())
        raise Flaky

    worker = BackgroundWorker("t", step, interval_s=3600, retry_on=(Flaky,),
                              min_backoff_s=0.3, max_backoff_s=0.3)
    worker.start()
    worker.notify()
    await _until(lambda: len(calls) >= 1)
    for _ in range(30):  # a burst of notifies during the backoff
        worker.notify()
        await asyncio.sleep(0.005)
    await _until(lambda: len(calls) >= 2)
    await worker.stop()
    assert calls[1] - calls[0] >= 0.29
