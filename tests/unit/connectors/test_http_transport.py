"""The connectors' own send (aiohttp, connectors/_http.py) on real sockets: what a register's
failure becomes, what is retried, and that connections are kept alive.

Each test runs a small HTTP/1.1 server on 127.0.0.1 (asyncio streams) that behaves as told:
answer, stall, hang up, or refuse. No mocks: this is the code path the broker runs.
"""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from connectors._http import RegisterClient
from einmal.domain.registers import (
    RegisterBusyError,
    RegisterTimeoutError,
    RegisterUnavailableError,
)

Behaviour = Callable[[int, bytes], Awaitable[bytes | None]]


class Register:
    """A local server: ``behaviour(n, request)`` gives the bytes to send for the n-th request
    (None = hang up without answering); it may also sleep (a stalling register)."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = await self.behaviour(len(self.requests), request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def __aenter__(self) -> "Register":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/registers/x"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._handlers):
            task.cancel()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self.server.wait_closed()


def ok(body: bytes = b"<ok/>", status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/xml\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


@pytest.fixture(name="client")
async def fx_client() -> AsyncIterator[RegisterClient]:
    client = RegisterClient(timeout_s=0.3, retries=2, backoff_s=0.0, connect_timeout_s=0.3)
    yield client
    await client.aclose()


async def test_a_refused_connection_is_unavailable_not_a_timeout(client) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RegisterUnavailableError, match=r"unreachable \(3 attempts\)") as caught:
        await client.request("GET", f"http://127.0.0.1:{port}/x", register="R")
    assert not isinstance(caught.value, RegisterTimeoutError)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert client.in_flight("R") == 0


async def test_a_register_that_does_not_answer_is_a_timeout_after_the_retries(client) -> None:
    async def stall(n: int, request: bytes) -> bytes | None:
        await asyncio.sleep(10)
        return None

    async with Register(stall) as register:
        with pytest.raises(RegisterTimeoutError, match=r"in time \(3 attempts\)") as caught:
            await client.request("GET", register.url, register="R")
        assert len(register.requests) == 3  # the first attempt and two retries
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_a_register_that_hangs_up_is_unavailable_and_retried(client) -> None:
    async def hang_up_once(n: int, request: bytes) -> bytes | None:
        return None if n == 1 else ok()

    async with Register(hang_up_once) as register:
        answer = await client.request("GET", register.url, register="R")
        assert answer.status_code == 200
        assert answer.content == b"<ok/>"
        assert len(register.requests) == 2

    async def always_hang_up(n: int, request: bytes) -> bytes | None:
        return None

    async with Register(always_hang_up) as register:
        with pytest.raises(RegisterUnavailableError, match="3 attempts") as caught:
            await client.request("GET", register.url, register="R")
        assert not isinstance(caught.value, RegisterTimeoutError)
        assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_a_malformed_answer_is_unavailable(client) -> None:
    async def garbage(n: int, request: bytes) -> bytes | None:
        return b"this is not HTTP\r\n\r\n"

    async with Register(garbage) as register:
        with pytest.raises(RegisterUnavailableError) as caught:
            await client.request("GET", register.url, register="R")
        assert not isinstance(caught.value, RegisterTimeoutError)


async def test_5xx_is_retried_4xx_and_redirects_are_returned_once(client) -> None:
    async def busy_then_ok(n: int, request: bytes) -> bytes | None:
        return ok(b"", "503 Service Unavailable") if n < 3 else ok()

    async with Register(busy_then_ok) as register:
        answer = await client.request("GET", register.url, register="R")
        assert answer.status_code == 200
        assert len(register.requests) == 3

    not_found = ok(b"no", "404 Not Found")
    redirect = (b"HTTP/1.1 302 Found\r\nlocation: http://elsewhere.test/\r\n"
                b"content-length: 0\r\n\r\n")
    for status, raw in ((404, not_found), (302, redirect)):
        async def answer_with(n: int, request: bytes, raw: bytes = raw) -> bytes | None:
            return raw

        async with Register(answer_with) as register:
            answer = await client.request("GET", register.url, register="R")
            assert answer.status_code == status  # returned: neither followed nor retried
            assert len(register.requests) == 1


async def test_the_query_goes_out_as_given_and_connections_are_kept_alive(client) -> None:
    async def echo_ok(n: int, request: bytes) -> bytes | None:
        return ok()

    async with Register(echo_ok) as register:
        for _ in range(5):
            answer = await client.request(
                "POST", register.url, register="R", params={"as_of": "2026-11-28"},
                content=b"<anfrage/>", headers={"content-type": "application/xml"})
            assert answer.status_code == 200
        assert register.connections == 1  # one keep-alive connection, reused
    first = register.requests[0]
    assert first.startswith(b"POST /registers/x?as_of=2026-11-28 HTTP/1.1\r\n")
    assert b"\r\ncontent-type: application/xml\r\n" in first.lower()
    assert first.endswith(b"\r\n\r\n<anfrage/>")


async def test_the_bound_on_calls_in_flight_holds_on_real_connections() -> None:
    release = asyncio.Event()
    in_flight = most = 0

    async def slow(n: int, request: bytes) -> bytes | None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1
        return ok()

    client = RegisterClient(timeout_s=5, retries=0, max_concurrency=2, queue_timeout_s=0.05)
    try:
        async with Register(slow) as register:
            held = [asyncio.create_task(client.request("GET", register.url, register="R"))
                    for _ in range(2)]
            async with asyncio.timeout(5):
                while in_flight < 2:
                    await asyncio.sleep(0.005)
            with pytest.raises(RegisterBusyError):
                await client.request("GET", register.url, register="R")
            release.set()
            assert [a.status_code for a in await asyncio.gather(*held)] == [200, 200]
            assert most == 2
            assert len(register.requests) == 2  # the busy call never went out
    finally:
        await client.aclose()
