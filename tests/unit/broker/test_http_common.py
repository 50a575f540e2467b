"""What the proof route reads and answers without Litestar's helpers: the same headers, body
limits, errors and answer bytes as with them."""

import json
from typing import Any

import pytest
from litestar import Litestar, Request, post
from litestar.testing import AsyncTestClient

from broker.http_common import JsonAnswer, json_response, proof_answer
from broker.previews import PREVIEW_REQUIRED
from einmal.asgi import header_values, read_body
from einmal.problems import exception_handlers

LIMIT = 64


@post("/body", status_code=200, request_max_body_size=LIMIT)
async def _body(request: Request[Any, Any, Any]) -> JsonAnswer:
    headers = header_values(request.scope["headers"], {b"content-length"})
    raw = await read_body(request, headers.get(b"content-length"))
    again = await request.body()  # kept for anyone reading it later
    return JsonAnswer(json.dumps({"body": raw.decode(), "same": again == raw}).encode())


@pytest.fixture(name="client")
async def fx_client() -> Any:
    app = Litestar(route_handlers=[_body], exception_handlers=exception_handlers())
    async with AsyncTestClient(app) as client:
        yield client


async def _post_in_chunks(*parts: bytes) -> tuple[int, bytes]:
    """POST /body over raw ASGI, the body in ``parts`` (no Content-Length): the test client
    sends a body in one piece only."""
    app = Litestar(route_handlers=[_body], exception_handlers=exception_handlers())
    events = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
              for i, part in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return events.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/body", "raw_path": b"/body",
             "query_string": b"", "root_path": "", "headers": [], "client": ("t", 1),
             "server": ("t", 2), "state": {}}
    await app(scope, receive, send)  # type: ignore[arg-type]  # a plain dict scope
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


class TestReadBody:
    async def test_an_announced_length_above_the_limit_is_413(self, client: Any) -> None:
        response = await client.post("/body", content=b"x" * (LIMIT + 1))
        assert response.status_code == 413
        assert response.json()["type"] == "urn:einmal:problem:payload-too-large"

    async def test_a_streamed_body_above_the_limit_is_413(self) -> None:
        status, body = await _post_in_chunks(b"x" * 40, b"y" * 40)
        assert status == 413
        assert json.loads(body)["type"] == "urn:einmal:problem:payload-too-large"

    async def test_a_content_length_that_is_no_number_is_400(self, client: Any) -> None:
        response = await client.post("/body", content=b"{}",
                                     headers={"content-length": "two"})
        assert response.status_code == 400

    async def test_a_body_in_chunks_is_read_whole_and_kept(self) -> None:
        status, body = await _post_in_chunks(b"ab", b"", b"cd")
        assert status == 200
        assert json.loads(body) == {"body": "abcd", "same": True}

    async def test_a_body_at_the_limit_is_read(self, client: Any) -> None:
        response = await client.post("/body", content=b"z" * LIMIT)
        assert response.json() == {"body": "z" * LIMIT, "same": True}


class TestHeaderValues:
    def test_reads_as_litestar_headers_do(self) -> None:
        scope: Any = {"headers": [(b"Authorization", b"Bearer a"), (b"authorization", b"b"),
                                  (b"x-correlation-id", b"caf\xe9"), (b"other", b"x")]}
        wanted = {b"authorization", b"x-correlation-id", b"absent"}
        assert header_values(scope["headers"], wanted) == {
            b"authorization": "Bearer a", b"x-correlation-id": "café"}


class TestJsonAnswer:
    async def _sent(self, answer: Any) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            raise AssertionError

        await answer({"type": "http"}, receive, send)
        return sent

    async def test_a_proof_is_200_with_the_headers_of_a_json_response(self) -> None:
        answer = {"transfer_id": "t-1", "proof": "a.b.c"}
        start, body = await self._sent(proof_answer(answer))
        assert start["status"] == 200
        assert body == {"type": "http.response.body", "body": json.dumps(
            answer, separators=(",", ":")).encode(), "more_body": False}
        expected = json_response(answer).to_asgi_response(app=None, request=None)  # type: ignore[arg-type]  # not read
        assert start["headers"] == expected.encode_headers()

    async def test_a_pending_preview_is_202_with_its_location(self) -> None:
        answer = {"status": PREVIEW_REQUIRED, "request_id": "r-1"}
        start, _ = await self._sent(proof_answer(answer))
        assert start["status"] == 202
        assert start["headers"] == [
            (b"cache-control", b"no-store"), (b"location", b"/v1/proof-requests/r-1"),
            (b"content-type", b"application/json"), (b"content-length", b"48")]
