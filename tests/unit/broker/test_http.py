"""The broker's HTTP layer over the fake store: a store failure anywhere is one answer,
503 ``store-unavailable`` with ``Retry-After`` (never a 500 with a stack trace)."""

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar, Request
from litestar.testing import AsyncTestClient

from broker.http import BrokerLimits, create_broker_router
from einmal.citizen import Citizen
from einmal.problems import ProblemError, exception_handlers
from einmal.ratelimit import RateLimiter
from einmal.store import DuplicateKeyError, StoreError
from einmal.tokens import TokenVerifier
from tests.unit.broker.conftest import Broker


class _NoCitizens:
    """Citizen routes are not under test here: every citizen is unauthenticated."""

    def dependency(self) -> Callable[[Request[Any, Any, Any]], Awaitable[Citizen]]:
        async def citizen(request: Request[Any, Any, Any]) -> Citizen:
            raise ProblemError("unauthenticated", "No citizen here.")
        return citizen


@pytest.fixture(name="http")
async def fx_http(make_broker: Callable[..., Broker]) -> AsyncIterator[tuple[Any, Broker]]:
    broker = make_broker(start=datetime.now(UTC))  # PyJWT checks ``exp`` on the wall clock
    limits = BrokerLimits(service=RateLimiter(rate_per_s=0, burst=0, what="service"),
                          token=RateLimiter(rate_per_s=0, burst=0, what="client address"))
    router = create_broker_router(
        broker=broker.service, limits=limits, citizens=_NoCitizens(),  # type: ignore[arg-type]  # a stub of CitizenAuth
        service_tokens=TokenVerifier(keys={}, issuer="x", audience="y"), jwks={"keys": []})
    app = Litestar(route_handlers=[router], exception_handlers=exception_handlers())
    async with AsyncTestClient(app) as client:
        yield client, broker


@pytest.mark.parametrize("failure", [StoreError("disk gone"), DuplicateKeyError("odd")])
async def test_a_store_failure_is_503_store_unavailable_with_retry_after(
        http: tuple[Any, Broker], failure: StoreError) -> None:
    client, broker = http
    broker.store.failure = failure
    response = await client.post("/v1/token", data=broker.token_form(broker.assertion()))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["type"] == "urn:einmal:problem:store-unavailable"
    assert "access_token" not in body


async def test_the_same_request_succeeds_once_the_store_is_back(
        http: tuple[Any, Broker]) -> None:
    client, broker = http
    response = await client.post("/v1/token", data=broker.token_form(broker.assertion()))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
