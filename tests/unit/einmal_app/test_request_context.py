"""The request middleware of the process (einmal_app/server.py): every request gets an id
(the client's if it is short printable ASCII, else a new UUID), sent back in X-Request-Id
and bound to every log line of the request, nothing else of an earlier context; each request
is counted and timed by route template and logged once as ``http.request``."""

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from litestar import Router, get
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from structlog.testing import LogCapture

from einmal.metrics import Metrics
from einmal.settings import Settings
from einmal_app.server import create_app

log = structlog.get_logger()
PATH = "/t/{name:str}"
ROUTE = "/t/{name}"  # the template as Litestar names it in the scope


class _Component:
    """A component with one route that logs a line of its own."""

    name = "test"

    def __init__(self) -> None:
        @get(PATH)
        async def handler(name: FromPath[str]) -> str:
            log.info("inside", name=name)
            return "ok"

        self.router = Router("/", route_handlers=[handler])
        self.metrics: Metrics | None = None

    def attach_metrics(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


@pytest.fixture(name="logs")
def fx_logs() -> Iterator[list[dict[str, Any]]]:
    """Every event, with the context variables merged in as `einmal serve` configures it."""
    before = structlog.get_config()
    capture = LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(**before)


@pytest.fixture(name="served")
async def fx_served(tmp_path) -> Any:
    component = _Component()
    app = create_app(Settings(data_dir=tmp_path, ops_token="t" * 32), [component])
    async with AsyncTestClient(app) as client:
        yield client, component


def _of(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event]


class TestRequestId:
    async def test_a_new_id_is_sent_back_and_on_every_line(self, served, logs) -> None:
        client, _ = served
        response = await client.get("/t/a")
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 36
        assert request_id[14] == "4"  # a UUIDv4
        inside, = _of(logs, "inside")
        done, = _of(logs, "http.request")
        assert inside["request_id"] == done["request_id"] == request_id

    async def test_each_request_has_its_own(self, served, logs) -> None:
        client, _ = served
        first = (await client.get("/t/a")).headers["x-request-id"]
        second = (await client.get("/t/b")).headers["x-request-id"]
        assert first != second
        assert [e["request_id"] for e in _of(logs, "inside")] == [first, second]

    async def test_a_clients_id_is_kept(self, served, logs) -> None:
        client, _ = served
        response = await client.get("/t/a", headers={"x-request-id": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"
        assert _of(logs, "http.request")[0]["request_id"] == "abc-123"

    @pytest.mark.parametrize("bad", [b"x" * 65, b"tab\there", "caf\u00e9".encode()])
    async def test_a_bad_id_is_replaced(self, served, logs, bad) -> None:
        client, _ = served
        response = await client.get("/t/a", headers={"x-request-id": bad})
        made = response.headers["x-request-id"]
        assert len(made) == 36
        assert _of(logs, "http.request")[0]["request_id"] == made

    async def test_nothing_else_of_the_context_is_carried_in(self, served, logs) -> None:
        client, _ = served
        structlog.contextvars.bind_contextvars(earlier="x")
        try:
            await client.get("/t/a")
        finally:
            structlog.contextvars.clear_contextvars()
        assert "earlier" not in _of(logs, "inside")[0]


def test_making_the_app_binds_nothing(tmp_path, logs) -> None:
    create_app(Settings(data_dir=tmp_path, ops_token="t" * 32), [_Component()])
    log.info("outside")
    assert "request_id" not in _of(logs, "outside")[0]


class TestLogLineAndMetric:
    async def test_one_line_per_request_with_the_route_template(self, served, logs) -> None:
        client, _ = served
        await client.get("/t/4011000012")
        done, = _of(logs, "http.request")
        assert {k: done[k] for k in ("method", "route", "status", "log_level")} == {
            "method": "GET", "route": ROUTE, "status": 200, "log_level": "info"}
        assert isinstance(done["duration_ms"], float)
        assert "4011000012" not in repr(done)  # the template, never the raw path

    async def test_counted_and_timed_by_route_and_status(self, served) -> None:
        client, component = served
        for _ in range(2):
            await client.get("/t/a")
        registry = component.metrics.registry
        assert registry.get_sample_value("einmal_http_requests_total", {
            "method": "GET", "route": ROUTE, "status": "200"}) == 2
        assert registry.get_sample_value("einmal_http_request_duration_seconds_count",
                                         {"route": ROUTE}) == 2
        assert registry.get_sample_value("einmal_http_request_duration_seconds_sum",
                                         {"route": ROUTE}) > 0
