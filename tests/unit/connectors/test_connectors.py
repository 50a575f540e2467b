"""Connector unit tests: HTTP mocked with respx (only here), behaviour of each error path."""

from datetime import date

import httpx
import pytest

from connectors.base import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    RecordNotFoundError,
    RegisterRejectedError,
    RegisterTimeoutError,
    RegisterUnavailableError,
    RoutingError,
)
from connectors.factory import build_connectors
from connectors.simulators import messages
from einmal.domain.proofs import PROOF_FIELDS, ProofType

BASE = "http://registers.test/registers"
CHILD = "19573248168"
MOTHER, FATHER = "40329576010", "87045372919"
BIRTH_URL = f"{BASE}/standesamt/04011000/geburt"
BIRTH_PARAMS = {"place_of_birth": "04011000", "birth_date": "2026-10-12"}


def _answer(**child_overrides: str) -> bytes:
    child = {"idnr": CHILD, "vornamen": "Mia", "familienname": "Schmidt", "geschlecht": "w",
             "geburtsdatum": "2026-10-12", **child_overrides}
    return messages.build_answer(
        author="standesamt:04011000", register_number="G 1/2026", child=child,
        place_name="Bremen", ags="04011000",
        parents=[{"idnr": MOTHER, "vornamen": "Anna", "familienname": "Schmidt"},
                 {"idnr": FATHER, "vornamen": "Ben", "familienname": "Schmidt"}])


@pytest.fixture(name="connectors")
async def fx_connectors():
    built = build_connectors(BASE, timeout_s=0.5, retries=2, today=lambda: date(2026, 11, 28))
    yield built
    for connector in built.values():
        await connector.aclose()


@pytest.mark.respx(base_url=BASE, assert_all_called=True, assert_all_mocked=True)
class TestBirthConnector:
    async def test_timeout_after_retries(self, connectors, respx_mock) -> None:
        route = respx_mock.post(BIRTH_URL).mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(RegisterTimeoutError):
            await connectors[ProofType.BIRTH].fetch(CHILD, BIRTH_PARAMS)
        assert route.call_count == 3  # first try + 2 retries

    async def test_connect_error_is_unavailable(self, connectors, respx_mock) -> None:
        respx_mock.post(BIRTH_URL).mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(RegisterUnavailableError) as caught:
            await connectors[ProofType.BIRTH].fetch(CHILD, BIRTH_PARAMS)
        assert not isinstance(caught.value, RegisterTimeoutError)
        assert isinstance(caught.value.__cause__, httpx.ConnectError)

    async def test_5xx_is_retried_then_unavailable(self, connectors, respx_mock) -> None:
        route = respx_mock.post(BIRTH_URL).mock(return_value=httpx.Response(503))
        with pytest.raises(RegisterUnavailableError):
            await connectors[ProofType.BIRTH].fetch(CHILD, BIRTH_PARAMS)
        assert route.call_count == 3

    async def test_5xx_then_success(self, connectors, respx_mock) -> None:
        route = respx_mock.post(BIRTH_URL).mock(
            side_effect=[httpx.Response(503), httpx.Response(200, content=_answer())])
        proof = await connectors[ProofType.BIRTH].fetch(CHILD, BIRTH_PARAMS)
        assert route.call_count == 2
        assert proof.data["child_given_names"] == "Mia"

    @pytest.mark.parametrize("body", [
        b"<not xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        b'<other xmlns="urn:einmal:xpersonenstand-sim:1"/>',
        _answer(geschlecht="q"),
        _answer(geburtsdatum="12.10.2026"),
        _answer(idnr="86095742719"),  # about another person
        _answer(vornamen=" "),
    ])
    async def test_invalid_answer(self, connectors, respx_mock, body: bytes) -> None:
        respx_mock.post(BIRTH_URL).mock(return_value=httpx.Response(200, content=body))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.BIRTH].fetch(CHILD, BIRTH_PARAMS)

    async def test_404_is_not_found(self, connectors, respx_mock) -> None:
        respx_mock.post(BIRTH_URL).mock(return_value=httpx.Response(404))
        with pytest.raises(RecordNotFoundError):
            await connectors[ProofType.BIRTH].fetch(CHILD, BIRTH_PARAMS)

    async def test_other_4xx_is_rejected(self, connectors, respx_mock) -> None:
        respx_mock.post(BIRTH_URL).mock(return_value=httpx.Response(400))
        with pytest.raises(RegisterRejectedError):
            await connectors[ProofType.BIRTH].fetch(CHILD, BIRTH_PARAMS)

    async def test_happy_path_routes_by_ags_and_names_the_parents(self, connectors,
                                                                  respx_mock) -> None:
        route = respx_mock.post(BIRTH_URL).mock(return_value=httpx.Response(200, content=_answer()))
        proof = await connectors[ProofType.BIRTH].fetch(CHILD, BIRTH_PARAMS)
        sent = messages.parse_xml(route.calls[0].request.content)
        assert sent.findtext(f".//{messages.tag('idnr')}") == CHILD
        assert set(proof.data) == PROOF_FIELDS[ProofType.BIRTH]
        assert proof.issuer == "standesamt:04011000"
        assert proof.concerned == (CHILD, MOTHER, FATHER)
        assert proof.data["parents"] == [{"given_names": "Anna", "family_name": "Schmidt"},
                                         {"given_names": "Ben", "family_name": "Schmidt"}]


class TestBirthParameters:
    @pytest.mark.parametrize("parameters", [
        {},
        {"place_of_birth": "0401100", "birth_date": "2026-10-12"},
        {"place_of_birth": "04011000", "birth_date": "2026-02-30"},
        {"place_of_birth": "04011000", "birth_date": "12.10.2026"},
        {"place_of_birth": "04011000", "birth_date": "2026-10-12", "extra": 1},
        {"place_of_birth": 4011000, "birth_date": "2026-10-12"},
    ])
    async def test_rejected_before_any_call(self, connectors, parameters) -> None:
        with pytest.raises(InvalidParametersError):
            connectors[ProofType.BIRTH].check_parameters(parameters)

    async def test_unknown_municipality_is_a_routing_error(self, connectors) -> None:
        with pytest.raises(RoutingError):
            await connectors[ProofType.BIRTH].fetch(
                CHILD, {"place_of_birth": "09999999", "birth_date": "2026-10-12"})


def _custody(land: str, **extra) -> dict:
    return {"status": "found", "land": land, "as_of": "2026-11-28", "custody": "sole",
            "holders": [{"idnr": MOTHER, "given_names": "Clara", "family_name": "Weber",
                         "role": "mother"}], "basis": "law", "since": "2024-03-05", **extra}


@pytest.mark.respx(base_url=BASE, assert_all_called=True, assert_all_mocked=True)
class TestCustodyConnector:
    async def test_follows_the_index_to_the_holding_land(self, connectors, respx_mock) -> None:
        respx_mock.get(f"{BASE}/sorge/HH/records/{CHILD}").mock(
            return_value=httpx.Response(200, json={"status": "held_elsewhere", "land": "NI"}))
        ni = respx_mock.get(f"{BASE}/sorge/NI/records/{CHILD}").mock(
            return_value=httpx.Response(200, json=_custody("NI")))
        proof = await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HH"})
        assert proof.route == ("sorgeregister:HH", "sorgeregister:NI")
        assert proof.issuer == "sorgeregister:NI"
        assert proof.data["custody"] == "sole"
        assert proof.data["as_of"] == "2026-11-28"  # today, from the injected clock
        assert ni.calls[0].request.url.params["as_of"] == "2026-11-28"
        assert set(proof.data) == PROOF_FIELDS[ProofType.CUSTODY]
        assert proof.concerned == (CHILD, MOTHER)

    async def test_index_loop_is_an_invalid_answer(self, connectors, respx_mock) -> None:
        respx_mock.get(f"{BASE}/sorge/HH/records/{CHILD}").mock(
            return_value=httpx.Response(200, json={"status": "held_elsewhere", "land": "NI"}))
        respx_mock.get(f"{BASE}/sorge/NI/records/{CHILD}").mock(
            return_value=httpx.Response(200, json={"status": "held_elsewhere", "land": "HH"}))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HH"})

    async def test_not_found_is_distinct_from_unavailable(self, connectors, respx_mock) -> None:
        respx_mock.get(f"{BASE}/sorge/HB/records/{CHILD}").mock(
            return_value=httpx.Response(404, json={"status": "not_found"}))
        with pytest.raises(RecordNotFoundError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})

    async def test_bad_json(self, connectors, respx_mock) -> None:
        respx_mock.get(f"{BASE}/sorge/HB/records/{CHILD}").mock(
            return_value=httpx.Response(200, content=b"{oops"))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})

    async def test_unknown_custody_value(self, connectors, respx_mock) -> None:
        respx_mock.get(f"{BASE}/sorge/HB/records/{CHILD}").mock(
            return_value=httpx.Response(200, json=_custody("HB", custody="shared-ish")))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})

    @pytest.mark.parametrize("parameters", [{}, {"land": "XX"}, {"land": "DE"},
                                            {"land": "HB", "as_of": "yesterday"}])
    async def test_bad_parameters(self, connectors, parameters) -> None:
        with pytest.raises(InvalidParametersError):
            connectors[ProofType.CUSTODY].check_parameters(parameters)


@pytest.mark.respx(base_url=BASE, assert_all_called=True, assert_all_mocked=True)
class TestIncomeConnector:
    URL = f"{BASE}/income/persons/{MOTHER}/months"

    async def test_months_and_total(self, connectors, respx_mock) -> None:
        months = [{"month": "2025-10", "gross_eur": "3450.00", "employment": "employee"},
                  {"month": "2025-11", "gross_eur": "1725.50", "employment": "part_time"}]
        respx_mock.get(self.URL).mock(return_value=httpx.Response(
            200, json={"status": "found", "months": months}))
        proof = await connectors[ProofType.INCOME].fetch(MOTHER, {"from": "2025-10", "to": "2025-11"})
        assert proof.data["total_gross_eur"] == "5175.50"
        assert set(proof.data) == PROOF_FIELDS[ProofType.INCOME]
        assert proof.concerned == (MOTHER,)

    async def test_self_employed_is_not_held(self, connectors, respx_mock) -> None:
        respx_mock.get(self.URL).mock(return_value=httpx.Response(404, json={"status": "not_held"}))
        with pytest.raises(RecordNotFoundError, match="no income data"):
            await connectors[ProofType.INCOME].fetch(MOTHER, {"from": "2025-10", "to": "2025-11"})

    async def test_months_outside_the_period_are_refused(self, connectors, respx_mock) -> None:
        months = [{"month": "2024-01", "gross_eur": "1.00", "employment": "employee"}]
        respx_mock.get(self.URL).mock(return_value=httpx.Response(
            200, json={"status": "found", "months": months}))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.INCOME].fetch(MOTHER, {"from": "2025-10", "to": "2025-11"})

    async def test_non_decimal_amount(self, connectors, respx_mock) -> None:
        months = [{"month": "2025-10", "gross_eur": "lots", "employment": "employee"}]
        respx_mock.get(self.URL).mock(return_value=httpx.Response(
            200, json={"status": "found", "months": months}))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.INCOME].fetch(MOTHER, {"from": "2025-10", "to": "2025-10"})

    @pytest.mark.parametrize("parameters", [
        {}, {"from": "2025-13", "to": "2026-01"}, {"from": "2026-01", "to": "2025-01"},
        {"from": "2023-01", "to": "2025-12"}, {"from": "2025-01"},
    ])
    async def test_bad_period(self, connectors, parameters) -> None:
        with pytest.raises(InvalidParametersError):
            connectors[ProofType.INCOME].check_parameters(parameters)
