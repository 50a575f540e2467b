"""Adversarial requests over real HTTP: each gets a clear problem+json, nothing is released,
and (where a transfer could be recorded) nothing is recorded that should not be.

Complements test_service_auth.py (assertion replay, expiry, aud, foreign key, alg none, HS256
confusion), test_proof_requests.py (policy and consent refusals, demo paths outside demo mode)
and test_consents_and_cockpit.py (consent listing/revocation by another citizen).
"""

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from einmal.keys import load_or_create_signing_key
from einmal.tokens import TokenIssuer
from einmal_app.demo import DEMO_IDP_KEY
from tests.e2e.conftest import Demo, in_days
from tests.e2e.helpers import ELTERNGELD, FAMILIENKASSE, NAMENSDIENST, birth_request, problem
from tests.e2e.security_support import auditor, bearer, channel_token, module_server, recorded


@pytest.fixture(name="env", scope="module")
def fx_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Demo]]:
    yield from module_server(tmp_path_factory.mktemp("adversarial"))


@pytest.fixture(name="sdemo")
def fx_sdemo(env: tuple[Any, Demo]) -> Demo:
    return env[1]


def _raw_post(demo: Demo, path: str, content: bytes | str, token: str | None,
              **headers: str) -> httpx.Response:
    head = {"content-type": "application/json", **headers}
    if token:
        head.update(bearer(token))
    return demo.http.post(path, content=content, headers=head)


def _no_proof(body: dict[str, Any]) -> dict[str, Any]:
    """``body``: a problem as returned by ``problem()``: nothing was released."""
    assert "proof" not in body
    return body


def _child(demo: Demo) -> dict[str, Any]:
    return demo.citizen("elfe", "child")


class TestServiceBoundaries:
    def test_one_services_token_cannot_use_another_services_permission(self, sdemo) -> None:
        """Familienkasse presents the Elterngeldstelle's purpose and its consent: refused and
        recorded as refused, never delivered."""
        anna, child = sdemo.citizen("elfe", "parent"), _child(sdemo)
        consent = sdemo.grant(anna["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                              subject=child["idnr"])
        body = {**birth_request(sdemo), "consent_id": consent["id"]}  # elterngeld-antrag
        response = sdemo.request_proof(FAMILIENKASSE, body)
        problem_body = _no_proof(problem(response, 403, "permission-denied"))
        log = sdemo.transfers(child["idnr"], wait_for={problem_body["transfer_id"]})
        entry = next(e for e in log if e["id"] == problem_body["transfer_id"])
        assert entry["outcome"] == "refused"
        assert entry["service"]["id"] == FAMILIENKASSE
        consents = sdemo.http.get("/v1/consents",
                                  headers=bearer(sdemo.citizen_token(anna["idnr"]))).json()
        assert next(c for c in consents["items"] if c["id"] == consent["id"])["uses"] == 0

    @pytest.mark.parametrize("kind", ["citizen", "auditor", "channel"])
    def test_other_token_kinds_are_not_service_tokens(self, env, kind) -> None:
        live, demo = env
        token = {"citizen": lambda: demo.citizen_token(demo.citizen("elfe", "parent")["idnr"]),
                 "auditor": lambda: auditor(demo), "channel": lambda: channel_token(live)}[kind]()
        response = demo.http.post("/v1/proof-requests",
                                  json=birth_request(demo, "namensbestimmung"),
                                  headers=bearer(token))
        _no_proof(problem(response, 401, "unauthenticated"))

    def test_a_citizen_token_with_a_look_alike_idnr_claim(self, env) -> None:
        """Even a correctly signed citizen token must name an ASCII IdNr."""
        live, demo = env
        key = load_or_create_signing_key(live.settings.keys_dir, DEMO_IDP_KEY)
        issuer = TokenIssuer(key=key, issuer=live.settings.demo_issuer,
                             audience="einmal-citizen", ttl_s=60)
        anna = demo.citizen("elfe", "parent")["idnr"]
        fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in anna)
        token = issuer.issue(fullwidth, idnr=fullwidth)
        problem(demo.http.get("/v1/consents", headers=bearer(token)), 401, "unauthenticated")
        problem(demo.http.get("/v1/me/transfers", headers=bearer(token)), 401, "unauthenticated")


class TestIdor:
    def test_the_other_parent_cannot_revoke_and_the_answer_is_no_oracle(self, sdemo) -> None:
        anna, ben = sdemo.citizen("elfe", "parent"), sdemo.citizen("elfe", "parent", 1)
        consent = sdemo.grant(anna["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                              subject=_child(sdemo)["idnr"])
        ben_token = sdemo.citizen_token(ben["idnr"])
        theirs = problem(sdemo.http.delete(f"/v1/consents/{consent['id']}",
                                           headers=bearer(ben_token)), 404, "not-found")
        unknown = problem(sdemo.http.delete("/v1/consents/00000000-0000-4000-8000-000000000000",
                                            headers=bearer(ben_token)), 404, "not-found")
        assert theirs["detail"] == unknown["detail"]
        listed = sdemo.http.get("/v1/consents", headers=bearer(ben_token)).json()["items"]
        assert consent["id"] not in {c["id"] for c in listed}
        mine = sdemo.http.get("/v1/consents",
                              headers=bearer(sdemo.citizen_token(anna["idnr"]))).json()["items"]
        assert next(c for c in mine if c["id"] == consent["id"])["status"] == "active"

    def test_another_citizens_cursor_shows_only_my_own_transfers(self, sdemo) -> None:
        anna, clara = sdemo.citizen("elfe", "parent"), sdemo.citizen("uvo", "parent")
        released = [sdemo.request_proof(NAMENSDIENST, birth_request(sdemo, "namensbestimmung"))
                    for _ in range(2)]
        assert all(r.status_code == 200 for r in released)
        anna_all = sdemo.transfers(anna["idnr"],
                                   wait_for={r.json()["transfer_id"] for r in released})
        assert len(anna_all) >= 2
        page = sdemo.http.get("/v1/me/transfers", params={"limit": 1},
                              headers=bearer(sdemo.citizen_token(anna["idnr"]))).json()
        assert page["next_cursor"]
        response = sdemo.http.get("/v1/me/transfers",
                                  params={"limit": 200, "cursor": page["next_cursor"]},
                                  headers=bearer(sdemo.citizen_token(clara["idnr"])))
        if response.status_code == 200:
            seen = {i["id"] for i in response.json()["items"]}
            assert not seen & {i["id"] for i in anna_all}
        else:
            problem(response, response.status_code, "invalid-request")

    def test_the_auditor_export_carries_no_proof_values(self, sdemo) -> None:
        anna, child = sdemo.citizen("elfe", "parent"), _child(sdemo)
        birth = sdemo.request_proof(NAMENSDIENST, birth_request(sdemo, "namensbestimmung"))
        consent = sdemo.grant(anna["idnr"], ELTERNGELD, ["income"], "elterngeld-antrag")
        income = sdemo.request_proof(ELTERNGELD, {
            "proof_type": "income", "subject": anna["idnr"], "purpose": "elterngeld-antrag",
            "consent_id": consent["id"], "parameters": {"from": "2025-10", "to": "2026-09"}})
        assert birth.status_code == income.status_code == 200, income.text
        data = _claims(income.json()["proof"])["data"]
        total = data["total_gross_eur"]
        assert total and _claims(birth.json()["proof"])["data"]["child_given_names"]
        sdemo.transfers(anna["idnr"], wait_for={birth.json()["transfer_id"],
                                                income.json()["transfer_id"]})
        export = sdemo.http.get("/v1/audit/export", headers=bearer(auditor(sdemo)))
        assert export.status_code == 200
        lines = [json.loads(line) for line in export.text.splitlines() if line.strip()]
        text = json.dumps([[line.get("entry"), base64.b64decode(line["leaf"]).decode()
                            if line.get("leaf") else None] for line in lines], ensure_ascii=False)
        for secret in (child["given_names"], anna["given_names"], child["idnr"], anna["idnr"],
                       child["birth_date"]):
            assert secret not in text
        # Field *names* appear as data_categories; field *values* never do.
        for line in lines:
            entry = line.get("entry") or {}
            leaf = json.loads(base64.b64decode(line["leaf"])) if line.get("leaf") else {}
            for shown in (entry, leaf):
                assert not {"data", "proof", "months", "holders", "parents"} & set(shown)
                assert total not in shown.values()
        assert f'"total_gross_eur": {total}' not in text


def _claims(jws: str) -> dict[str, Any]:
    payload = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class TestBodies:
    @pytest.mark.parametrize("path", ["/v1/consents", "/v1/token", "/demo/citizen-token",
                                      "/v1/transfer-records"])
    def test_oversized_bodies_on_every_post(self, env, path) -> None:
        live, demo = env
        token = {"/v1/consents": lambda: demo.citizen_token(demo.citizen("elfe", "parent")["idnr"]),
                 "/v1/transfer-records": lambda: channel_token(live)}.get(path, lambda: None)()
        content_type = ("application/x-www-form-urlencoded" if path == "/v1/token"
                        else "application/json")
        # the broker channel takes backlog batches up to 8 MiB; everything else 64 KiB
        size = 8 * 1024 * 1024 + 10 if path == "/v1/transfer-records" else 70_000
        body = b'{"a": "' + b"x" * size + b'"}'
        problem(_raw_post(demo, path, body, token, **{"content-type": content_type}),
                413, "payload-too-large")

    @pytest.mark.parametrize("depth", [17, 20_000])
    def test_deep_nesting_in_a_proof_request(self, sdemo, depth) -> None:
        watch = recorded(sdemo, _child(sdemo)["idnr"])
        body = birth_request(sdemo, "namensbestimmung")
        raw = json.dumps(body)[:-1] + ', "parameters": {"x": ' + "[" * depth + "]" * depth + "}}"
        response = _raw_post(sdemo, "/v1/proof-requests", _drop_first_parameters(raw),
                             sdemo.service_token(NAMENSDIENST))
        assert "nested" in _no_proof(problem(response, 422, "invalid-request"))["detail"]
        watch.nothing_new()

    def test_deep_nesting_in_a_consent(self, sdemo) -> None:
        raw = '{"service_id": "familienkasse", "proof_types": ' + "[" * 5000 + "]" * 5000 + "}"
        token = sdemo.citizen_token(sdemo.citizen("elfe", "parent")["idnr"])
        problem(_raw_post(sdemo, "/v1/consents", raw, token), 422, "invalid-request")

    def test_deep_nesting_in_an_ingest_batch(self, env) -> None:
        live, demo = env
        raw = '{"records": [' + "[" * 20_000 + "]" * 20_000 + "]}"
        problem(_raw_post(demo, "/v1/transfer-records", raw, channel_token(live)),
                422, "invalid-request")

    @pytest.mark.parametrize("member", ["purpose", "subject", "proof_type", "consent_id"])
    def test_duplicate_members_in_a_proof_request(self, sdemo, member) -> None:
        """The broker must not pick one of two values (a proxy or WAF in front may have checked
        the other): a duplicate member is refused before anything else happens."""
        watch = recorded(sdemo, _child(sdemo)["idnr"])
        body = {**birth_request(sdemo, "namensbestimmung"), "consent_id": None}
        decoy = {"purpose": "elterngeld-antrag", "subject": sdemo.citizen("uvo", "child")["idnr"],
                 "proof_type": "custody", "consent_id": "x"}[member]
        raw = "{" + json.dumps(member) + ": " + json.dumps(decoy) + ", " + json.dumps(body)[1:]
        response = _raw_post(sdemo, "/v1/proof-requests", raw, sdemo.service_token(NAMENSDIENST))
        assert member in _no_proof(problem(response, 422, "invalid-request"))["detail"]
        watch.nothing_new()

    def test_duplicate_members_inside_parameters(self, sdemo) -> None:
        body = birth_request(sdemo, "namensbestimmung")
        params = json.dumps(body["parameters"])
        raw = json.dumps(body).replace(params, params[:-1] + ', "birth_date": "2020-01-01"}')
        response = _raw_post(sdemo, "/v1/proof-requests", raw, sdemo.service_token(NAMENSDIENST))
        _no_proof(problem(response, 422, "invalid-request"))

    def test_duplicate_subject_in_a_consent(self, sdemo) -> None:
        anna = sdemo.citizen("elfe", "parent")
        raw = json.dumps({"service_id": FAMILIENKASSE, "proof_types": ["birth"],
                          "purpose": "kindergeld-antrag", "valid_until": in_days(5),
                          "subject": anna["idnr"]})
        raw = raw[:-1] + ', "subject": ' + json.dumps(sdemo.citizen("uvo", "child")["idnr"]) + "}"
        token = sdemo.citizen_token(anna["idnr"])
        before = sdemo.http.get("/v1/consents", headers=bearer(token)).json()["items"]
        problem(_raw_post(sdemo, "/v1/consents", raw, token), 422, "invalid-request")
        assert sdemo.http.get("/v1/consents", headers=bearer(token)).json()["items"] == before


def _drop_first_parameters(raw: str) -> str:
    """birth_request already has "parameters"; keep only the deep one (no duplicate member)."""
    body = json.loads(raw[: raw.index(', "parameters": {"x"')] + "}")
    del body["parameters"]
    return json.dumps(body)[:-1] + raw[raw.index(', "parameters": {"x"'):]


_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")  # noqa: RUF001 - full-width on purpose
_ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
LOOK_ALIKE_IDNRS = {
    "fullwidth": lambda i: i.translate(_FULLWIDTH),
    "arabic-indic": lambda i: i.translate(_ARABIC),
    "superscript": lambda i: i.translate(_SUPERSCRIPT),
    "nul": lambda i: i + "\x00",
    "newline": lambda i: i + "\n",
    "nbsp": lambda i: "\u00a0" + i,
    "zero-width": lambda i: i[:5] + "\u200b" + i[5:],
    "rtl-override": lambda i: "\u202e" + i,
    "short": lambda i: i[:-1],
}


class TestLookAlikesAndControlCharacters:
    @pytest.mark.parametrize("variant", sorted(LOOK_ALIKE_IDNRS))
    def test_idnr_in_a_proof_request(self, sdemo, variant) -> None:
        watch = recorded(sdemo, _child(sdemo)["idnr"])
        body = birth_request(sdemo, "namensbestimmung")
        body["subject"] = LOOK_ALIKE_IDNRS[variant](body["subject"])
        response = sdemo.request_proof(NAMENSDIENST, body)
        assert "subject" in _no_proof(problem(response, 422, "invalid-request"))["detail"]
        assert "transfer_id" not in response.json()
        watch.nothing_new()

    @pytest.mark.parametrize("variant", sorted(LOOK_ALIKE_IDNRS))
    def test_idnr_in_a_consent_and_the_demo_login(self, sdemo, variant) -> None:
        anna = sdemo.citizen("elfe", "parent")
        mangled = LOOK_ALIKE_IDNRS[variant](_child(sdemo)["idnr"])
        response = sdemo.http.post("/v1/consents", json={
            "service_id": FAMILIENKASSE, "proof_types": ["birth"], "purpose": "kindergeld-antrag",
            "valid_until": in_days(5), "subject": mangled},
            headers=bearer(sdemo.citizen_token(anna["idnr"])))
        problem(response, 422, "invalid-request")
        login = sdemo.http.post("/demo/citizen-token",
                                json={"idnr": LOOK_ALIKE_IDNRS[variant](anna["idnr"])})
        problem(login, 422, "invalid-request")

    @pytest.mark.parametrize("purpose", [
        "namensbestimmung\x00", "namensbestimmung\n", "namensbest\u0456mmung",  # Cyrillic i
        "NAMENSBESTIMMUNG", "namensbestimmung\u200b", "x" * 30_000, "",
    ], ids=["nul", "newline", "cyrillic-i", "upper", "zero-width", "30k", "empty"])
    def test_purpose_that_is_no_purpose_id_is_refused_unrecorded(self, sdemo, purpose) -> None:
        watch = recorded(sdemo, _child(sdemo)["idnr"])
        body = {**birth_request(sdemo, "namensbestimmung"), "purpose": purpose}
        response = sdemo.request_proof(NAMENSDIENST, body)
        assert "purpose" in _no_proof(problem(response, 422, "invalid-request"))["detail"]
        watch.nothing_new()

    @pytest.mark.parametrize("consent_id", ["y" * 30_000, "a\x00b", "../../etc/passwd", "\uff58"])
    def test_consent_id_that_is_no_id_is_refused_unrecorded(self, sdemo, consent_id) -> None:
        watch = recorded(sdemo, _child(sdemo)["idnr"])
        body = {**birth_request(sdemo, "namensbestimmung"), "consent_id": consent_id}
        response = sdemo.request_proof(NAMENSDIENST, body)
        _no_proof(problem(response, 422, "invalid-request"))
        watch.nothing_new()

    def test_oversized_correlation_id_is_refused(self, sdemo) -> None:
        response = sdemo.http.post("/v1/proof-requests",
                                   json=birth_request(sdemo, "namensbestimmung"),
                                   headers={**bearer(sdemo.service_token(NAMENSDIENST)),
                                            "x-correlation-id": "z" * 8000})
        _no_proof(problem(response, 422, "invalid-request"))

    @pytest.mark.parametrize("service_id", [
        "familienkass\u0435", "familienkasse\x00", "FAMILIENKASSE", "familienkasse "])  # Cyrillic e
    def test_service_id_look_alikes_in_a_consent(self, sdemo, service_id) -> None:
        response = sdemo.http.post("/v1/consents", json={
            "service_id": service_id, "proof_types": ["birth"], "purpose": "kindergeld-antrag",
            "valid_until": in_days(5)},
            headers=bearer(sdemo.citizen_token(sdemo.citizen("elfe", "parent")["idnr"])))
        assert "unknown service" in problem(response, 422, "invalid-request")["detail"]

    @pytest.mark.parametrize("proof_type", ["b\u0456rth", "Birth", "birth\x00"])
    def test_proof_type_look_alikes(self, sdemo, proof_type) -> None:
        body = {**birth_request(sdemo, "namensbestimmung"), "proof_type": proof_type}
        _no_proof(problem(sdemo.request_proof(NAMENSDIENST, body), 422, "invalid-request"))

    def test_no_idnr_is_echoed_in_a_refusal(self, sdemo) -> None:
        body = {**birth_request(sdemo, "namensbestimmung"), "subject": "86095742718"}
        response = sdemo.request_proof(NAMENSDIENST, body)
        assert "86095742718" not in problem(response, 422, "invalid-request")["detail"]


def test_demo_register_simulators_are_open_by_design(env) -> None:
    """F1: the simulators answer anyone - acceptable only because they exist only in demo mode
    (synthetic data); outside demo mode they are not served (test_settings, test_cli)."""
    _, demo = env
    child = _child(demo)
    response = demo.http.get(f"/registers/sorge/HB/records/{child['idnr']}")
    assert response.status_code == 200
