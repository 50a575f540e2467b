"""Delivery of transfer records to the cockpit: the broker's outbox worker.

The transfer record is committed before a proof is released (service.py); this worker sends
pending records to the cockpit in order, in batches, and marks them delivered only after the
cockpit accepted them (idempotent by transfer id there): delivered at least once, logged once.
The store opens each sealed record for the send; the mark destroys it, and the row keeps only
its protocol entry (broker/protocol.py, decision 0031).

Transport: one ``aiohttp`` session of the worker's own, as the connectors' register queries
(decision 0029): a batch's POST costs ~160 CPU-us there against ~650 us through httpx (the
per-batch cost that decides the outbox's share of a proof request's CPU). A test or an
in-process cockpit may give an ``httpx.AsyncClient`` instead (``http=``).
"""

import contextlib
import time

import aiohttp
import httpx
import structlog

from broker.store import BrokerStore
from einmal.store import StoreError
from einmal.tokens import TokenIssuer
from einmal.worker import BackgroundWorker

__all__ = ["COALESCE_S", "DeliveryRejectedError", "DeliveryWorker"]

log = structlog.get_logger()
#: After a commit, wait this long before sending: a burst of commits shares one batch.
COALESCE_S = 0.05
#: A channel token (60 s) is reused for this long: one signature per 20 s instead of one per
#: batch, and the cockpit's verified-token cache is hit (docs/benchmarks.md).
TOKEN_REUSE_S = 20.0
#: as the httpx client it replaces: 3 s to connect, 10 s per read; and a bound on the whole
#: exchange, so that a cockpit that stops reading cannot hold the worker
_TIMEOUT = aiohttp.ClientTimeout(total=60.0, connect=3.0, sock_connect=3.0, sock_read=10.0)
#: the transports' failures: the batch stays pending and is retried with backoff
_TRANSPORT_ERRORS = (httpx.HTTPError, aiohttp.ClientError, TimeoutError, OSError)


class DeliveryRejectedError(Exception):
    """The cockpit did not accept a batch; it is retried with backoff."""


class DeliveryWorker(BackgroundWorker):
    """Sends the backlog when notified (``notify``: a record was committed) or every
    ``interval_s``; on a failure (transport, store, cockpit refusal) backs off 0.5 s doubling
    up to 30 s. ``stop`` makes one last best-effort delivery."""

    def __init__(self, *, store: BrokerStore, cockpit_url: str, channel: TokenIssuer,
                 http: httpx.AsyncClient | None = None, interval_s: float = 1.0,
                 batch_size: int = 200) -> None:
        super().__init__("delivery", self._deliver_backlog, interval_s=interval_s,
                         coalesce_s=COALESCE_S,
                         retry_on=(*_TRANSPORT_ERRORS, StoreError, DeliveryRejectedError),
                         min_backoff_s=0.5, max_backoff_s=30.0)
        self._store = store
        self._endpoint = f"{cockpit_url}/v1/transfer-records"
        self._channel = channel
        self._http = http
        #: made on first use, on the serving loop; closed by ``stop``
        self._session: aiohttp.ClientSession | None = None
        self._batch = batch_size
        self._token: tuple[float, str] | None = None

    def _channel_token(self) -> str:
        now = time.monotonic()
        if self._token is None or now - self._token[0] > TOKEN_REUSE_S:
            self._token = (now, self._channel.issue("einmal-broker"))
        return self._token[1]

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(Exception):  # best effort: what is left is sent on restart
            await self.deliver_once()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _deliver_backlog(self) -> None:
        while await self.deliver_once() == self._batch:
            pass

    async def deliver_once(self) -> int:
        """Send one batch of pending records. Returns how many were delivered."""
        return await self._store.deliver_pending(self._batch, self._send)

    async def _send(self, records: list[bytes]) -> None:
        body = b'{"records":[' + b",".join(records) + b"]}"
        headers = {"content-type": "application/json",
                   "authorization": f"Bearer {self._channel_token()}"}
        status = await self._post(body, headers)
        if status != 200:
            self._token = None  # e.g. a rotated key: the next attempt signs a fresh token
            msg = f"cockpit answered {status}"
            raise DeliveryRejectedError(msg)
        log.debug("delivery.batch_sent", count=len(records))

    async def _post(self, body: bytes, headers: dict[str, str]) -> int:
        """POST one batch; the cockpit's status (its answer is read whole, so the connection
        is reused)."""
        if self._http is not None:
            return (await self._http.post(self._endpoint, content=body,
                                          headers=headers)).status_code
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        async with self._session.post(self._endpoint, data=body, headers=headers) as response:
            await response.read()
            return response.status
