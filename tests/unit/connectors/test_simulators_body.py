"""How the register simulators read a request body (einmal/asgi.py: read_body): the route's
size limit and the errors Litestar's ``request.body()`` gives - 413 for a body above it,
announced or streamed, 400 for a Content-Length that is no number, 500 when the client is
gone - and a body sent in pieces is read whole. Mounted as the process mounts them
(einmal_app/server.py): the app's body limit and problem+json handlers."""

import json
from typing import Any

import pytest
from litestar import Litestar

from connectors import xpersonenstand as messages
from connectors.simulators.app import SimulatorSettings, create_registers_router
from connectors.simulators.population import Population, generate_population
from einmal.problems import exception_handlers

FAMILIES = 40
LIMIT = 2048


@pytest.fixture(scope="module", name="population")
def fx_population() -> Population:
    return generate_population(1, FAMILIES)


@pytest.fixture(name="app")
def fx_app(population: Population) -> Litestar:
    return Litestar([create_registers_router(SimulatorSettings(families=FAMILIES), population)],
                    exception_handlers=exception_handlers(), request_max_body_size=LIMIT)


def _birth_request(population: Population) -> tuple[str, bytes]:
    child = next(c for c in population.demo_citizens()
                 if c.family == "elfe" and c.role == "child")
    return (f"/registers/standesamt/{child.place_of_birth}/geburt",
            messages.build_request(idnr=child.idnr, birth_date=child.birth_date,
                                   family_name=None, reader="test"))


async def _call(app: Litestar, method: str, path: str, events: list[dict[str, Any]],
                headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    """One request over raw ASGI: the body as the ``events`` given (the test client sends a
    body in one piece, always with its length)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers or [],
             "client": ("t", 1), "server": ("t", 2), "state": {}}
    await app(scope, receive, send)  # type: ignore[arg-type]  # a plain dict scope
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _pieces(*parts: bytes) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)]


class TestStandesamtBody:
    async def test_a_request_in_pieces_is_read_whole(self, app, population) -> None:
        path, body = _birth_request(population)
        half = len(body) // 2
        status, answer = await _call(app, "POST", path, _pieces(body[:half], b"", body[half:]))
        assert status == 200
        assert messages.parse_xml(answer).tag == messages.tag(messages.ANSWER)

    async def test_an_announced_length_above_the_limit_is_413(self, app, population) -> None:
        path, body = _birth_request(population)
        status, answer = await _call(app, "POST", path, _pieces(body),
                                     [(b"Content-Length", b"%d" % (LIMIT + 1))])
        assert status == 413
        assert json.loads(answer)["type"] == "urn:einmal:problem:payload-too-large"

    async def test_a_streamed_body_above_the_limit_is_413(self, app, population) -> None:
        path, body = _birth_request(population)
        status, answer = await _call(app, "POST", path,
                                     _pieces(body, b" " * (LIMIT - len(body) + 1)))
        assert status == 413
        assert json.loads(answer)["type"] == "urn:einmal:problem:payload-too-large"

    async def test_a_body_at_the_limit_is_read(self, app, population) -> None:
        path, body = _birth_request(population)
        padded = body + b" " * (LIMIT - len(body))  # whitespace after the root element
        status, _ = await _call(app, "POST", path, _pieces(padded),
                                [(b"content-length", b"%d" % LIMIT)])
        assert status == 200

    async def test_a_content_length_that_is_no_number_is_400(self, app, population) -> None:
        path, body = _birth_request(population)
        status, answer = await _call(app, "POST", path, _pieces(body),
                                     [(b"content-length", b"two")])
        assert status == 400
        assert json.loads(answer)["detail"] == "Invalid content-length: 'two'"

    async def test_a_client_gone_before_its_body_is_500(self, app, population) -> None:
        path, _ = _birth_request(population)
        status, answer = await _call(app, "POST", path, [])
        assert status == 500
        assert json.loads(answer)["type"] == "urn:einmal:problem:internal"


class TestKnobsBody:
    async def test_a_change_in_pieces_is_read_whole(self, app) -> None:
        status, answer = await _call(app, "PUT", "/registers/_knobs",
                                     _pieces(b'{"latency_', b'ms": 7}'))
        assert status == 200
        assert json.loads(answer)["sorge"]["latency_ms"] == 7

    async def test_a_change_above_the_limit_is_413(self, app) -> None:
        status, _ = await _call(app, "PUT", "/registers/_knobs",
                                _pieces(b'{"latency_ms": 7' + b" " * LIMIT + b"}"))
        assert status == 413
