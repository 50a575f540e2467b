"""Idempotency-Key on POST /v1/proof-requests: a retry returns the first answer, fetches
nothing twice and records one transfer."""

import asyncio
import uuid

from sqlalchemy import text

from tests.e2e.conftest import bearer
from tests.e2e.helpers import NAMENSDIENST, birth_request, problem


def _post(demo, body, key, token):
    return demo.http.post("/v1/proof-requests", json=body,
                          headers={**bearer(token), "idempotency-key": key})


class TestIdempotencyKey:
    def test_a_retry_returns_the_first_answer_and_fetches_once(self, demo, live_server) -> None:
        token = demo.service_token(NAMENSDIENST)
        body = birth_request(demo, "namensbestimmung")
        key = str(uuid.uuid4())
        first = _post(demo, body, key, token)
        second = _post(demo, body, key, token)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        child = demo.citizen("elfe", "child")
        log = demo.transfers(child["idnr"], wait_for={first.json()["transfer_id"]})
        assert [e["id"] for e in log] == [first.json()["transfer_id"]]

    def test_the_same_key_with_another_body_is_refused(self, demo) -> None:
        token = demo.service_token(NAMENSDIENST)
        body = birth_request(demo, "namensbestimmung")
        key = str(uuid.uuid4())
        assert _post(demo, body, key, token).status_code == 200
        other = {**body, "parameters": {**body["parameters"], "family_name": "Schmidt"}}
        assert "different request" in problem(_post(demo, other, key, token), 422,
                                              "invalid-request")["detail"]

    def test_keys_are_per_service(self, demo) -> None:
        key = str(uuid.uuid4())
        body = birth_request(demo, "namensbestimmung")
        first = _post(demo, body, key, demo.service_token(NAMENSDIENST))
        assert first.status_code == 200
        # another service using the same key value gets its own (here: refused) answer
        other = _post(demo, birth_request(demo, "kindergeld-antrag"), key,
                      demo.service_token("familienkasse"))
        problem(other, 403, "consent-required")

    def test_a_failed_first_attempt_may_be_retried(self, demo) -> None:
        token = demo.service_token(NAMENSDIENST)
        body = birth_request(demo, "namensbestimmung")
        key = str(uuid.uuid4())
        demo.http.put("/registers/_knobs", json={"failure_rate": 1.0})
        problem(_post(demo, body, key, token), 502, "register-unavailable")
        demo.http.put("/registers/_knobs", json={"failure_rate": 0.0})
        assert _post(demo, body, key, token).status_code == 200

    def test_a_malformed_key(self, demo) -> None:
        response = _post(demo, birth_request(demo, "namensbestimmung"), "bad key with spaces",
                         demo.service_token(NAMENSDIENST))
        problem(response, 422, "invalid-request")

    def test_the_stored_answer_is_sealed(self, demo, live_server) -> None:
        token = demo.service_token(NAMENSDIENST)
        answer = _post(demo, birth_request(demo, "namensbestimmung"), str(uuid.uuid4()), token)
        engine = live_server.component("broker").engine

        async def stored() -> list[bytes]:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT response FROM broker_idempotency"))
                return [bytes(r[0]) for r in rows if r[0] is not None]

        blobs = asyncio.run_coroutine_threadsafe(stored(), live_server.loop).result(10)
        assert blobs
        assert not any(answer.json()["proof"].encode()[:40] in blob for blob in blobs)
