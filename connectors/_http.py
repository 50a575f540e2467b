"""Shared HTTP plumbing of the connectors: one client, explicit timeouts, bounded retries for
idempotent reads, and translation of transport errors into the connector error tree.

Every register query is a read: the Sorgeregister and income GETs, and also the Standesamt
POST (an XPersonenstand retrieval message that changes nothing), so all of them are retried on
timeouts, connection errors and 5xx answers - at most ``retries`` times, with a small linear
backoff. 4xx answers are never retried; they are returned for the connector to interpret.

Concurrency: at most ``max_concurrency`` calls are in flight to one register (keyed by the
``register`` name each call names) - a slow register must not absorb every worker and the
connection pool, nor be hammered harder the slower it gets. A call that finds the register
saturated waits up to ``queue_timeout_s`` for a slot, then fails with RegisterBusyError. The
slot is held per attempt (not during the backoff between attempts).
"""

import asyncio
from typing import Any

import httpx

from einmal.domain.registers import (
    RecordNotFoundError,
    RegisterBusyError,
    RegisterRejectedError,
    RegisterTimeoutError,
    RegisterUnavailableError,
)

__all__ = ["RegisterClient", "raise_for_client_error"]

#: Connection pools per RegisterClient (see __init__).
POOL_SHARDS = 4
_SERVER_ERROR = 500
_CLIENT_ERROR = 400
_NOT_FOUND = 404


class RegisterClient:
    """One ``httpx.AsyncClient`` with explicit timeouts and bounded retries."""

    def __init__(self, *, timeout_s: float, retries: int, connect_timeout_s: float | None = None,
                 backoff_s: float = 0.05,
                 transport: httpx.AsyncBaseTransport | None = None,
                 max_concurrency: int = 32, queue_timeout_s: float = 1.0) -> None:
        if retries < 0 or timeout_s <= 0:
            msg = "retries must be >= 0 and timeout_s > 0"
            raise ValueError(msg)
        if max_concurrency < 1 or queue_timeout_s < 0:
            msg = "max_concurrency must be >= 1 and queue_timeout_s >= 0"
            raise ValueError(msg)
        connect = connect_timeout_s if connect_timeout_s is not None else min(timeout_s, 2.0)
        # Several small connection pools, used in turn, instead of one large one: httpcore's
        # pool re-scans every connection and waiting request on each request and release, so
        # its CPU cost per call grows with the calls in flight (~0.46 ms alone, ~1 ms at 16;
        # encode/httpx#3215, docs/benchmarks.md "Variant c"). A given transport (tests, the
        # in-process registers) gets one client.
        shards = 1 if transport is not None else POOL_SHARDS
        self._clients = [httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect), transport=transport,
            limits=httpx.Limits(max_connections=max(1, 100 // shards)), follow_redirects=False)
            for _ in range(shards)]
        self._turn = 0
        self._retries = retries
        self._backoff = backoff_s
        self._max_concurrency = max_concurrency
        self._queue_timeout = queue_timeout_s
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._in_flight: dict[str, int] = {}

    def in_flight(self, register: str) -> int:
        """Calls to ``register`` holding a slot right now."""
        return self._in_flight.get(register, 0)

    async def _send(self, method: str, url: str, register: str, **kwargs: Any,
                    ) -> httpx.Response:
        slots = self._slots.get(register)
        if slots is None:
            slots = self._slots.setdefault(register, asyncio.Semaphore(self._max_concurrency))
        try:
            async with asyncio.timeout(self._queue_timeout):
                await slots.acquire()
        except TimeoutError as exc:
            msg = (f"{register} is busy: {self._max_concurrency} calls in flight, no slot "
                   f"free within {self._queue_timeout:g} s")
            raise RegisterBusyError(msg) from exc
        self._in_flight[register] = self._in_flight.get(register, 0) + 1
        self._turn = (self._turn + 1) % len(self._clients)
        try:
            return await self._clients[self._turn].request(method, url, **kwargs)
        finally:
            self._in_flight[register] -= 1
            slots.release()

    async def request(self, method: str, url: str, *, register: str, **kwargs: Any,
                      ) -> httpx.Response:
        """Send a read-only query (safe to retry); see the module docstring.

        Returns responses below 500; raises RegisterTimeoutError / RegisterUnavailableError
        (chained to the last transport error) once the retries are used up.
        """
        attempt = 0
        while True:
            try:
                response = await self._send(method, url, register, **kwargs)
            except httpx.TimeoutException as exc:
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff * attempt)
                    continue
                msg = f"{register} did not answer in time ({attempt + 1} attempts)"
                raise RegisterTimeoutError(msg) from exc
            except httpx.TransportError as exc:
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff * attempt)
                    continue
                msg = f"{register} is unreachable ({attempt + 1} attempts)"
                raise RegisterUnavailableError(msg) from exc
            if response.status_code >= _SERVER_ERROR:
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff * attempt)
                    continue
                msg = f"{register} answered {response.status_code} ({attempt + 1} attempts)"
                raise RegisterUnavailableError(msg)
            return response

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def raise_for_client_error(response: httpx.Response, register: str) -> None:
    """404 -> RecordNotFoundError; other 4xx (and unexpected 1xx/3xx) -> RegisterRejectedError."""
    if response.status_code == _NOT_FOUND:
        msg = f"{register} holds no record for the subject"
        raise RecordNotFoundError(msg)
    if response.status_code >= _CLIENT_ERROR or response.status_code < 200:
        msg = f"{register} refused the query ({response.status_code})"
        raise RegisterRejectedError(msg)
    if response.status_code >= 300:
        msg = f"{register} answered with a redirect ({response.status_code})"
        raise RegisterRejectedError(msg)
