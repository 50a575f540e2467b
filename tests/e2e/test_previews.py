"""The preview flow (EU OOTS style) over real HTTP: the broker holds a fetched proof sealed,
the citizen sees it and accepts or refuses, the service collects only what was accepted.

Demo policy: the Unterhaltsvorschussstelle's custody proof asks for a preview; any consent
granted with ``preview: true`` asks for one too.
"""

import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from tests.e2e.conftest import Demo, bearer
from tests.e2e.helpers import ELTERNGELD, NAMENSDIENST, UVO, birth_request, problem
from tests.waiting import wait_until


def custody_request(demo: Demo, consent_id: str) -> dict[str, Any]:
    parent, child = demo.citizen("uvo", "parent"), demo.citizen("uvo", "child")
    return {"proof_type": "custody", "subject": child["idnr"],
            "purpose": "unterhaltsvorschuss-antrag", "consent_id": consent_id,
            "parameters": {"land": parent["home_land"],
                           "as_of": datetime.now(UTC).date().isoformat()}}


def uvo_consent(demo: Demo, **extra: Any) -> str:
    parent, child = demo.citizen("uvo", "parent"), demo.citizen("uvo", "child")
    return demo.grant(parent["idnr"], UVO, ["birth", "custody"], "unterhaltsvorschuss-antrag",
                      subject=child["idnr"], **extra)["id"]


def held(demo: Demo, consent_id: str | None = None, **headers: str) -> dict[str, Any]:
    """A custody proof request that the broker holds for Clara's preview (202)."""
    consent_id = consent_id or uvo_consent(demo)
    response = demo.http.post("/v1/proof-requests", json=custody_request(demo, consent_id),
                              headers={**bearer(demo.service_token(UVO)), **headers})
    assert response.status_code == 202, response.text
    return response.json()


def clara(demo: Demo) -> dict[str, str]:
    return bearer(demo.citizen_token(demo.citizen("uvo", "parent")["idnr"]))


def status(demo: Demo, request_id: str, service: str = UVO) -> Any:
    return demo.http.get(f"/v1/proof-requests/{request_id}",
                         headers=bearer(demo.service_token(service)))


def decide(demo: Demo, request_id: str, decision: str, who: dict[str, str] | None = None,
           ) -> Any:
    return demo.http.post(f"/v1/me/previews/{request_id}", json={"decision": decision},
                          headers=who or clara(demo))


def claims(jws: str) -> dict[str, Any]:
    payload = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sealed_rows(live: Any, request_id: str) -> list[Any]:
    engine = live.component("broker").engine

    async def read() -> list[Any]:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT state, sealed FROM broker_preview "
                                           "WHERE id = :id"), {"id": request_id})
            return [tuple(r) for r in rows]

    return asyncio.run_coroutine_threadsafe(read(), live.loop).result(10)


class TestPreviewRequired:
    def test_the_service_gets_202_and_no_data(self, demo, live_server) -> None:
        consent_id = uvo_consent(demo)
        response = demo.http.post("/v1/proof-requests", json=custody_request(demo, consent_id),
                                  headers=bearer(demo.service_token(UVO)))
        assert response.status_code == 202, response.text
        body = response.json()
        request_id = body["request_id"]
        assert response.headers["location"] == f"/v1/proof-requests/{request_id}"
        assert response.headers["cache-control"] == "no-store"
        assert set(body) == {"status", "code", "request_id", "status_url", "preview_url",
                             "expires_at"}
        assert body["status"] == "preview-required"
        assert body["code"] == "EDM:ERR:0002"
        assert body["status_url"] == f"{live_server.base_url}/v1/proof-requests/{request_id}"
        assert body["preview_url"] == f"{live_server.base_url}/previews/{request_id}"
        expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        assert 850 < (expires - datetime.now(UTC)).total_seconds() <= 900
        again = status(demo, request_id)
        assert again.status_code == 202
        assert again.json() == body
        # held sealed: the register's values are not in the stored bytes
        [(state, sealed)] = sealed_rows(live_server, request_id)
        assert state == "pending"
        assert sealed and b"sole" not in bytes(sealed) and b"holders" not in bytes(sealed)

    def test_the_citizen_sees_it_with_the_values(self, demo) -> None:
        request_id = held(demo)["request_id"]
        listed = demo.http.get("/v1/me/previews", headers=clara(demo))
        assert listed.status_code == 200
        [item] = [i for i in listed.json()["items"] if i["request_id"] == request_id]
        assert item["service_id"] == UVO
        assert item["service_name"] and item["authority"]
        assert item["proof_type"] == "custody"
        assert item["purpose"] == "unterhaltsvorschuss-antrag"
        assert "Sorgerecht" in item["purpose_text"]
        assert "UVG" in item["legal_basis"]
        assert item["retention_days"] == 2190
        assert item["status"] == "pending"
        assert set(item["fields"]) == {"as_of", "custody", "holders", "basis", "since"}
        assert item["subject_masked"].count("*") == 7
        assert "data" not in item
        detail = demo.http.get(f"/v1/me/previews/{request_id}", headers=clara(demo)).json()
        assert {k: v for k, v in detail.items() if k not in ("data", "register_name")} == item
        assert detail["data"]["custody"] == "sole"
        assert set(detail["data"]) <= set(item["fields"])  # minimised as the service gets it

    def test_accept_then_collect_once(self, demo) -> None:
        parent, child = demo.citizen("uvo", "parent"), demo.citizen("uvo", "child")
        request_id = held(demo)["request_id"]
        shown = demo.http.get(f"/v1/me/previews/{request_id}", headers=clara(demo)).json()
        accepted = decide(demo, request_id, "accept")
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "accepted"
        collected = status(demo, request_id)
        assert collected.status_code == 200, collected.text
        answer = collected.json()
        assert set(answer) == {"transfer_id", "proof"}
        assert answer["transfer_id"] == request_id
        proof = claims(answer["proof"])
        assert proof["aud"] == UVO and proof["sub"] == child["idnr"]
        assert proof["data"] == shown["data"]  # exactly what the citizen saw
        # handed out once; the sealed content is gone
        problem(status(demo, request_id), 410, "preview-collected")
        log = demo.transfers(parent["idnr"], wait_for={request_id})
        [entry] = [e for e in log if e["id"] == request_id]
        assert entry["outcome"] == "delivered"
        after = demo.http.get(f"/v1/me/previews/{request_id}", headers=clara(demo)).json()
        assert after["status"] == "collected" and after["data"] is None

    def test_refuse(self, demo, live_server) -> None:
        parent = demo.citizen("uvo", "parent")
        request_id = held(demo)["request_id"]
        refused = decide(demo, request_id, "refuse")
        assert refused.status_code == 200, refused.text
        assert refused.json()["status"] == "refused"
        assert refused.json()["data"] is None
        body = problem(status(demo, request_id), 403, "preview-refused")
        assert body["transfer_id"] == request_id
        assert "proof" not in body and "data" not in body
        assert sealed_rows(live_server, request_id) == [("refused", None)]
        log = demo.transfers(parent["idnr"], wait_for={request_id})
        [entry] = [e for e in log if e["id"] == request_id]
        assert (entry["outcome"], entry["error_type"]) == ("refused", "preview-refused")
        assert entry["data_categories"] == []

    def test_list_filters_by_status(self, demo) -> None:
        first, second = held(demo)["request_id"], held(demo)["request_id"]
        assert decide(demo, first, "refuse").status_code == 200
        pending = {i["request_id"] for i in
                   demo.http.get("/v1/me/previews", headers=clara(demo)).json()["items"]}
        assert second in pending and first not in pending
        every = demo.http.get("/v1/me/previews", params={"status": "all"},
                              headers=clara(demo)).json()["items"]
        assert {first, second} <= {i["request_id"] for i in every}
        refused = demo.http.get("/v1/me/previews", params={"status": "refused"},
                                headers=clara(demo)).json()["items"]
        assert [i["request_id"] for i in refused] == [first]
        problem(demo.http.get("/v1/me/previews", params={"status": "nope"},
                              headers=clara(demo)), 422, "invalid-request")

    def test_a_consent_can_ask_for_a_preview(self, demo) -> None:
        anna = demo.citizen("elfe", "parent")
        consent = demo.grant(anna["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                             subject=demo.citizen("elfe", "child")["idnr"], preview=True)
        assert consent["preview"] is True
        listed = demo.http.get("/v1/consents", headers=bearer(demo.citizen_token(anna["idnr"])))
        assert [c["preview"] for c in listed.json()["items"] if c["id"] == consent["id"]] == [True]
        response = demo.request_proof(ELTERNGELD, {**birth_request(demo),
                                                   "consent_id": consent["id"]})
        assert response.status_code == 202, response.text
        request_id = response.json()["request_id"]
        # the consenting parent decides (the subject is her child)
        anna_h = bearer(demo.citizen_token(anna["idnr"]))
        assert decide(demo, request_id, "accept", anna_h).status_code == 200
        assert status(demo, request_id, ELTERNGELD).status_code == 200
        # without the flag the same request is released at once
        plain = demo.grant(anna["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                           subject=demo.citizen("elfe", "child")["idnr"])
        assert plain["preview"] is False
        assert demo.request_proof(ELTERNGELD, {**birth_request(demo),
                                               "consent_id": plain["id"]}).status_code == 200

    def test_the_consent_use_is_spent_at_collection(self, demo) -> None:
        consent_id = uvo_consent(demo, max_uses=1)
        first, second = held(demo, consent_id)["request_id"], held(demo, consent_id)["request_id"]
        for request_id in (first, second):
            assert decide(demo, request_id, "accept").status_code == 200
        assert status(demo, first).status_code == 200
        body = problem(status(demo, second), 403, "consent-required")
        assert body["transfer_id"] == second
        problem(status(demo, second), 403, "preview-refused")

    def test_idempotency_key_replays_the_202(self, demo) -> None:
        key = str(uuid.uuid4())
        consent_id = uvo_consent(demo)
        first = held(demo, consent_id, **{"idempotency-key": key})
        again = demo.http.post("/v1/proof-requests", json=custody_request(demo, consent_id),
                               headers={**bearer(demo.service_token(UVO)),
                                        "idempotency-key": key})
        assert again.status_code == 202, again.text
        assert again.json() == first
        assert again.headers["location"] == f"/v1/proof-requests/{first['request_id']}"
        pending = demo.http.get("/v1/me/previews", headers=clara(demo)).json()["items"]
        assert [i["request_id"] for i in pending] == [first["request_id"]]


class TestPreviewAdversarial:
    def test_another_citizen_gets_404(self, demo) -> None:
        request_id = held(demo)["request_id"]
        anna = bearer(demo.citizen_token(demo.citizen("elfe", "parent")["idnr"]))
        leon = bearer(demo.citizen_token(demo.citizen("uvo", "child")["idnr"]))
        for who in (anna, leon):  # not even the subject: the consenting parent decides
            problem(demo.http.get(f"/v1/me/previews/{request_id}", headers=who), 404,
                    "not-found")
            problem(decide(demo, request_id, "accept", who), 404, "not-found")
            items = demo.http.get("/v1/me/previews", params={"status": "all"},
                                  headers=who).json()["items"]
            assert request_id not in {i["request_id"] for i in items}
        # unchanged for Clara
        assert demo.http.get(f"/v1/me/previews/{request_id}",
                             headers=clara(demo)).json()["status"] == "pending"

    def test_another_service_gets_404(self, demo) -> None:
        request_id = held(demo)["request_id"]
        assert decide(demo, request_id, "accept").status_code == 200
        other = problem(status(demo, request_id, ELTERNGELD), 404, "not-found")
        unknown = problem(status(demo, str(uuid.uuid4())), 404, "not-found")
        assert other["detail"] == unknown["detail"]  # no oracle
        problem(status(demo, "../v1/consents"), 404, "not-found")
        # still there for its owner
        assert status(demo, request_id).status_code == 200

    def test_unauthenticated_and_wrong_kind_of_token(self, demo) -> None:
        request_id = held(demo)["request_id"]
        problem(demo.http.get(f"/v1/proof-requests/{request_id}"), 401, "unauthenticated")
        problem(demo.http.get(f"/v1/proof-requests/{request_id}", headers=clara(demo)), 401,
                "unauthenticated")
        service = bearer(demo.service_token(UVO))
        problem(demo.http.get("/v1/me/previews", headers=service), 401, "unauthenticated")
        problem(decide(demo, request_id, "accept", service), 401, "unauthenticated")

    def test_double_decision_is_409(self, demo) -> None:
        request_id = held(demo)["request_id"]
        assert decide(demo, request_id, "accept").status_code == 200
        body = problem(decide(demo, request_id, "refuse"), 409, "conflict")
        assert "accepted" in body["detail"]
        problem(decide(demo, request_id, "accept"), 409, "conflict")

    @pytest.mark.parametrize("body", [{"decision": "maybe"}, {}, {"decision": "accept", "x": 1}])
    def test_bad_decision(self, demo, body) -> None:
        request_id = held(demo)["request_id"]
        response = demo.http.post(f"/v1/me/previews/{request_id}", json=body,
                                  headers=clara(demo))
        problem(response, 422, "invalid-request")

    def test_no_preview_content_in_logs(self, demo) -> None:
        parent, child = demo.citizen("uvo", "parent"), demo.citizen("uvo", "child")
        with capture_logs() as logs:
            first = held(demo)["request_id"]
            shown = demo.http.get(f"/v1/me/previews/{first}", headers=clara(demo)).json()
            decide(demo, first, "accept")
            released = status(demo, first).json()
            second = held(demo)["request_id"]
            decide(demo, second, "refuse")
        # the demo register simulators run in this process; their access log (register side,
        # IdNr in the Sorgeregister's URL path) is not the broker's
        text_ = repr([e for e in logs if not str(e.get("path", "")).startswith("/registers/")])
        assert any(e.get("event") == "proof.preview_held" for e in logs)
        for secret in (child["idnr"], parent["idnr"], released["proof"],
                       json.dumps(shown["data"]), shown["data"]["since"], "sole"):
            assert secret not in text_


@pytest.fixture(name="short_ttl")
def fx_short_ttl(start_live_server):
    """A demo server whose previews expire after ``ttl_s``."""
    def start(sweep_s: float, ttl_s: int = 1) -> tuple[Any, Demo]:
        live = start_live_server(preview_ttl_s=ttl_s, preview_sweep_interval_s=sweep_s)
        credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
        http = httpx.Client(base_url=live.base_url, timeout=20)
        clients.append(http)
        return live, Demo(base_url=live.base_url, credentials=credentials, http=http)

    clients: list[Any] = []
    yield start
    for http in clients:
        http.close()


class TestPreviewExpiry:
    def test_expired_previews_are_destroyed(self, short_ttl) -> None:
        live, demo = short_ttl(0.2, ttl_s=2)
        undecided = held(demo)["request_id"]
        late = held(demo)["request_id"]
        assert sealed_rows(live, late)[0][1] is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(
                sealed_rows(live, i)[0][1] is not None for i in (undecided, late)):
            time.sleep(0.1)
        # the sweeper destroyed the sealed bytes without anybody asking
        assert sealed_rows(live, undecided) == [("expired", None)]
        assert sealed_rows(live, late) == [("expired", None)]
        problem(decide(demo, late, "accept"), 410, "preview-expired")
        body = problem(status(demo, undecided), 410, "preview-expired")
        assert body["transfer_id"] == undecided
        shown = demo.http.get(f"/v1/me/previews/{undecided}", headers=clara(demo)).json()
        assert shown["status"] == "expired" and shown["data"] is None
        parent = demo.citizen("uvo", "parent")
        log = demo.transfers(parent["idnr"], wait_for={undecided, late})
        outcomes = {e["id"]: (e["outcome"], e["error_type"]) for e in log}
        assert outcomes[undecided] == outcomes[late] == ("refused", "preview-expired")

    def test_reads_check_expiry_even_if_the_sweeper_lags(self, short_ttl) -> None:
        live, demo = short_ttl(3600)
        pending = held(demo)
        request_id = pending["request_id"]
        expires_at = datetime.fromisoformat(pending["expires_at"])
        wait_until(lambda: datetime.now(UTC) > expires_at, what="the preview's expiry")
        assert sealed_rows(live, request_id)[0][0] == "pending"  # the sweeper has not run
        problem(decide(demo, request_id, "accept"), 410, "preview-expired")
        assert sealed_rows(live, request_id) == [("expired", None)]  # destroyed on read
        problem(status(demo, request_id), 410, "preview-expired")
        assert demo.http.get("/v1/me/previews",
                             headers=clara(demo)).json()["items"] == []


class TestNoPreviewByDefault:
    def test_other_permissions_are_released_at_once(self, demo) -> None:
        response = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert response.status_code == 200
        assert "proof" in response.json()
