"""Abuse limits towards the registers: a bound on calls in flight per register (issue 7)."""

from concurrent.futures import ThreadPoolExecutor

from tests.e2e.helpers import NAMENSDIENST, birth_request, problem


def test_a_saturated_register_is_503_register_busy_and_recorded(make_demo) -> None:
    demo = make_demo(register_max_concurrency=1, register_queue_timeout_s=0.1,
                     register_retries=0)
    knobs = demo.http.put("/registers/_knobs", json={"latency_ms": 1500})
    assert knobs.status_code in {200, 204}, knobs.text
    token = demo.service_token(NAMENSDIENST)
    body = birth_request(demo, "namensbestimmung")

    def ask(_: int):
        return demo.http.post("/v1/proof-requests", json=body,
                              headers={"authorization": f"Bearer {token}"})

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(ask, range(3)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 503, 503], [a.text for a in answers]
    busy = [a for a in answers if a.status_code == 503]
    for answer in busy:
        refused = problem(answer, 503, "register-busy")
        assert answer.headers["retry-after"] == "1"
        assert "proof" not in refused
    child = demo.citizen("elfe", "child")
    ids = {a.json()["transfer_id"] for a in busy}
    log = demo.transfers(child["idnr"], wait_for=ids)
    assert {e["outcome"] for e in log if e["id"] in ids} == {"failed"}
