"""Consent API and cockpit log end to end, including who may see and touch what."""

import asyncio

import pytest
from structlog.testing import capture_logs

from einmal.store import StoreError
from tests.e2e.conftest import bearer, in_days
from tests.e2e.helpers import ELTERNGELD, NAMENSDIENST, birth_request, problem


class TestConsentApi:
    def test_needs_a_citizen_token(self, demo) -> None:
        problem(demo.http.get("/v1/consents"), 401, "unauthenticated")
        problem(demo.http.get("/v1/consents", headers=bearer("not-a-token")), 401,
                "unauthenticated")

    @pytest.mark.parametrize(("change", "needle"), [
        ({"service_id": "nobody"}, "unknown service"),
        ({"purpose": "werbung"}, "may not fetch"),
        ({"proof_types": ["income", "birth"]}, "may not fetch"),  # familienkasse: birth only
        ({"proof_types": []}, "at least one"),
        ({"valid_until": "2020-01-01T00:00:00Z"}, "future"),
        ({"valid_until": "2031-01-01T00:00:00"}, "time zone"),
        ({"max_uses": 0}, "at least 1"),
        ({"subject": "86095742718"}, "check digit"),
        ({"colour": "blue"}, "colour"),
    ])
    def test_invalid_grants(self, demo, change, needle) -> None:
        parent = demo.citizen("elfe", "parent")
        body = {"service_id": "familienkasse", "proof_types": ["birth"],
                "purpose": "kindergeld-antrag", "valid_until": in_days(10), **change}
        response = demo.http.post("/v1/consents", json=body,
                                  headers=bearer(demo.citizen_token(parent["idnr"])))
        assert needle in problem(response, 422, "invalid-request")["detail"]

    def test_list_shows_only_my_consents_masked(self, demo) -> None:
        anna, clara = demo.citizen("elfe", "parent"), demo.citizen("uvo", "parent")
        child = demo.citizen("elfe", "child")
        mine = demo.grant(anna["idnr"], ELTERNGELD, ["birth", "custody"], "elterngeld-antrag",
                          subject=child["idnr"])
        assert mine["status"] == "active"
        assert mine["subject"] == f"{child['idnr'][:2]}*******{child['idnr'][-2:]}"
        listed = demo.http.get("/v1/consents",
                               headers=bearer(demo.citizen_token(anna["idnr"]))).json()["items"]
        assert [c["id"] for c in listed] == [mine["id"]]
        theirs = demo.http.get("/v1/consents",
                               headers=bearer(demo.citizen_token(clara["idnr"]))).json()["items"]
        assert mine["id"] not in {c["id"] for c in theirs}

    def test_another_citizen_cannot_revoke_my_consent(self, demo) -> None:
        anna, clara = demo.citizen("elfe", "parent"), demo.citizen("uvo", "parent")
        consent = demo.grant(anna["idnr"], ELTERNGELD, ["income"], "elterngeld-antrag")
        response = demo.http.delete(f"/v1/consents/{consent['id']}",
                                    headers=bearer(demo.citizen_token(clara["idnr"])))
        problem(response, 404, "not-found")
        listed = demo.http.get("/v1/consents",
                               headers=bearer(demo.citizen_token(anna["idnr"]))).json()["items"]
        assert listed[0]["status"] == "active"

    def test_revoke_is_idempotent(self, demo) -> None:
        anna = demo.citizen("elfe", "parent")
        consent = demo.grant(anna["idnr"], ELTERNGELD, ["income"], "elterngeld-antrag")
        token = demo.citizen_token(anna["idnr"])
        first = demo.http.delete(f"/v1/consents/{consent['id']}", headers=bearer(token)).json()
        second = demo.http.delete(f"/v1/consents/{consent['id']}", headers=bearer(token)).json()
        assert first["status"] == second["status"] == "revoked"
        assert first["revoked_at"] == second["revoked_at"]


class TestCockpit:
    def test_transfers_need_a_citizen_token(self, demo) -> None:
        problem(demo.http.get("/v1/me/transfers"), 401, "unauthenticated")
        service_token = demo.service_token(NAMENSDIENST)
        problem(demo.http.get("/v1/me/transfers", headers=bearer(service_token)), 401,
                "unauthenticated")

    def test_ingest_refuses_anyone_but_the_broker(self, demo, live_server) -> None:
        problem(demo.http.post("/v1/transfer-records", json={"records": []}), 401,
                "unauthenticated")
        anna = demo.citizen("elfe", "parent")
        problem(demo.http.post("/v1/transfer-records", json={"records": []},
                               headers=bearer(demo.citizen_token(anna["idnr"]))),
                401, "unauthenticated")
        problem(demo.http.post("/v1/transfer-records", json={"records": []},
                               headers=bearer(demo.service_token(NAMENSDIENST))),
                401, "unauthenticated")

    def test_ingest_is_idempotent_by_transfer_id(self, demo, live_server, monkeypatch) -> None:
        broker = live_server.component("broker")
        sent = _record_deliveries(broker, monkeypatch)
        response = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        transfer_id = response.json()["transfer_id"]
        child = demo.citizen("elfe", "child")
        demo.transfers(child["idnr"], wait_for={transfer_id})
        # Deliver the same record again, as a retrying outbox would (the broker itself kept
        # only its protocol entry once delivered: decision 0031).
        future = asyncio.run_coroutine_threadsafe(broker.delivery._send(list(sent)),
                                                  _server_loop(live_server))
        future.result(timeout=10)
        assert any(transfer_id.encode() in record for record in sent)
        log = demo.transfers(child["idnr"])
        assert [e["id"] for e in log].count(transfer_id) == 1

    def test_pagination_is_stable_and_complete(self, demo) -> None:
        ids = {demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
               .json()["transfer_id"] for _ in range(5)}
        child = demo.citizen("elfe", "child")
        demo.transfers(child["idnr"], wait_for=ids)
        token = demo.citizen_token(child["idnr"])
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = demo.http.get("/v1/me/transfers", params=params, headers=bearer(token)).json()
            seen += [e["id"] for e in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == len(set(seen))
        assert ids <= set(seen)
        assert seen == sorted(seen, reverse=True)  # UUIDv7: newest first

    @pytest.mark.parametrize(("params", "needle"), [
        ({"limit": 0}, "limit"), ({"limit": 500}, "limit"), ({"cursor": "!!"}, "cursor")])
    def test_bad_query(self, demo, params, needle) -> None:
        anna = demo.citizen("elfe", "parent")
        response = demo.http.get("/v1/me/transfers", params=params,
                                 headers=bearer(demo.citizen_token(anna["idnr"])))
        assert needle in problem(response, 422, "invalid-request")["detail"]


class TestNoCitizenDataInLogs:
    def test_a_whole_story_logs_no_idnr_token_or_value(self, demo) -> None:
        child = demo.citizen("elfe", "child")
        anna = demo.citizen("elfe", "parent")
        with capture_logs() as logs:
            token = demo.citizen_token(anna["idnr"])
            consent = demo.grant(anna["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                                 subject=child["idnr"])
            body = {**birth_request(demo), "consent_id": consent["id"]}
            released = demo.request_proof(ELTERNGELD, body).json()
            demo.transfers(anna["idnr"], wait_for={released["transfer_id"]})
            demo.request_proof(ELTERNGELD, {**birth_request(demo)})  # refused
        text = repr(logs)
        assert logs, "expected log events"
        for secret in (child["idnr"], anna["idnr"], child["given_names"], token,
                       released["proof"]):
            assert secret not in text


class TestStoreFailure:
    def test_no_record_no_proof(self, demo, live_server, monkeypatch) -> None:
        """If the transfer record cannot be committed, nothing is released (503)."""
        async def store_down(*_args, **_kwargs):
            msg = "disk full"
            raise StoreError(msg)

        repository = live_server.component("broker").repository
        token = demo.service_token(NAMENSDIENST)
        monkeypatch.setattr(repository, "commit_transfer", store_down)
        monkeypatch.setattr(repository, "remember_jti", store_down)
        response = demo.http.post("/v1/proof-requests",
                                  json=birth_request(demo, "namensbestimmung"),
                                  headers=bearer(token))
        body = problem(response, 503, "store-unavailable")
        assert "proof" not in body
        assert response.headers["retry-after"] == "5"
        # the token endpoint, which records assertion ids, fails closed the same way
        problem(demo.http.post("/v1/token", data=demo.token_form(NAMENSDIENST)), 503,
                "store-unavailable")


def _server_loop(live_server):
    loop = getattr(live_server, "loop", None)
    if loop is None:
        pytest.fail("the live server does not expose its event loop")
    assert isinstance(loop, asyncio.AbstractEventLoop)
    return loop


class TestBacklogDelivery:
    def test_a_backlog_after_a_cockpit_outage_is_delivered_in_full_batches(
            self, demo, live_server, monkeypatch) -> None:
        """Regression (bench/faults.py): a full batch of 200 records exceeded the 64 KiB body
        limit, so a broker with a backlog could never deliver again."""
        broker = live_server.component("broker")
        delivered = _record_deliveries(broker, monkeypatch)
        ids = {demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
               .json()["transfer_id"] for _ in range(3)}
        child = demo.citizen("elfe", "child")
        demo.transfers(child["idnr"], wait_for=ids)

        async def redeliver_many() -> int:
            # Re-deliver every record (idempotent), padded to a 200-record batch.
            records = list(delivered) * (200 // len(delivered) + 1)
            await broker.delivery._send(records[:200])
            return len(records[:200])

        sent = asyncio.run_coroutine_threadsafe(redeliver_many(), live_server.loop).result(20)
        assert sent == 200


def _record_deliveries(broker, monkeypatch) -> list[bytes]:
    """Every record the broker's outbox sends from now on, as sent (the broker keeps only the
    protocol entry of a delivered one: decision 0031)."""
    sent: list[bytes] = []
    send = broker.delivery._send

    async def recording(records: list[bytes]) -> None:
        sent.extend(records)  # before the cockpit has them (a retry may add them twice)
        await send(records)

    monkeypatch.setattr(broker.delivery, "_send", recording)
    return sent
