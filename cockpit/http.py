"""Cockpit HTTP controllers (API; the web view comes with the cockpit issue)."""

from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery

from cockpit.service import CockpitService
from einmal.citizen import Citizen, CitizenAuth
from einmal.domain.transfer import TransferBatch
from einmal.keys import load_public_keys
from einmal.problems import ProblemError
from einmal.tokens import TokenVerifier, bearer_token

__all__ = ["ChannelAuth", "create_cockpit_router"]

_json = msgspec.json.Encoder()
_batch = msgspec.json.Decoder(TransferBatch)


class ChannelAuth:
    """Authenticates the broker -> cockpit channel: a short-lived JWT signed with the broker's
    channel key, whose public part the cockpit reads (lazily) from a JWK set file."""

    def __init__(self, *, keys_file: Path, issuer: str, audience: str) -> None:
        self._keys_file = keys_file
        self._issuer = issuer
        self._audience = audience
        self._verifier: TokenVerifier | None = None

    def check(self, request: Request[Any, Any, Any]) -> None:
        if self._verifier is None:
            if not self._keys_file.exists():
                raise ProblemError("unauthenticated", "No broker channel key is configured.")
            self._verifier = TokenVerifier(keys=load_public_keys(self._keys_file),
                                           issuer=self._issuer, audience=self._audience)
        self._verifier.verify(bearer_token(request))


@post("/v1/transfer-records", summary="Accept transfer records (broker channel only)",
      tags=["broker channel"], status_code=200)
async def ingest(request: Request[Any, Any, Any], cockpit: NamedDependency[CockpitService],
                 channel: NamedDependency[ChannelAuth]) -> Response[bytes]:
    channel.check(request)
    try:
        batch = _batch.decode(await request.body())
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProblemError("invalid-request", f"Invalid transfer batch: {exc}.") from exc
    result = await cockpit.ingest(batch.records)
    return Response(content=_json.encode(result), media_type="application/json")


@get("/v1/me/transfers", summary="Transfers about me and my children", tags=["citizens"])
async def my_transfers(cockpit: NamedDependency[CockpitService], citizen: NamedDependency[Citizen], limit: FromQuery[int] = 50,
                       cursor: FromQuery[str | None] = None) -> Response[bytes]:
    page = await cockpit.transfers_of(citizen.idnr, limit=limit, cursor=cursor)
    return Response(content=_json.encode(page), media_type="application/json",
                    headers={"cache-control": "no-store"})


def create_cockpit_router(*, cockpit: CockpitService, citizens: CitizenAuth,
                          channel: ChannelAuth) -> Router:
    return Router(path="/", route_handlers=[ingest, my_transfers], dependencies={
        "cockpit": Provide(lambda: cockpit, use_cache=True, sync_to_thread=False),
        "channel": Provide(lambda: channel, use_cache=True, sync_to_thread=False),
        "citizen": Provide(citizens.dependency(), sync_to_thread=False),
    })
