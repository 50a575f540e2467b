"""The per-register bound on calls in flight (connectors/_http.py)."""

import asyncio

import httpx
import pytest

from connectors._http import RegisterClient
from einmal.domain.registers import RegisterBusyError, RegisterUnavailableError


class SlowRegister(httpx.AsyncBaseTransport):
    """Answers only when released; counts the calls in flight at the register's side."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most = 0
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return httpx.Response(200, json={"ok": True})


async def _until(predicate, *, steps: int = 1000) -> None:
    for _ in range(steps):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def _client(register: SlowRegister, **limits: float) -> RegisterClient:
    return RegisterClient(timeout_s=5, retries=2, backoff_s=0, transport=register, **limits)


async def test_never_more_than_the_bound_in_flight_and_every_call_completes() -> None:
    register = SlowRegister()
    client = _client(register, max_concurrency=3, queue_timeout_s=30)
    calls = [asyncio.create_task(client.request("GET", "http://r.test/x", register="R"))
             for _ in range(20)]
    await _until(lambda: register.in_flight == 3)
    await asyncio.sleep(0.02)  # the other 17 are queued, not sent
    assert register.in_flight == 3
    assert client.in_flight("R") == 3
    register.release.set()
    answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200] * 20
    assert register.most == 3
    assert register.calls == 20
    assert client.in_flight("R") == 0
    await client.aclose()


async def test_saturated_register_fails_busy_after_the_queue_timeout() -> None:
    register = SlowRegister()
    client = _client(register, max_concurrency=2, queue_timeout_s=0.05)
    held = [asyncio.create_task(client.request("GET", "http://r.test/x", register="R"))
            for _ in range(2)]
    await _until(lambda: register.in_flight == 2)
    with pytest.raises(RegisterBusyError, match="R is busy: 2 calls in flight") as caught:
        await client.request("GET", "http://r.test/x", register="R")
    assert isinstance(caught.value, RegisterUnavailableError)  # recorded like other failures
    assert caught.value.code == "register-busy"
    assert register.calls == 2  # the busy call never reached the register, and was not retried
    register.release.set()
    await asyncio.gather(*held)
    # slots are given back: the next call goes through
    assert (await client.request("GET", "http://r.test/x", register="R")).status_code == 200
    await client.aclose()


async def test_the_bound_is_per_register() -> None:
    register = SlowRegister()
    client = _client(register, max_concurrency=1, queue_timeout_s=0.05)
    held = asyncio.create_task(client.request("GET", "http://r.test/x", register="A"))
    await _until(lambda: register.in_flight == 1)
    other = asyncio.create_task(client.request("GET", "http://r.test/y", register="B"))
    await _until(lambda: register.in_flight == 2)  # B is not blocked by A
    with pytest.raises(RegisterBusyError):
        await client.request("GET", "http://r.test/x", register="A")
    register.release.set()
    await asyncio.gather(held, other)
    await client.aclose()


async def test_a_failed_call_gives_its_slot_back() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    client = RegisterClient(timeout_s=1, retries=1, backoff_s=0, max_concurrency=1,
                            queue_timeout_s=0.05, transport=httpx.MockTransport(refuse))
    for _ in range(3):  # would be busy from the second round if a slot leaked
        with pytest.raises(RegisterUnavailableError) as caught:
            await client.request("GET", "http://r.test/x", register="R")
        assert not isinstance(caught.value, RegisterBusyError)
    assert client.in_flight("R") == 0
    await client.aclose()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        RegisterClient(timeout_s=1, retries=0, max_concurrency=0)
