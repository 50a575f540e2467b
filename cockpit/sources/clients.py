"""The cockpit's clients of its sources: one ``SourceClient`` per source document, made on
first use (a source's key file may appear after the cockpit started), all on one connection
pool (a pool each would build a TLS context per source: tens of ms each on the first query).
The web view's desk and the citizen API's relay share one."""

from collections.abc import Sequence
from typing import Any

import httpx

from cockpit.sources.documents import SourceSpec
from einmal_client.sources import SourceClient, SourceError, SourceTokenSigner

__all__ = ["NoKeyError", "SourceClients"]


class NoKeyError(SourceError):
    """The source's key (document or key file) is missing or unusable."""


class SourceClients:
    """``timeout_s``: the hard limit of one request to a source; ``transport``: the pool."""

    def __init__(self, sources: Sequence[SourceSpec], *, signer: SourceTokenSigner,
                 timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.specs = {s.id: s for s in sources}
        self._signer = signer
        self._timeout = timeout_s
        self._transport = transport or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        self._clients: dict[str, SourceClient] = {}
        self._keys: dict[str, dict[str, Any]] = {}

    def public_key(self, source_id: str) -> dict[str, Any] | None:
        """The source's public answer key, read once (None while it is missing or unusable:
        asked again next time)."""
        key = self._keys.get(source_id)
        if key is None:
            try:
                key = dict(self.specs[source_id].public_key())
            except (OSError, ValueError):
                return None
            self._keys[source_id] = key
        return key

    def get(self, source_id: str) -> SourceClient:
        """The source's client; ``NoKeyError`` while its key is missing or unusable,
        ``KeyError`` for a source no document names."""
        client = self._clients.get(source_id)
        if client is None:
            spec = self.specs[source_id]
            key = self.public_key(source_id)
            if key is None:
                msg = f"{source_id}: its key is missing or unusable"
                raise NoKeyError(msg)
            try:
                client = SourceClient(url=spec.url, source_id=spec.id, signer=self._signer,
                                      source_key=key, timeout_s=self._timeout,
                                      transport=self._transport)
            except ValueError as exc:
                msg = f"{source_id}: its key is unusable ({exc})"
                raise NoKeyError(msg) from exc
            self._clients[source_id] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        await self._transport.aclose()
