"""Shared HTTP plumbing of the connectors: one client, explicit timeouts, bounded retries for
idempotent reads, and translation of transport errors into the connector error tree."""

import asyncio
from typing import Any

import httpx

from connectors.base import (
    RecordNotFoundError,
    RegisterRejectedError,
    RegisterTimeoutError,
    RegisterUnavailableError,
)

__all__ = ["RegisterClient", "raise_for_client_error"]

_RETRYABLE_STATUS = frozenset({502, 503, 504})


class RegisterClient:
    def __init__(self, *, timeout_s: float, retries: int, backoff_s: float = 0.05,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)),
            transport=transport, limits=httpx.Limits(max_connections=100))
        self._retries = retries
        self._backoff = backoff_s

    async def request(self, method: str, url: str, *, register: str, **kwargs: Any,
                      ) -> httpx.Response:
        """Send a read-only query (safe to retry). 404 and 4xx are returned to the caller;
        timeouts, connection errors and 502/503/504 are retried, then raised as typed errors."""
        attempt = 0
        while True:
            try:
                response = await self._client.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff * attempt)
                    continue
                msg = f"{register} did not answer in time"
                raise RegisterTimeoutError(msg) from exc
            except httpx.TransportError as exc:
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff * attempt)
                    continue
                msg = f"{register} is unreachable"
                raise RegisterUnavailableError(msg) from exc
            if response.status_code in _RETRYABLE_STATUS and attempt < self._retries:
                attempt += 1
                await asyncio.sleep(self._backoff * attempt)
                continue
            if response.status_code >= 500:  # noqa: PLR2004
                msg = f"{register} answered {response.status_code}"
                raise RegisterUnavailableError(msg)
            return response

    async def aclose(self) -> None:
        await self._client.aclose()


def raise_for_client_error(response: httpx.Response, register: str) -> None:
    """404 with a not-found status -> RecordNotFoundError; other 4xx -> RegisterRejectedError."""
    if response.status_code == 404:  # noqa: PLR2004
        msg = f"{register} holds no record for the subject"
        raise RecordNotFoundError(msg)
    if response.status_code >= 400:  # noqa: PLR2004
        msg = f"{register} refused the query ({response.status_code})"
        raise RegisterRejectedError(msg)
