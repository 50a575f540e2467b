"""Cockpit composition root."""

import structlog
from litestar import Router

from cockpit.http import ChannelAuth, create_cockpit_router
from cockpit.service import CockpitService
from einmal.citizen import CitizenAuth
from einmal.keys import load_or_create_secret
from einmal.settings import Settings
from einmal.store import create_engine

__all__ = ["CHANNEL_AUDIENCE", "CockpitComponent"]

log = structlog.get_logger()

CHANNEL_AUDIENCE = "einmal-cockpit-ingest"  # the broker's channel tokens name this audience


class CockpitComponent:
    name = "cockpit"

    def __init__(self, settings: Settings, *, citizens: CitizenAuth) -> None:
        self.engine = create_engine(settings.database_url_for("cockpit"))
        self.service = CockpitService(
            engine=self.engine,
            pseudonym_key=load_or_create_secret(settings.keys_dir, "cockpit-pseudonym"))
        channel = ChannelAuth(keys_file=settings.keys_dir / "broker-channel.public.json",
                              issuer=settings.broker_base_url, audience=CHANNEL_AUDIENCE)
        self.router: Router = create_cockpit_router(cockpit=self.service, citizens=citizens,
                                                    channel=channel)

    async def start(self) -> None:
        await self.service.create_schema()
        log.info("cockpit.started")

    async def stop(self) -> None:
        await self.engine.dispose()
