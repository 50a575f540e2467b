"""Delivery of transfer records to the cockpit: the broker's outbox worker.

The transfer record is committed before a proof is released (service.py); this worker sends
pending records to the cockpit in order, in batches, and marks them delivered only after the
cockpit accepted them (idempotent by transfer id there): delivered at least once, logged once.
"""

import asyncio
import contextlib
import time

import httpx
import structlog

from broker.repository import BrokerRepository
from einmal.store import StoreError
from einmal.tokens import TokenIssuer

__all__ = ["DeliveryWorker"]

log = structlog.get_logger()
COALESCE_S = 0.05
#: A channel token (60 s) is reused for this long: one signature per 20 s instead of one per
#: batch, and the cockpit's verified-token cache is hit (docs/benchmarks.md).
TOKEN_REUSE_S = 20.0


class DeliveryWorker:
    def __init__(self, *, repository: BrokerRepository, cockpit_url: str, channel: TokenIssuer,
                 http: httpx.AsyncClient, interval_s: float = 1.0, batch_size: int = 200) -> None:
        self._repo = repository
        self._endpoint = f"{cockpit_url}/v1/transfer-records"
        self._channel = channel
        self._http = http
        self._interval = interval_s
        self._batch = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = 0.0
        self._token: tuple[float, str] | None = None

    def _channel_token(self) -> str:
        now = time.monotonic()
        if self._token is None or now - self._token[0] > TOKEN_REUSE_S:
            self._token = (now, self._channel.issue("einmal-broker"))
        return self._token[1]

    def notify(self) -> None:
        """A record was committed: deliver soon."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="einmal-delivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # best effort: what is left is sent on restart
            await self.deliver_once()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval + self._backoff)
                await asyncio.sleep(COALESCE_S)  # let a burst of commits share one batch
            self._wake.clear()
            try:
                while await self.deliver_once() == self._batch:
                    pass
                self._backoff = 0.0
            except (httpx.HTTPError, StoreError, DeliveryRejectedError) as exc:
                self._backoff = min(30.0, max(0.5, self._backoff * 2))
                log.warning("delivery.failed", error=type(exc).__name__,
                            retry_in_s=self._backoff + self._interval)

    async def deliver_once(self) -> int:
        """Send one batch of pending records. Returns how many were delivered."""
        return await self._repo.deliver_pending(self._batch, self._send)

    async def _send(self, records: list[bytes]) -> None:
        body = b'{"records":[' + b",".join(records) + b"]}"
        token = self._channel_token()
        response = await self._http.post(
            self._endpoint, content=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        if response.status_code != 200:
            self._token = None  # e.g. a rotated key: the next attempt signs a fresh token
            msg = f"cockpit answered {response.status_code}"
            raise DeliveryRejectedError(msg)
        log.debug("delivery.batch_sent", count=len(records))


class DeliveryRejectedError(Exception):
    """The cockpit did not accept a batch; it is retried with backoff."""
