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

Transport (decision 0029): the queries go out through one ``aiohttp`` session (its pool and
HTTP/1.1 parser; ~0.17 ms of client CPU per query at 16 in flight, where httpx over httpcore
took 1.0-2.0 ms and httpx over an aiohttp transport ~0.5 ms). Tests and in-process registers
inject an ``httpx`` transport instead (``httpx.MockTransport``, respx's router,
``httpx.ASGITransport``): the retries, timeouts, slots and error translation are the same code
for both; only the one send differs.

Timeouts per attempt: ``connect_timeout_s`` to open a connection, ``timeout_s`` per read of the
answer and for a pooled connection to become free (httpx's ``connect``/``read``/``pool``).
Timeouts become RegisterTimeoutError, every other transport failure (refused, reset, closed
early, a malformed answer) RegisterUnavailableError, chained to the transport's own error.
"""

import asyncio
from collections.abc import Mapping

import aiohttp
import httpx

from einmal.domain.registers import (
    RecordNotFoundError,
    RegisterBusyError,
    RegisterRejectedError,
    RegisterTimeoutError,
    RegisterUnavailableError,
)

__all__ = ["RegisterAnswer", "RegisterClient", "raise_for_client_error"]

_SERVER_ERROR = 500
_CLIENT_ERROR = 400
_NOT_FOUND = 404
#: connections kept per RegisterClient (all registers of one connector), and for how long idle
_MAX_CONNECTIONS = 100
_KEEPALIVE_S = 5.0
# The transports' errors, caught in this order: a timeout first (aiohttp's timeouts are also
# ClientErrors, and asyncio's TimeoutError is what an aiohttp deadline raises).
_TIMEOUTS = (httpx.TimeoutException, aiohttp.ServerTimeoutError, TimeoutError)
_TRANSPORT_ERRORS = (httpx.TransportError, aiohttp.ClientError, OSError)


class RegisterAnswer:
    """A register's answer: status and the whole body (read before the connection is reused)."""

    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content


class RegisterClient:
    """One aiohttp session (or an injected httpx transport) with explicit timeouts, bounded
    retries and a bound on the calls in flight per register."""

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
        self._timeout = aiohttp.ClientTimeout(connect=timeout_s, sock_connect=connect,
                                              sock_read=timeout_s)
        # an injected transport (tests, in-process registers) is driven through httpx
        self._httpx = None if transport is None else httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect), transport=transport,
            follow_redirects=False)
        # opened on first use: an aiohttp session belongs to the event loop that serves
        self._session: aiohttp.ClientSession | None = None
        self._retries = retries
        self._backoff = backoff_s
        self._max_concurrency = max_concurrency
        self._queue_timeout = queue_timeout_s
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._in_flight: dict[str, int] = {}

    def in_flight(self, register: str) -> int:
        """Calls to ``register`` holding a slot right now."""
        return self._in_flight.get(register, 0)

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=_MAX_CONNECTIONS, keepalive_timeout=_KEEPALIVE_S),
            cookie_jar=aiohttp.DummyCookieJar(), timeout=self._timeout)
        return self._session

    async def _exchange(self, method: str, url: str, params: Mapping[str, str] | None,
                        content: bytes | None, headers: Mapping[str, str] | None,
                        ) -> RegisterAnswer:
        if self._httpx is not None:
            answer = await self._httpx.request(method, url, params=params, content=content,
                                               headers=headers)
            return RegisterAnswer(answer.status_code, answer.content)
        session = self._session or self._open()
        async with session.request(method, url, params=params, data=content, headers=headers,
                                   allow_redirects=False) as response:
            return RegisterAnswer(response.status, await response.read())

    async def _send(self, method: str, url: str, register: str,
                    params: Mapping[str, str] | None, content: bytes | None,
                    headers: Mapping[str, str] | None) -> RegisterAnswer:
        slots = self._slots.get(register)
        if slots is None:
            slots = self._slots.setdefault(register, asyncio.Semaphore(self._max_concurrency))
        try:
            if slots.locked():  # saturated: wait for a slot, but not forever
                async with asyncio.timeout(self._queue_timeout):
                    await slots.acquire()
            else:  # a free slot is taken at once (no timer armed per call)
                await slots.acquire()
        except TimeoutError as exc:
            msg = (f"{register} is busy: {self._max_concurrency} calls in flight, no slot "
                   f"free within {self._queue_timeout:g} s")
            raise RegisterBusyError(msg) from exc
        self._in_flight[register] = self._in_flight.get(register, 0) + 1
        try:
            return await self._exchange(method, url, params, content, headers)
        finally:
            self._in_flight[register] -= 1
            slots.release()

    async def request(self, method: str, url: str, *, register: str,
                      params: Mapping[str, str] | None = None, content: bytes | None = None,
                      headers: Mapping[str, str] | None = None) -> RegisterAnswer:
        """Send a read-only query (safe to retry); see the module docstring.

        Returns answers below 500; raises RegisterTimeoutError / RegisterUnavailableError
        (chained to the last transport error) once the retries are used up.
        """
        attempt = 0
        while True:
            try:
                response = await self._send(method, url, register, params, content, headers)
            except _TIMEOUTS as exc:
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff * attempt)
                    continue
                msg = f"{register} did not answer in time ({attempt + 1} attempts)"
                raise RegisterTimeoutError(msg) from exc
            except _TRANSPORT_ERRORS as exc:
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
        if self._httpx is not None:
            await self._httpx.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None


def raise_for_client_error(response: RegisterAnswer, register: str) -> None:
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
