"""Abuse limits: 429 problem+json with Retry-After, per service, per citizen, per address."""

import pytest

from tests.e2e.conftest import bearer
from tests.e2e.helpers import NAMENSDIENST, birth_request, problem


@pytest.fixture(name="tight")
def fx_tight(make_demo):
    return make_demo(rate_limit_service_per_s=0.5, rate_limit_service_burst=3,
                     rate_limit_citizen_per_s=0.5, rate_limit_citizen_burst=3,
                     rate_limit_token_per_s=0.5, rate_limit_token_burst=4)


class TestRateLimits:
    def test_per_service(self, tight) -> None:
        token = tight.service_token(NAMENSDIENST)
        body = birth_request(tight, "namensbestimmung")
        statuses = [tight.http.post("/v1/proof-requests", json=body, headers=bearer(token))
                    for _ in range(4)]
        assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
        limited = problem(statuses[3], 429, "rate-limited")
        assert "proof" not in limited
        assert int(statuses[3].headers["retry-after"]) >= 1
        # another service has its own bucket
        other = tight.http.post("/v1/proof-requests",
                                json=birth_request(tight, "kindergeld-antrag"),
                                headers=bearer(tight.service_token("familienkasse")))
        assert other.status_code == 403  # refused for lack of consent, not rate-limited

    def test_per_citizen(self, tight) -> None:
        anna = tight.citizen("elfe", "parent")
        token = tight.citizen_token(anna["idnr"])
        answers = [tight.http.get("/v1/consents", headers=bearer(token)) for _ in range(4)]
        assert [r.status_code for r in answers[:3]] == [200, 200, 200]
        problem(answers[3], 429, "rate-limited")
        clara = tight.citizen("uvo", "parent")
        assert tight.http.get("/v1/consents",
                              headers=bearer(tight.citizen_token(clara["idnr"]))).status_code == 200

    def test_token_endpoint_per_address(self, tight) -> None:
        forms = [tight.token_form(NAMENSDIENST) for _ in range(5)]
        answers = [tight.http.post("/v1/token", data=form) for form in forms]
        assert [r.status_code for r in answers[:4]] == [200, 200, 200, 200]
        problem(answers[4], 429, "rate-limited")
