"""Cockpit composition root."""

import time
from typing import Any

import httpx
import structlog
from litestar import Router

from cockpit.http import AuditorAuth, ChannelAuth, create_cockpit_router
from cockpit.log import TransferLog
from cockpit.log.witnesses import WitnessPolicy, load_witness_policy
from cockpit.relay import Relay
from cockpit.service import CockpitService
from cockpit.sources import DOCUMENTS_DIR, Desk, LogCheck, load_sources
from cockpit.sources.clients import SourceClients
from cockpit.sources.documents import SourceSpec, broker_host
from cockpit.store import open_store
from cockpit.tables import BUCKET, KV
from cockpit.tiles import LogTiles, create_tiles_router
from cockpit.vault import CitizenVault
from cockpit.web import WebView, create_web_router
from einmal.citizen import CitizenAuth
from einmal.domain.contract import CHANNEL_AUDIENCE
from einmal.domain.policy import Policies
from einmal.keys import (
    load_or_create_secret,
    load_or_create_signing_key,
    retired_public_jwks,
)
from einmal.settings import Settings
from einmal.shared_state import SqlStore, forget_idle_buckets
from einmal.source_interface import COCKPIT_SOURCES_KEY
from einmal.store import StoreError, create_engine, dispose
from einmal.worker import BackgroundWorker
from einmal_client.sources import SourceTokenSigner

__all__ = ["CockpitComponent"]

log = structlog.get_logger()


def _source_parts(settings: Settings) -> tuple[tuple[SourceSpec, ...], SourceTokenSigner]:
    """The sources of the documents, and the signer of the cockpit's request tokens (issue
    15). Its key ``cockpit-sources``: the public half (``cockpit-sources.public.json`` in the
    keys dir) is what every source checks them with."""
    specs = load_sources(settings.sources_dir or DOCUMENTS_DIR,
                         registers_base_url=settings.registers_base_url,
                         broker_base_url=settings.broker_base_url, keys_dir=settings.keys_dir)
    key = load_or_create_signing_key(settings.keys_dir, COCKPIT_SOURCES_KEY)
    signer = SourceTokenSigner(private_key=key.private_key, kid=key.kid,
                               issuer=settings.cockpit_base_url)
    return specs, signer


def _log_brokers(settings: Settings) -> frozenset[str]:
    """The source id of the broker whose transfers this cockpit's log holds: ``broker:`` and
    its host (decision 0035, ``broker.source.broker_source_id``)."""
    return frozenset({f"broker:{broker_host(settings.broker_base_url)}"})


class CockpitComponent:
    name = "cockpit"

    def __init__(self, settings: Settings, *, citizens: CitizenAuth,
                 policies: Policies, witnesses: WitnessPolicy | None = None,
                 witness_http: httpx.AsyncClient | None = None) -> None:
        """``witnesses``: who cosigns the log's checkpoints (None: as the settings say,
        ``log_witnesses`` and ``log_witness_quorum``); ``witness_http``: the client they are
        asked with (None: one of the log's own)."""
        if (settings.keys_dir / "cockpit-master.next.key").exists():
            # some citizen keys may be wrapped with the new master key already
            msg = ("a cockpit master key rotation is unfinished: run `einmal keys rotate "
                   "cockpit-master` again before starting the cockpit")
            raise RuntimeError(msg)
        self.engine = create_engine(settings.database_url_for("cockpit"))
        self.read_engine = (create_engine(settings.database_url_for("cockpit", read=True))
                            if settings.read_database_url else None)
        #: the store's backend, chosen once here from the engine (cockpit/store/base.py)
        self.store = open_store(self.engine, read_engine=self.read_engine)
        if witnesses is None:
            witnesses = load_witness_policy(settings.log_witnesses, settings.log_witness_quorum)
        self.log = TransferLog(store=self.store,
                               key=load_or_create_signing_key(settings.keys_dir, "cockpit-log"),
                               origin=settings.log_origin_line,
                               retention_days=settings.log_retention_days,
                               retired_keys=retired_public_jwks(settings.keys_dir, "cockpit-log"),
                               witnesses=witnesses, http=witness_http,
                               witness_timeout_s=settings.log_witness_timeout_s)
        self.service = CockpitService(
            store=self.store,
            pseudonym_key=load_or_create_secret(settings.keys_dir, "cockpit-pseudonym"),
            vault=CitizenVault(load_or_create_secret(settings.keys_dir, "cockpit-master")),
            on_ingested=self.log.notify)
        channel = ChannelAuth(keys_file=settings.keys_dir / "broker-channel.public.json",
                              issuer=settings.broker_base_url, audience=CHANNEL_AUDIENCE)
        specs, signer = _source_parts(settings)
        #: the web view's desk (answers held per session, in memory) and the citizen API's
        #: relay (answers handed back unopened): both ask the sources with the same clients
        self.source_clients = SourceClients(specs, signer=signer,
                                            timeout_s=settings.source_timeout_s)
        self.sources = Desk(specs, signer=signer, clients=self.source_clients,
                            deadline_s=settings.source_deadline_s,
                            timeout_s=settings.source_timeout_s, checks=LogCheck(
                                store=self.store, log=self.log,
                                pseudonym=self.service.pseudonym, brokers=_log_brokers(settings)))
        self.relay = Relay(self.source_clients, deadline_s=settings.source_deadline_s,
                           timeout_s=settings.source_timeout_s)
        api = create_cockpit_router(
            cockpit=self.service, citizens=citizens, channel=channel, transfer_log=self.log,
            auditors=AuditorAuth(keys_file=settings.auditor_keys), relay=self.relay)
        # web sessions in the database, shared by every cockpit process, or in this one
        # (decision 0032; sealed with a key only the browser's cookie carries)
        shared = settings.shares_state("cockpit")
        sessions = SqlStore(self.engine, KV) if shared else None
        self.web = WebView(settings, policies=policies, session_store=sessions,
                           sources=self.sources)
        # retention of the shared state (docs/retention.md): expired sessions at once, idle
        # rate-limit buckets after an hour (the citizen's bucket, when the cockpit holds it)
        async def sweep_shared_state() -> None:
            if sessions is not None:
                await sessions.delete_expired()
            await forget_idle_buckets(self.engine, BUCKET, time.time() - 3600)

        self.shared_state_sweeper = (
            BackgroundWorker("cockpit-shared-state-sweeper", sweep_shared_state,
                             interval_s=600, retry_on=(StoreError,)) if shared else None)
        #: the app's template engine (the web view's Jinja2 templates)
        self.template_config = self.web.templates
        self.router: Router = Router(path="/", route_handlers=[
            api, create_web_router(self.web), create_tiles_router(LogTiles(
                self.store, self.log.checkpoint, verifier_key=self.log.verifier_key))])

    def attach_metrics(self, metrics: Any) -> None:
        async def refresh(m: Any) -> None:
            size, pending = await self.log.status()
            m.log_size.set(size)
            m.log_pending.set(pending)

        metrics.refreshers.append(refresh)

    async def health(self) -> dict[str, Any]:
        try:
            size, pending = await self.log.status()
            witnesses = await self.log.witness_status()
        except StoreError as exc:
            return {"cockpit_store": f"error: {type(exc).__name__}"}
        checks: dict[str, Any] = {"cockpit_store": "ok", "log_tree_size": size,
                                  "log_pending": pending}
        if witnesses is not None:  # e.g. "error: 0 of 1 cosigned (quorum 1), published ..."
            checks["log_witnesses"] = witnesses
        return checks

    async def prepare(self) -> None:
        """Before serving (own event loop): migrate a fresh store or refuse a stale one."""
        try:
            await self.store.create_schema()
        finally:
            await self.engine.dispose()  # the pool only: serving runs in another event loop

    async def start(self) -> None:
        await self.store.create_schema()
        await self.log.initialise()
        await self.log.first_round()
        self.log.start()
        if self.shared_state_sweeper is not None:
            self.shared_state_sweeper.start()
        log.info("cockpit.started", log_origin=self.log.origin)

    async def stop(self) -> None:
        if self.shared_state_sweeper is not None:
            await self.shared_state_sweeper.stop()
        await self.web.close()
        await self.sources.aclose()
        await self.source_clients.aclose()
        await self.log.stop()
        await dispose(self.engine)
        if self.read_engine is not None:
            await dispose(self.read_engine)
