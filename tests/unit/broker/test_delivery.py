"""The outbox's delivery over its own aiohttp session: what the cockpit gets, and what a
failure leaves pending for the retry."""

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.delivery import DeliveryRejectedError, DeliveryWorker
from broker.notary import TransferDraft
from einmal.domain.transfer import Outcome, ServiceRef
from einmal.keys import SigningKey
from einmal.tokens import TokenIssuer
from tests.unit.broker.conftest import BIRTH, CHILD, Broker
from tests.unit.broker.fakes import FakeBrokerStore


class _Cockpit:
    """A cockpit's ingest endpoint on loopback: answers ``status``, keeps what it got."""

    def __init__(self) -> None:
        self.status = 200
        self.got: list[tuple[dict[str, Any], str]] = []

    async def ingest(self, request: web.Request) -> web.Response:
        self.got.append((json.loads(await request.read()), request.headers["authorization"]))
        return web.json_response({}, status=self.status)


@pytest.fixture(name="cockpit")
async def fx_cockpit() -> AsyncIterator[tuple[_Cockpit, str]]:
    cockpit = _Cockpit()
    app = web.Application()
    app.router.add_post("/v1/transfer-records", cockpit.ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield cockpit, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _worker(store: FakeBrokerStore, url: str) -> DeliveryWorker:
    channel = TokenIssuer(key=SigningKey(kid="c", private_key=Ed25519PrivateKey.generate()),
                          issuer="https://broker.test", audience="cockpit", ttl_s=60)
    return DeliveryWorker(store=store, cockpit_url=url, channel=channel)


async def _pending(broker: Broker, count: int) -> None:
    draft = TransferDraft(proof_type="birth", purpose="namensbestimmung", subject=CHILD,
                          service=ServiceRef(id="s", name="S", authority="A", land="HB"))
    for _ in range(count):
        await broker.store.commit_transfer(
            broker.notary.record(draft, Outcome.DELIVERED, proof=BIRTH))


class TestDelivery:
    async def test_a_refused_batch_stays_pending(self, broker: Broker,
                                                 cockpit: tuple[_Cockpit, str]) -> None:
        server, url = cockpit
        server.status = 503
        await _pending(broker, 2)
        worker = _worker(broker.store, url)
        try:
            with pytest.raises(DeliveryRejectedError):
                await worker.deliver_once()
        finally:
            await worker.stop()
        assert len(await broker.store.pending_transfers(10)) == 2

    async def test_an_unreachable_cockpit_is_a_failure_the_worker_retries(
            self, broker: Broker) -> None:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        await _pending(broker, 1)
        worker = _worker(broker.store, f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(Exception) as failed:  # its type: checked below
                await worker.deliver_once()
        finally:
            await worker.stop()
        assert isinstance(failed.value, worker._retry_on)
        assert len(await broker.store.pending_transfers(10)) == 1

    async def test_the_cockpit_gets_the_batch_with_a_channel_token(
            self, broker: Broker, cockpit: tuple[_Cockpit, str]) -> None:
        server, url = cockpit
        await _pending(broker, 3)
        worker = _worker(broker.store, url)
        try:
            assert await worker.deliver_once() == 3
            assert await worker.deliver_once() == 0
        finally:
            await worker.stop()
        (body, authorization), = server.got
        assert [r["subject"] for r in body["records"]] == [CHILD] * 3
        assert authorization.startswith("Bearer ey")
        assert await broker.store.pending_transfers(10) == []
        assert worker._session is None  # closed by stop
