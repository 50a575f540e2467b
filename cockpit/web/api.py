"""The web view is just another API client: it calls the broker and cockpit APIs over HTTP
with a citizen token (least privilege: it can do nothing the citizen cannot).

The token is the one the cockpit minted for the citizen's web session (``WebSession.
access_token``; einmal.citizen.WebTokenMinter, decision 0027), never the identity provider's
access token: that one may be opaque, and is meant for the provider alone."""

from typing import Any

import httpx
import msgspec

__all__ = ["ApiClient", "ApiError"]


class ApiError(Exception):
    """An API answered with a problem (or not at all). ``status`` 0: unreachable."""

    def __init__(self, status: int, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"API error {status}")
        self.status = status
        self.problem = problem or {}

    @property
    def slug(self) -> str:
        return str(self.problem.get("type", "")).rsplit(":", 1)[-1]


class ApiClient:
    """One per process (built at start-up); every call names the session's API token."""

    def __init__(self, *, http: httpx.AsyncClient, broker_url: str, cockpit_url: str) -> None:
        self.http = http
        self.broker_url = broker_url.rstrip("/")
        self.cockpit_url = cockpit_url.rstrip("/")

    async def _call(self, method: str, url: str, token: str, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(
                method, url, headers={"authorization": f"Bearer {token}"}, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0) from exc
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = None
            raise ApiError(response.status_code, problem if isinstance(problem, dict) else None)
        return msgspec.json.decode(response.content)

    # -- cockpit -----------------------------------------------------------------------------
    async def transfers_page(self, token: str, cursor: str | None = None,
                             limit: int = 200) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return await self._call("GET", f"{self.cockpit_url}/v1/me/transfers", token,
                                params=params)

    async def all_transfers(self, token: str, *, cap: int = 5000) -> list[dict[str, Any]]:
        """Every visible transfer (the last two years), newest first."""
        items: list[dict[str, Any]] = []
        cursor = None
        while len(items) < cap:
            page = await self.transfers_page(token, cursor)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

    async def transfer(self, token: str, transfer_id: str) -> dict[str, Any] | None:
        for item in await self.all_transfers(token):
            if item["id"] == transfer_id:
                return item
        return None

    # -- broker ------------------------------------------------------------------------------
    async def consents(self, token: str) -> list[dict[str, Any]]:
        return (await self._call("GET", f"{self.broker_url}/v1/consents", token))["items"]

    async def grant_consent(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"{self.broker_url}/v1/consents", token, json=body)

    async def revoke_consent(self, token: str, consent_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"{self.broker_url}/v1/consents/{consent_id}", token)

    # -- broker: previews (held proofs waiting for the citizen's release) ---------------------
    async def previews(self, token: str, status: str = "pending") -> list[dict[str, Any]]:
        return (await self._call("GET", f"{self.broker_url}/v1/me/previews", token,
                                 params={"status": status}))["items"]

    async def preview(self, token: str, request_id: str) -> dict[str, Any]:
        return await self._call("GET", f"{self.broker_url}/v1/me/previews/{request_id}", token)

    async def decide_preview(self, token: str, request_id: str, decision: str,
                             ) -> dict[str, Any]:
        return await self._call("POST", f"{self.broker_url}/v1/me/previews/{request_id}", token,
                                json={"decision": decision})
