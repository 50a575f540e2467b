"""The income connector: the period, the months (gaps filled), not-held vs not-found."""

import httpx
import pytest

from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.domain.registers import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    RecordNotFoundError,
    RegisterRejectedError,
    RegisterTimeoutError,
    RegisterUnavailableError,
)
from tests.unit.connectors.conftest import BASE, MOTHER

URL = f"{BASE}/income/persons/{MOTHER}/months"
PERIOD = {"from": "2025-10", "to": "2025-12"}


def _months(*rows: tuple[str, str, str]) -> dict:
    return {"status": "found", "idnr": MOTHER,
            "months": [{"month": m, "gross_eur": e, "employment": k} for m, e, k in rows]}


class TestIncomeParameters:
    @pytest.mark.parametrize("parameters", [
        {}, {"from": "2025-01"}, {"to": "2025-01"},
        {"from": "2025-13", "to": "2026-01"}, {"from": "2025-1", "to": "2025-02"},
        {"from": "2026-01", "to": "2025-01"},            # from after to
        {"from": "2023-01", "to": "2025-01"},            # 25 months
        {"from": 202501, "to": "2025-02"},
        {"from": "2025-01", "to": "2025-02", "idnr": "x"},
    ])
    def test_bad_period(self, connectors, parameters) -> None:
        with pytest.raises(InvalidParametersError):
            connectors[ProofType.INCOME].check_parameters(parameters)

    @pytest.mark.parametrize("parameters", [{"from": "2025-01", "to": "2025-01"},
                                            {"from": "2024-01", "to": "2025-12"}])
    def test_one_to_24_months_are_accepted(self, connectors, parameters) -> None:
        connectors[ProofType.INCOME].check_parameters(parameters)


@pytest.mark.respx(base_url=BASE, assert_all_called=True, assert_all_mocked=True)
class TestIncomeConnector:
    async def test_self_employed_is_not_held(self, connectors, respx_mock) -> None:
        respx_mock.get(URL).mock(return_value=httpx.Response(404, json={"status": "not_held"}))
        with pytest.raises(RecordNotFoundError, match="not held by this register"):
            await connectors[ProofType.INCOME].fetch(MOTHER, PERIOD)

    async def test_unknown_person_is_not_found_and_distinguishable(self, connectors,
                                                                   respx_mock) -> None:
        respx_mock.get(URL).mock(return_value=httpx.Response(404, json={"status": "not_found"}))
        with pytest.raises(RecordNotFoundError) as caught:
            await connectors[ProofType.INCOME].fetch(MOTHER, PERIOD)
        assert "not held" not in str(caught.value)

    async def test_400_is_rejected(self, connectors, respx_mock) -> None:
        respx_mock.get(URL).mock(return_value=httpx.Response(400, json={"status": "x"}))
        with pytest.raises(RegisterRejectedError):
            await connectors[ProofType.INCOME].fetch(MOTHER, PERIOD)

    async def test_timeout(self, connectors, respx_mock) -> None:
        route = respx_mock.get(URL).mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(RegisterTimeoutError):
            await connectors[ProofType.INCOME].fetch(MOTHER, PERIOD)
        assert route.call_count == 3

    async def test_5xx_is_retried_then_unavailable(self, connectors, respx_mock) -> None:
        route = respx_mock.get(URL).mock(return_value=httpx.Response(502))
        with pytest.raises(RegisterUnavailableError):
            await connectors[ProofType.INCOME].fetch(MOTHER, PERIOD)
        assert route.call_count == 3

    @pytest.mark.parametrize("body", [
        b"not json",
        b'{"status": "found"}',
        _months(("2024-01", "1.00", "employee")),             # outside the period
        _months(("2025-10", "lots", "employee")),
        _months(("2025-10", "NaN", "employee")),
        _months(("2025-10", "-5.00", "employee")),
        _months(("2025-10", "5", "employee")),
        _months(("2025-10", "5.00", "astronaut")),
        _months(("2025-10", "5.00", "employee"), ("2025-10", "5.00", "employee")),
        {**_months(), "idnr": "86095742719"},                 # about another person
    ])
    async def test_invalid_answer(self, connectors, respx_mock, body) -> None:
        response = (httpx.Response(200, content=body) if isinstance(body, bytes)
                    else httpx.Response(200, json=body))
        respx_mock.get(URL).mock(return_value=response)
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.INCOME].fetch(MOTHER, PERIOD)

    async def test_months_total_and_gap_months(self, connectors, respx_mock) -> None:
        route = respx_mock.get(URL).mock(return_value=httpx.Response(200, json=_months(
            ("2025-10", "3450.00", "employee"), ("2025-12", "1725.50", "part_time"))))
        proof = await connectors[ProofType.INCOME].fetch(MOTHER, PERIOD)
        assert route.calls[0].request.url.params["from"] == "2025-10"
        assert route.calls[0].request.url.params["to"] == "2025-12"
        assert proof.data["total_gross_eur"] == "5175.50"
        assert proof.data["months"] == [
            {"month": "2025-10", "gross_eur": "3450.00", "employment": "employee"},
            {"month": "2025-11", "gross_eur": "0.00", "employment": "none"},
            {"month": "2025-12", "gross_eur": "1725.50", "employment": "part_time"}]
        assert set(proof.data) == PROOF_FIELDS[ProofType.INCOME]
        assert (proof.issuer, proof.concerned, proof.route) == (
            "einkommensregister", (MOTHER,), ("einkommensregister",))

    async def test_period_across_a_year_boundary(self, connectors, respx_mock) -> None:
        respx_mock.get(URL).mock(return_value=httpx.Response(200, json=_months()))
        proof = await connectors[ProofType.INCOME].fetch(MOTHER, {"from": "2025-11",
                                                                  "to": "2026-02"})
        assert [m["month"] for m in proof.data["months"]] == [
            "2025-11", "2025-12", "2026-01", "2026-02"]
        assert proof.data["total_gross_eur"] == "0.00"
