"""One background-worker skeleton for every component: a task that runs ``step`` when woken
(``notify``) or every ``interval_s``, with optional coalescing and exponential backoff.

Used by the broker's outbox delivery and preview sweeper and the cockpit's sequencer. A step
returns normally (success: backoff resets) or raises one of ``retry_on`` (logged, then the step
is retried after a backoff that doubles from ``min_backoff_s`` up to ``max_backoff_s`` and that
``notify`` does not cut short); any other exception is a bug: it is
logged as ``worker.crashed`` with its traceback and ends the task (``running`` turns false, which
readiness checks can report), never silently.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

__all__ = ["BackgroundWorker"]

log = structlog.get_logger()


class BackgroundWorker:
    """``start()`` once on the serving event loop, ``stop()`` at shutdown (idempotent)."""

    def __init__(self, name: str, step: Callable[[], Awaitable[None]], *, interval_s: float,
                 coalesce_s: float = 0.0, retry_on: tuple[type[BaseException], ...] = (),
                 min_backoff_s: float = 0.5, max_backoff_s: float = 30.0) -> None:
        self.name = name
        self._step = step
        self._interval = interval_s
        self._coalesce = coalesce_s
        self._retry_on = retry_on
        self._min_backoff = min_backoff_s
        self._max_backoff = max_backoff_s
        self.backoff_s = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def notify(self) -> None:
        """Something to do: run the step soon (after ``coalesce_s``, to batch a burst)."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"einmal-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # a crashed task was logged when it crashed; stopping must not raise it again
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            if self.backoff_s:
                # after a failure the backoff is served in full: a notify (under load, one per
                # request) must not turn the backoff into a retry every few milliseconds against
                # a peer that is down; what was notified meanwhile is done by the retry
                await asyncio.sleep(self.backoff_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                    if self._coalesce:
                        await asyncio.sleep(self._coalesce)
            self._wake.clear()
            try:
                await self._step()
            except self._retry_on as exc:
                self.backoff_s = min(self._max_backoff, max(self._min_backoff,
                                                             self.backoff_s * 2))
                log.warning("worker.step_failed", worker=self.name, error=type(exc).__name__,
                            retry_in_s=round(self.backoff_s, 2))
            except Exception:
                log.exception("worker.crashed", worker=self.name)
                raise
            else:
                self.backoff_s = 0.0
