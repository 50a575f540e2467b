"""The custody connector: home Land first, the index followed, the record checked."""

from datetime import date

import httpx
import pytest

from connectors.factory import build_connectors
from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.domain.registers import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    RecordNotFoundError,
    RegisterTimeoutError,
    RegisterUnavailableError,
)
from tests.unit.connectors.conftest import BASE, CHILD, FATHER, MOTHER


def _url(land: str) -> str:
    return f"{BASE}/sorge/{land}/records/{CHILD}"


def _record(register_land: str, **extra) -> dict:
    return {"status": "found", "land": register_land, "as_of": "2026-11-28", "custody": "sole",
            "holders": [{"idnr": MOTHER, "given_names": "Clara", "family_name": "Weber",
                         "role": "mother"}], "basis": "law", "since": "2024-03-05", **extra}


def _elsewhere(land: str) -> httpx.Response:
    return httpx.Response(200, json={"status": "held_elsewhere", "land": land})


class TestCustodyParameters:
    @pytest.mark.parametrize("parameters", [
        {}, {"land": "XX"}, {"land": "DE"}, {"land": "hb"}, {"land": None},
        {"land": "HB", "as_of": "yesterday"}, {"land": "HB", "as_of": "2026-02-30"},
        {"land": "HB", "as_of": 20261128}, {"land": "HB", "place": "x"},
    ])
    def test_bad_parameters(self, connectors, parameters) -> None:
        with pytest.raises(InvalidParametersError):
            connectors[ProofType.CUSTODY].check_parameters(parameters)


@pytest.mark.respx(base_url=BASE, assert_all_called=True, assert_all_mocked=True)
class TestCustodyConnector:
    async def test_index_loop_is_an_invalid_answer(self, connectors, respx_mock) -> None:
        respx_mock.get(_url("HH")).mock(return_value=_elsewhere("NI"))
        respx_mock.get(_url("NI")).mock(return_value=_elsewhere("HH"))
        with pytest.raises(InvalidRegisterAnswerError, match="nowhere new"):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HH"})

    async def test_index_pointing_to_an_unknown_land_is_invalid(self, connectors,
                                                                respx_mock) -> None:
        respx_mock.get(_url("HH")).mock(return_value=_elsewhere("XX"))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HH"})

    async def test_the_index_is_followed_at_most_two_hops(self, connectors, respx_mock) -> None:
        routes = [respx_mock.get(_url("HH")).mock(return_value=_elsewhere("NI")),
                  respx_mock.get(_url("NI")).mock(return_value=_elsewhere("HB")),
                  respx_mock.get(_url("HB")).mock(return_value=_elsewhere("BY"))]
        with pytest.raises(InvalidRegisterAnswerError, match="3 registers"):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HH"})
        assert [r.call_count for r in routes] == [1, 1, 1]

    async def test_not_found_is_distinct_from_unavailable(self, connectors, respx_mock) -> None:
        respx_mock.get(_url("HB")).mock(return_value=httpx.Response(404, json={
            "status": "not_found"}))
        with pytest.raises(RecordNotFoundError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})

    async def test_timeout_in_the_second_register(self, connectors, respx_mock) -> None:
        respx_mock.get(_url("HH")).mock(return_value=_elsewhere("NI"))
        ni = respx_mock.get(_url("NI")).mock(side_effect=httpx.ConnectTimeout("slow"))
        with pytest.raises(RegisterTimeoutError, match="sorgeregister:NI"):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HH"})
        assert ni.call_count == 3

    async def test_5xx_is_retried_then_unavailable(self, connectors, respx_mock) -> None:
        route = respx_mock.get(_url("HB")).mock(return_value=httpx.Response(503))
        with pytest.raises(RegisterUnavailableError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})
        assert route.call_count == 3

    @pytest.mark.parametrize("body", [
        b"{oops",
        b"[]",
        b'{"status": "maybe"}',
        b'{"status": "found"}',
    ])
    async def test_bad_json(self, connectors, respx_mock, body) -> None:
        respx_mock.get(_url("HB")).mock(return_value=httpx.Response(200, content=body))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})

    @pytest.mark.parametrize("extra", [
        {"custody": "shared-ish"},
        {"custody": "joint"},                     # joint with one holder
        {"basis": "hearsay"},
        {"since": "05.03.2024"},
        {"since": None},
        {"land": "NI"},                           # asked HB, answered for NI
        {"as_of": "2020-01-01"},                  # another date than asked
        {"holders": [{"idnr": "1", "given_names": "C", "family_name": "W", "role": "mother"}]},
    ])
    async def test_inconsistent_record_is_invalid(self, connectors, respx_mock, extra) -> None:
        respx_mock.get(_url("HB")).mock(return_value=httpx.Response(200, json=_record("HB",
                                                                                      **extra)))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})

    async def test_follows_the_index_to_the_holding_land(self, connectors, respx_mock) -> None:
        hh = respx_mock.get(_url("HH")).mock(return_value=_elsewhere("NI"))
        ni = respx_mock.get(_url("NI")).mock(return_value=httpx.Response(200, json=_record("NI")))
        proof = await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HH"})
        assert proof.route == ("sorgeregister:HH", "sorgeregister:NI")
        assert proof.issuer == "sorgeregister:NI"
        assert proof.issuer_name == "Sorgeregister Niedersachsen"
        assert proof.data["custody"] == "sole"
        assert proof.data["register_land"] == "NI"
        assert proof.data["as_of"] == "2026-11-28"  # today, from the injected clock
        assert hh.calls[0].request.url.params["as_of"] == "2026-11-28"
        assert ni.calls[0].request.url.params["as_of"] == "2026-11-28"
        assert set(proof.data) == PROOF_FIELDS[ProofType.CUSTODY]
        assert proof.concerned == (CHILD, MOTHER)

    async def test_as_of_parameter_is_sent_and_joint_holders_concerned(self, connectors,
                                                                       respx_mock) -> None:
        holders = [{"idnr": MOTHER, "given_names": "Anna", "family_name": "Schmidt",
                    "role": "mother"},
                   {"idnr": FATHER, "given_names": "Ben", "family_name": "Schmidt",
                    "role": "father"}]
        route = respx_mock.get(_url("HB")).mock(return_value=httpx.Response(200, json=_record(
            "HB", as_of="2026-10-12", custody="joint", holders=holders,
            basis="marriage_at_birth", since="2026-10-12")))
        proof = await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB",
                                                                  "as_of": "2026-10-12"})
        assert route.calls[0].request.url.params["as_of"] == "2026-10-12"
        assert proof.route == ("sorgeregister:HB",)
        assert proof.concerned == (CHILD, MOTHER, FATHER)
        assert proof.data["basis"] == "marriage_at_birth"

    async def test_no_custody_has_no_holders(self, connectors, respx_mock) -> None:
        respx_mock.get(_url("HB")).mock(return_value=httpx.Response(200, json=_record(
            "HB", custody="none", holders=[], basis="court", since="2025-01-01")))
        proof = await connectors[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})
        assert (proof.data["custody"], proof.concerned) == ("none", (CHILD,))


@pytest.mark.respx(base_url=BASE, assert_all_called=True, assert_all_mocked=True)
async def test_the_clock_is_read_at_fetch_time(respx_mock) -> None:
    days = iter(["2026-01-01", "2026-01-02"])
    built = build_connectors(BASE, backoff_s=0.0,
                             clock=lambda: date.fromisoformat(next(days)),
                             transport=httpx.MockTransport(respx_mock.async_handler))
    route = respx_mock.get(_url("HB")).mock(side_effect=[
        httpx.Response(200, json=_record("HB", as_of="2026-01-01")),
        httpx.Response(200, json=_record("HB", as_of="2026-01-02"))])
    try:
        first = await built[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})
        second = await built[ProofType.CUSTODY].fetch(CHILD, {"land": "HB"})
    finally:
        for connector in built.values():
            await connector.aclose()
    assert (first.data["as_of"], second.data["as_of"]) == ("2026-01-01", "2026-01-02")
    assert route.call_count == 2
