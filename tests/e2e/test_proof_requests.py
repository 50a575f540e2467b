"""POST /v1/proof-requests end to end: policy, consent, routing, register, record, proof."""

import time
import tomllib
from pathlib import Path

import httpx
import jwt
import pytest

import policies
from einmal_app.server import DemoPolicyError, build_components
from tests.e2e.helpers import ELTERNGELD, FAMILIENKASSE, NAMENSDIENST, birth_request, problem


class TestProofRequestRefuses:
    def test_without_token(self, demo) -> None:
        response = demo.http.post("/v1/proof-requests", json={})
        problem(response, 401, "unauthenticated")

    def test_with_a_citizen_token(self, demo) -> None:
        parent = demo.citizen("elfe", "parent")
        response = demo.http.post(
            "/v1/proof-requests", json=birth_request(demo),
            headers={"authorization": f"Bearer {demo.citizen_token(parent['idnr'])}"})
        problem(response, 401, "unauthenticated")

    @pytest.mark.parametrize(("change", "needle"), [
        ({"subject": "86095742718"}, "check digit"),
        ({"subject": "11123456786"}, "three times"),
        ({"proof_type": "marriage"}, "proof_type"),
        ({"unexpected": 1}, "unexpected"),
        ({"subject": 86095742719}, "subject"),
    ])
    def test_invalid_input_with_a_clear_problem(self, demo, change, needle) -> None:
        body = {**birth_request(demo), **change}
        response = demo.request_proof(ELTERNGELD, body)
        assert needle in problem(response, 422, "invalid-request")["detail"]

    def test_malformed_json(self, demo) -> None:
        response = demo.http.post(
            "/v1/proof-requests", content=b'{"proof_type": "birth",',
            headers={"authorization": f"Bearer {demo.service_token(ELTERNGELD)}",
                     "content-type": "application/json"})
        problem(response, 400, "invalid-request")

    def test_missing_parameters(self, demo) -> None:
        body = {**birth_request(demo), "parameters": {}}
        problem(demo.request_proof(NAMENSDIENST, {**body, "purpose": "namensbestimmung"}),
                422, "invalid-request")

    def test_without_consent_is_refused_and_recorded(self, demo) -> None:
        body = problem(demo.request_proof(FAMILIENKASSE, birth_request(demo, "kindergeld-antrag")),
                       403, "consent-required")
        assert body["code"] == "EDM:ERR:0002"
        child = demo.citizen("elfe", "child")
        log = demo.transfers(child["idnr"], wait_for={body["transfer_id"]})
        entry = next(e for e in log if e["id"] == body["transfer_id"])
        assert entry["outcome"] == "refused"
        assert entry["error_type"] == "consent-required"

    def test_purpose_outside_the_policy(self, demo) -> None:
        body = birth_request(demo, "steuerpruefung")
        response = problem(demo.request_proof(ELTERNGELD, body), 403, "permission-denied")
        assert response["transfer_id"]

    def test_proof_type_outside_the_policy(self, demo) -> None:
        parent = demo.citizen("elfe", "parent")
        body = {"proof_type": "income", "subject": parent["idnr"], "purpose": "kindergeld-antrag",
                "parameters": {"from": "2025-10", "to": "2026-09"}}
        problem(demo.request_proof(FAMILIENKASSE, body), 403, "permission-denied")

    def test_consent_for_another_service(self, demo) -> None:
        parent, child = demo.citizen("elfe", "parent"), demo.citizen("elfe", "child")
        consent = demo.grant(parent["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                             subject=child["idnr"])
        body = {**birth_request(demo, "kindergeld-antrag"), "consent_id": consent["id"]}
        problem(demo.request_proof(FAMILIENKASSE, body), 403, "consent-required")

    def test_consent_about_another_subject(self, demo) -> None:
        parent = demo.citizen("elfe", "parent")
        consent = demo.grant(parent["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag")
        body = {**birth_request(demo), "consent_id": consent["id"]}  # subject: the child
        problem(demo.request_proof(ELTERNGELD, body), 403, "consent-required")

    def test_consent_for_a_child_by_someone_not_named_as_parent(self, demo) -> None:
        stranger = demo.citizen("uvo", "parent")
        child = demo.citizen("elfe", "child")
        consent = demo.grant(stranger["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                             subject=child["idnr"])
        body = {**birth_request(demo), "consent_id": consent["id"]}
        response = problem(demo.request_proof(ELTERNGELD, body), 403, "consent-required")
        assert "not named" in response["detail"]

    def test_revoked_consent_stops_the_next_request(self, demo) -> None:
        parent, child = demo.citizen("elfe", "parent"), demo.citizen("elfe", "child")
        consent = demo.grant(parent["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                             subject=child["idnr"])
        body = {**birth_request(demo), "consent_id": consent["id"]}
        assert demo.request_proof(ELTERNGELD, body).status_code == 200
        revoked = demo.http.delete(f"/v1/consents/{consent['id']}",
                                   headers={"authorization":
                                            f"Bearer {demo.citizen_token(parent['idnr'])}"})
        assert revoked.status_code == 200
        assert revoked.json()["status"] == "revoked"
        problem(demo.request_proof(ELTERNGELD, body), 403, "consent-required")

    def test_used_up_consent(self, demo) -> None:
        parent, child = demo.citizen("elfe", "parent"), demo.citizen("elfe", "child")
        consent = demo.grant(parent["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                             subject=child["idnr"], max_uses=1)
        body = {**birth_request(demo), "consent_id": consent["id"]}
        assert demo.request_proof(ELTERNGELD, body).status_code == 200
        problem(demo.request_proof(ELTERNGELD, body), 403, "consent-required")

    def test_unknown_municipality(self, demo) -> None:
        body = birth_request(demo, "namensbestimmung")
        body["parameters"] = {**body["parameters"], "place_of_birth": "09999999"}
        response = problem(demo.request_proof(NAMENSDIENST, body), 422, "routing-failed")
        assert response["code"] == "EDM:ERR:0006"

    def test_no_record_is_not_found(self, demo) -> None:
        body = birth_request(demo, "namensbestimmung")
        body["subject"] = "86095742719"  # valid, but not in the synthetic population
        response = problem(demo.request_proof(NAMENSDIENST, body), 404, "not-found")
        assert response["transfer_id"]


class TestProofRequestDelivers:
    def test_a_signed_minimised_birth_proof_on_legal_basis(self, demo) -> None:
        response = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"transfer_id", "proof"}
        jwks = demo.http.get("/.well-known/jwks.json").json()
        key = jwt.PyJWK(jwks["keys"][0]).key
        claims = jwt.decode(body["proof"], key, algorithms=["EdDSA"], audience=NAMENSDIENST)
        assert claims["jti"] == body["transfer_id"]
        assert claims["proof_type"] == "birth"
        assert claims["register"]["id"].startswith("standesamt:")
        child = demo.citizen("elfe", "child")
        assert claims["sub"] == child["idnr"]
        assert claims["data"]["birth_date"] == child["birth_date"]
        policy = _allowed_fields(demo, NAMENSDIENST, "birth", "namensbestimmung")
        assert set(claims["data"]) <= policy

    def test_the_transfer_appears_for_the_child_and_both_parents(self, demo) -> None:
        response = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        transfer_id = response.json()["transfer_id"]
        for person in (demo.citizen("elfe", "child"), demo.citizen("elfe", "parent", 0),
                       demo.citizen("elfe", "parent", 1)):
            log = demo.transfers(person["idnr"], wait_for={transfer_id})
            entry = next(e for e in log if e["id"] == transfer_id)
            assert entry["outcome"] == "delivered"
            assert entry["service"]["id"] == NAMENSDIENST
            assert entry["legal_basis"]
            assert entry["register"]["id"].startswith("standesamt:")
            assert entry["data_categories"]
            # never proof values
            assert demo.citizen("elfe", "child")["given_names"] not in str(entry)

    def test_another_family_does_not_see_it(self, demo) -> None:
        response = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        transfer_id = response.json()["transfer_id"]
        demo.transfers(demo.citizen("elfe", "child")["idnr"], wait_for={transfer_id})
        other = demo.transfers(demo.citizen("uvo", "parent")["idnr"])
        assert transfer_id not in {e["id"] for e in other}


def _allowed_fields(demo, service_id: str, proof_type: str, purpose: str) -> set[str]:
    for path in (Path(policies.__file__).parent / "documents").glob("*.toml"):
        document = tomllib.loads(path.read_text())
        if document["id"] == service_id:
            for permission in document["permissions"]:
                if permission["proof_type"] == proof_type and permission["purpose"] == purpose:
                    return set(permission["fields"])
    raise AssertionError("no such permission")


class TestRegisterFailures:
    def test_register_down_is_502_and_recorded_as_failed(self, demo) -> None:
        knobs = demo.http.put("/registers/_knobs", json={"failure_rate": 1.0})
        assert knobs.status_code in {200, 204}, knobs.text
        response = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        body = problem(response, 502, "register-unavailable")
        child = demo.citizen("elfe", "child")
        log = demo.transfers(child["idnr"], wait_for={body["transfer_id"]})
        entry = next(e for e in log if e["id"] == body["transfer_id"])
        assert entry["outcome"] == "failed"

    def test_register_timeout_is_504(self, make_demo) -> None:
        demo = make_demo(register_timeout_s=0.2, register_retries=0)
        knobs = demo.http.put("/registers/_knobs", json={"latency_ms": 1000})
        assert knobs.status_code in {200, 204}
        started = time.monotonic()
        response = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        problem(response, 504, "register-timeout")
        assert time.monotonic() - started < 5


class TestDemoOnlyPaths:
    def test_demo_login_and_credentials_do_not_exist_outside_demo_mode(
            self, start_live_server, production_policies) -> None:
        live = start_live_server(demo=False, policies_dir=production_policies)
        with httpx.Client(base_url=live.base_url) as http:
            assert http.post("/demo/citizen-token", json={"idnr": "86095742719"}).status_code == 404
            assert http.get("/demo/credentials").status_code == 404
            # F1: the register simulators (open, synthetic) are not served outside demo mode
            assert http.get("/registers/_knobs").status_code == 404
        assert not (live.data_dir / "demo-credentials.json").exists()

    def test_demo_policy_documents_are_refused_outside_demo_mode(self, make_settings) -> None:
        with pytest.raises(DemoPolicyError, match="public knowledge"):
            build_components(make_settings(demo=False))
