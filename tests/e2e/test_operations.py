"""Operational surface: health, OpenAPI, JWKS, request ids, body limits."""

import asyncio
import time

from einmal.migrate import upgrade
from einmal.store import StoreError, create_engine
from tests.conftest import free_port
from tests.e2e.conftest import bearer
from tests.e2e.helpers import NAMENSDIENST, birth_request, problem


def ops(demo) -> dict[str, str]:
    """The operator token (F5): demo mode writes it to demo-credentials.json."""
    return bearer(demo.credentials["ops_token"])


class TestOperations:
    def test_health(self, demo) -> None:
        assert demo.http.get("/health/live").json() == {"status": "ok"}
        ready = demo.http.get("/health/ready", headers=ops(demo)).json()
        assert set(ready["components"]) >= {"broker", "cockpit", "registers"}

    def test_openapi_lists_the_public_api(self, demo) -> None:
        schema = demo.http.get("/schema/openapi.json").json()
        assert schema["openapi"].startswith("3.1")
        assert {"/v1/token", "/v1/proof-requests", "/v1/consents", "/v1/consents/{consent_id}",
                "/v1/me/transfers", "/.well-known/jwks.json"} <= set(schema["paths"])
        assert not any(path.startswith("/registers") for path in schema["paths"])

    def test_jwks_publishes_only_public_keys(self, demo) -> None:
        keys = demo.http.get("/.well-known/jwks.json").json()["keys"]
        assert keys
        assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in keys)

    def test_request_id_is_echoed_or_made(self, demo) -> None:
        echoed = demo.http.get("/health/live", headers={"x-request-id": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        made = demo.http.get("/health/live")
        assert len(made.headers["x-request-id"]) == 36
        # an id that is too long or not printable ASCII is replaced, not echoed or logged
        for bad in ("x" * 65, "tab\there", "caf\u00e9"):
            replaced = demo.http.get("/health/live", headers={"x-request-id": bad.encode()})
            assert replaced.status_code == 200
            assert replaced.headers["x-request-id"] != bad
            assert len(replaced.headers["x-request-id"]) == 36

    def test_oversized_body_is_413(self, demo) -> None:
        response = demo.http.post("/v1/proof-requests", content=b"{" + b" " * 70_000 + b"}",
                                  headers={**bearer(demo.service_token(NAMENSDIENST)),
                                           "content-type": "application/json"})
        problem(response, 413, "payload-too-large")


class TestMetricsAndReadiness:
    def test_metrics_count_outcomes_per_proof_type_and_log_size(self, demo) -> None:
        released = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert released.status_code == 200
        child = demo.citizen("elfe", "child")
        demo.transfers(child["idnr"], wait_for={released.json()["transfer_id"]})
        text = demo.http.get("/metrics", headers=ops(demo)).text
        assert 'einmal_proof_requests_total{outcome="delivered",proof_type="birth"} 1.0' in text
        assert 'route="/v1/proof-requests",status="200"' in text
        assert "einmal_outbox_lag_seconds" in text
        assert "einmal_log_tree_size" in text
        assert child["idnr"] not in text  # labels are route templates, never raw paths

    def test_ready_reports_checks(self, demo) -> None:
        checks = demo.http.get("/health/ready", headers=ops(demo)).json()["checks"]
        assert checks["broker_store"] == checks["cockpit_store"] == checks["outbox"] == "ok"

    def test_not_ready_when_the_store_fails(self, demo, live_server, monkeypatch) -> None:
        async def down():
            raise StoreError("disk gone")

        monkeypatch.setattr(live_server.component("broker").repository, "outbox_status", down)
        body = problem(demo.http.get("/health/ready", headers=ops(demo)), 503, "store-unavailable")
        assert body["checks"]["broker_store"].startswith("error")

    def test_not_ready_when_registers_are_unreachable(self, make_demo) -> None:
        demo = make_demo(registers_url=f"http://127.0.0.1:{free_port()}/registers")
        body = problem(demo.http.get("/health/ready", headers=ops(demo)), 503, "store-unavailable")
        assert body["checks"]["registers"].startswith("error: unreachable")


class TestReadReplica:
    def test_citizen_queries_go_to_the_read_replica(self, make_demo, tmp_path) -> None:
        """With an (here: empty) replica configured, the citizen's list comes from it, while
        the log is written to the primary."""
        replica = tmp_path / "replica.db"

        async def migrate() -> None:
            engine = create_engine(f"sqlite+aiosqlite:///{replica}")
            await upgrade(engine, "cockpit")
            await engine.dispose()

        asyncio.run(migrate())
        demo = make_demo(read_database_url=f"sqlite:///{replica}")
        released = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert released.status_code == 200
        checkpoint, deadline = "", time.monotonic() + 10
        while "\n1\n" not in checkpoint and time.monotonic() < deadline:
            checkpoint = demo.http.get("/v1/log/checkpoint").text
            time.sleep(0.1)
        assert "\n1\n" in checkpoint  # written to the primary
        child = demo.citizen("elfe", "child")
        assert demo.transfers(child["idnr"], timeout=0.5) == []  # read from the (empty) replica
