"""Broker composition root: the only place that wires policies, connectors, store and keys."""

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import structlog
from litestar import Router

from broker.delivery import DeliveryWorker
from broker.http import BrokerLimits, create_broker_router
from broker.notary import Notary
from broker.previews import PreviewDesk, preview_sweeper
from broker.protocol import OutboxSeal, Pseudonyms
from broker.retention import Retention, retention_sweeper
from broker.service import BrokerService
from broker.source import ANSWER_KEY, BrokerSource, broker_source_id
from broker.store import BrokerStore, open_store
from broker.tables import BUCKET
from einmal.citizen import CitizenAuth
from einmal.domain.contract import CHANNEL_AUDIENCE
from einmal.domain.policy import Policies
from einmal.domain.proofs import ProofType
from einmal.domain.registers import Connector
from einmal.keys import (
    accepted_public_keys,
    load_or_create_secret,
    load_or_create_signing_key,
    retired_public_jwks,
)
from einmal.ratelimit import RateLimiter
from einmal.settings import Settings
from einmal.shared_state import SharedRateLimiter
from einmal.store import StoreError, create_engine, dispose
from einmal.tokens import TokenIssuer, TokenVerifier

__all__ = ["BrokerComponent"]

log = structlog.get_logger()

BROKER_AUDIENCE = "einmal-broker"
OUTBOX_LAG_READY_S = 60.0


class BrokerComponent:
    """Broker: built once at start-up; ``router`` serves, ``start``/``stop`` manage workers."""

    name = "broker"

    def __init__(self, settings: Settings, *, policies: Policies, citizens: CitizenAuth,
                 connectors: Mapping[ProofType, Connector]) -> None:
        keys_dir = settings.keys_dir
        proof_key = load_or_create_signing_key(keys_dir, "broker-proof")
        token_key = load_or_create_signing_key(keys_dir, "broker-token")
        channel_key = load_or_create_signing_key(keys_dir, "broker-channel")
        issuer = settings.broker_base_url
        self.engine = create_engine(settings.database_url_for("broker"))
        pseudonym_key = load_or_create_secret(keys_dir, "broker-pseudonym")
        #: the store's backend, chosen once here from the engine (broker/store/base.py); it
        #: seals the outbox's records with their own key (broker/protocol.py)
        self.store: BrokerStore = open_store(self.engine, OutboxSeal(
            key=load_or_create_secret(keys_dir, "broker-outbox"),
            pseudonyms=Pseudonyms(pseudonym_key)))
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
        self._registers_url = settings.registers_base_url
        #: shared with the service (not a copy): ``use_connector`` swaps one in place
        self.connectors = dict(connectors)
        self.delivery = DeliveryWorker(
            store=self.store, cockpit_url=settings.cockpit_base_url,
            channel=TokenIssuer(key=channel_key, issuer=issuer, audience=CHANNEL_AUDIENCE,
                                ttl_s=60),
            interval_s=settings.delivery_interval_s)
        self.notary = Notary(
            proof_key=proof_key, issuer=issuer,
            pseudonym_key=pseudonym_key,
            answer_key=load_or_create_secret(keys_dir, "broker-idempotency"),
            on_committed=self.delivery.notify)
        previews = PreviewDesk(
            store=self.store, policies=policies, notary=self.notary,
            key=load_or_create_secret(keys_dir, "broker-preview"),
            ttl_s=settings.preview_ttl_s, status_base=issuer,
            cockpit_url=settings.cockpit_base_url)
        access_tokens = TokenIssuer(key=token_key, issuer=issuer, audience=BROKER_AUDIENCE,
                                    ttl_s=settings.access_token_ttl_s)
        self.service = BrokerService(
            store=self.store, policies=policies, connectors=self.connectors,
            notary=self.notary, previews=previews, access_tokens=access_tokens,
            token_endpoint=f"{issuer}/v1/token", allow_test_idnrs=settings.demo)
        self.sweeper = preview_sweeper(previews, interval_s=settings.preview_sweep_interval_s)
        self.retention = Retention(self.store, clock=self.notary.clock)
        #: None: the operator turned the sweeper off (`einmal broker shred` only)
        self.retention_sweeper = (
            retention_sweeper(self.retention, interval_s=settings.retention_sweep_interval_s)
            if settings.retention_sweep_interval_s > 0 else None)
        # after `einmal keys rotate broker-token` the retired key is accepted until every
        # token it signed has expired (einmal/keys.py: accepted_public_keys)
        token_keys, retired_until = accepted_public_keys(
            keys_dir, "broker-token", lifetime_s=settings.access_token_ttl_s)
        service_tokens = TokenVerifier(keys=token_keys, not_after=retired_until,
                                       issuer=issuer, audience=BROKER_AUDIENCE)
        # in the database, shared by every broker process, or in this one (decision 0032)
        limiter = (partial(SharedRateLimiter, self.engine, BUCKET, key_secret=pseudonym_key)
                   if settings.shares_state("broker") else RateLimiter)
        limits = BrokerLimits(
            service=limiter(rate_per_s=settings.rate_limit_service_per_s,
                            burst=settings.rate_limit_service_burst, what="service"),
            token=limiter(rate_per_s=settings.rate_limit_token_per_s,
                          burst=settings.rate_limit_token_burst, what="client address"))
        #: the broker's protocol as a source of the Datenschutzcockpit (broker/source.py)
        self.source = BrokerSource(
            store=self.store, pseudonyms=Pseudonyms(pseudonym_key),
            source_id=broker_source_id(issuer),
            answer_key=load_or_create_signing_key(keys_dir, ANSWER_KEY), keys_dir=keys_dir,
            # the cockpit's desk names its URL as the issuer of its tokens (as for registers)
            cockpit_issuer=settings.cockpit_base_url, clock=self.notary.clock)
        #: the API of online services and citizens (its dependencies: tokens, limits)
        self.api: Router = create_broker_router(
            broker=self.service, service_tokens=service_tokens, citizens=citizens, limits=limits,
            # the first key signs; retired keys stay published so older proofs still verify
            jwks={"keys": [proof_key.public_jwk,
                           *retired_public_jwks(keys_dir, "broker-proof")]})
        self.router: Router = Router(path="/", route_handlers=[self.api, self.source.router()])

    @property
    def repository(self) -> BrokerStore:
        """The store under its former name (tests/e2e patch its methods through it)."""
        return self.store

    def use_connector(self, proof_type: ProofType, connector: Connector) -> None:
        """Serve ``proof_type`` with ``connector`` from now on (e.g. bench/servers.py's
        in-memory register); it is closed with the others on ``stop``."""
        self.connectors[proof_type] = connector  # the mapping the service holds

    def attach_metrics(self, metrics: Any) -> None:
        self.notary.on_outcome = metrics.proof_outcome

        async def refresh(m: Any) -> None:
            pending, oldest = await self.store.outbox_status()
            m.outbox_pending.set(pending)
            m.outbox_lag.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)

        metrics.refreshers.append(refresh)

    async def health(self) -> dict[str, Any]:
        """Store reachable; outbox lag within bounds (records reach the cockpit)."""
        try:
            pending, oldest = await self.store.outbox_status()
        except StoreError as exc:
            return {"broker_store": f"error: {exc}"}
        lag = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        try:  # any HTTP answer means reachable; only a transport failure is not
            await self._http.get(self._registers_url, timeout=2.0)
            registers = "ok"
        except httpx.HTTPError as exc:
            registers = f"error: unreachable ({type(exc).__name__})"
        return {"broker_store": "ok", "registers": registers, "outbox_pending": pending,
                "outbox_lag_s": round(lag, 1),
                "outbox": "ok" if lag < OUTBOX_LAG_READY_S else
                f"error: oldest undelivered record is {lag:.0f} s old"}

    async def prepare(self) -> None:
        """Before serving (own event loop): migrate a fresh store or refuse a stale one."""
        try:
            await self.store.create_schema()
        finally:
            await self.engine.dispose()  # the pool only: serving runs in another event loop

    async def start(self) -> None:
        await self.store.create_schema()
        # rows from before migration 0004 are sealed before the outbox delivers (it opens
        # only sealed records)
        await self.retention.seal_legacy()
        self.delivery.start()
        self.sweeper.start()
        if self.retention_sweeper is not None:
            self.retention_sweeper.start()
            self.retention_sweeper.notify()  # the first sweep now, not an interval from now
        log.info("broker.started")

    async def stop(self) -> None:
        if self.retention_sweeper is not None:
            await self.retention_sweeper.stop()
        await self.sweeper.stop()
        await self.store.aclose()
        await self.delivery.stop()
        for connector in self.connectors.values():
            await connector.aclose()
        await self._http.aclose()
        await dispose(self.engine)
