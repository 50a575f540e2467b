"""The birth connector: routing by AGS, the 138010/138011 XML exchange, every error path."""

import httpx
import pytest

from connectors import xpersonenstand as messages
from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.domain.registers import (
    InvalidParametersError,
    InvalidRegisterAnswerError,
    RecordNotFoundError,
    RegisterRejectedError,
    RegisterTimeoutError,
    RegisterUnavailableError,
    RoutingError,
)
from tests.unit.connectors.conftest import BASE, CHILD, FATHER, MOTHER, birth_answer

URL = f"{BASE}/standesamt/04011000/geburt"
PARAMS = {"place_of_birth": "04011000", "birth_date": "2026-10-12"}


class TestBirthParameters:
    @pytest.mark.parametrize("parameters", [
        {},
        {"birth_date": "2026-10-12"},
        {"place_of_birth": "0401100", "birth_date": "2026-10-12"},
        {"place_of_birth": 4011000, "birth_date": "2026-10-12"},
        {"place_of_birth": "04011000"},
        {"place_of_birth": "04011000", "birth_date": "2026-02-30"},
        {"place_of_birth": "04011000", "birth_date": "12.10.2026"},
        {"place_of_birth": "04011000", "birth_date": "2026-10-12", "extra": 1},
        {"place_of_birth": "04011000", "birth_date": "2026-10-12", "family_name": ""},
        {"place_of_birth": "04011000", "birth_date": "2026-10-12", "family_name": "x" * 101},
    ])
    def test_rejected_before_any_call(self, connectors, parameters) -> None:
        with pytest.raises(InvalidParametersError):
            connectors[ProofType.BIRTH].check_parameters(parameters)

    def test_accepts_an_optional_family_name(self, connectors) -> None:
        connectors[ProofType.BIRTH].check_parameters({**PARAMS, "family_name": "Schmidt"})

    @pytest.mark.respx(base_url=BASE, assert_all_mocked=True)
    async def test_unknown_municipality_is_a_routing_error(self, connectors, respx_mock) -> None:
        with pytest.raises(RoutingError, match="09999999"):
            await connectors[ProofType.BIRTH].fetch(
                CHILD, {"place_of_birth": "09999999", "birth_date": "2026-10-12"})
        assert not respx_mock.calls


@pytest.mark.respx(base_url=BASE, assert_all_called=True, assert_all_mocked=True)
class TestBirthTransportErrors:
    async def test_timeout_is_retried_then_a_timeout_error(self, connectors, respx_mock) -> None:
        route = respx_mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(RegisterTimeoutError) as caught:
            await connectors[ProofType.BIRTH].fetch(CHILD, PARAMS)
        assert route.call_count == 3  # first try + 2 retries
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)

    async def test_connect_error_is_unavailable_not_timeout(self, connectors, respx_mock) -> None:
        route = respx_mock.post(URL).mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(RegisterUnavailableError) as caught:
            await connectors[ProofType.BIRTH].fetch(CHILD, PARAMS)
        assert not isinstance(caught.value, RegisterTimeoutError)
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert route.call_count == 3

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_5xx_is_retried_then_unavailable(self, connectors, respx_mock, status) -> None:
        route = respx_mock.post(URL).mock(return_value=httpx.Response(status))
        with pytest.raises(RegisterUnavailableError):
            await connectors[ProofType.BIRTH].fetch(CHILD, PARAMS)
        assert route.call_count == 3

    async def test_5xx_then_success(self, connectors, respx_mock) -> None:
        route = respx_mock.post(URL).mock(
            side_effect=[httpx.Response(503), httpx.Response(200, content=birth_answer())])
        proof = await connectors[ProofType.BIRTH].fetch(CHILD, PARAMS)
        assert route.call_count == 2
        assert proof.data["child_given_names"] == "Mia"

    async def test_404_is_not_found_and_not_retried(self, connectors, respx_mock) -> None:
        route = respx_mock.post(URL).mock(return_value=httpx.Response(404, content=(
            messages.build_error(author="standesamt:04011000", code="nicht-gefunden", text="-"))))
        with pytest.raises(RecordNotFoundError):
            await connectors[ProofType.BIRTH].fetch(CHILD, PARAMS)
        assert route.call_count == 1

    @pytest.mark.parametrize("status", [400, 403, 422, 302])
    async def test_other_answers_are_rejected(self, connectors, respx_mock, status) -> None:
        route = respx_mock.post(URL).mock(return_value=httpx.Response(status))
        with pytest.raises(RegisterRejectedError):
            await connectors[ProofType.BIRTH].fetch(CHILD, PARAMS)
        assert route.call_count == 1


@pytest.mark.respx(base_url=BASE, assert_all_called=True, assert_all_mocked=True)
class TestBirthAnswerValidation:
    @pytest.mark.parametrize("body", [
        b"",
        b"<not xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
        .encode("utf-16"),
        '<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode("utf-16-le"),  # no BOM: expat's guess
        birth_answer().replace(b"utf-8", b"latin-1"),
        b'<other xmlns="urn:einmal:xpersonenstand-sim:1"/>',
        birth_answer().replace(b"urn:einmal:xpersonenstand-sim:1", b"urn:other"),
        birth_answer(geschlecht="q"),
        birth_answer(geburtsdatum="12.10.2026"),
        birth_answer(geburtsdatum="2026-10-13"),       # not the date searched for
        birth_answer(idnr="86095742719"),              # about another person
        birth_answer(vornamen=" "),
        birth_answer(parents=[{"idnr": "x", "vornamen": "A", "familienname": "B"}]),
        birth_answer(parents=[{"idnr": MOTHER, "vornamen": "A", "familienname": "B"}] * 3),
        birth_answer().replace(b"<ns0:ags>04011000</ns0:ags>", b"<ns0:ags>04012000</ns0:ags>"),
    ], ids=["empty", "not-xml", "entities", "utf16-entities", "utf16-no-bom-entities", "latin1",
            "other-root",
            "other-namespace", "sex", "date-format", "other-date", "other-person", "blank-name",
            "parent-idnr", "three-parents",
            "other-place"])
    async def test_invalid_answer(self, connectors, respx_mock, body: bytes) -> None:
        respx_mock.post(URL).mock(return_value=httpx.Response(200, content=body))
        with pytest.raises(InvalidRegisterAnswerError):
            await connectors[ProofType.BIRTH].fetch(CHILD, PARAMS)

    async def test_happy_path_routes_by_ags_and_names_the_parents(self, connectors,
                                                                  respx_mock) -> None:
        route = respx_mock.post(URL).mock(return_value=httpx.Response(200, content=birth_answer()))
        proof = await connectors[ProofType.BIRTH].fetch(CHILD, {**PARAMS, "family_name": "Schmidt"})
        sent = messages.parse_xml(route.calls[0].request.content)
        assert sent.tag == messages.tag(messages.REQUEST)
        assert sent.findtext(f".//{messages.tag('idnr')}") == CHILD
        assert sent.findtext(f".//{messages.tag('geburtsdatum')}") == "2026-10-12"
        assert sent.findtext(f".//{messages.tag('familienname')}") == "Schmidt"
        assert set(proof.data) == PROOF_FIELDS[ProofType.BIRTH]
        assert proof.issuer == "standesamt:04011000"
        assert proof.issuer_name == "Standesamt Bremen"
        assert proof.route == ("standesamt:04011000",)
        assert proof.concerned == (CHILD, MOTHER, FATHER)
        assert proof.data["parents"] == [{"given_names": "Anna", "family_name": "Schmidt"},
                                         {"given_names": "Ben", "family_name": "Schmidt"}]
        assert (proof.data["child_sex"], proof.data["birth_place_ags"]) == ("w", "04011000")

    async def test_a_parent_without_idnr_is_named_but_not_concerned(self, connectors,
                                                                    respx_mock) -> None:
        body = birth_answer(parents=[{"idnr": MOTHER, "vornamen": "Anna",
                                      "familienname": "Schmidt"},
                                     {"vornamen": "Ben", "familienname": "Schmidt"}])
        respx_mock.post(URL).mock(return_value=httpx.Response(200, content=body))
        proof = await connectors[ProofType.BIRTH].fetch(CHILD, PARAMS)
        assert proof.concerned == (CHILD, MOTHER)
        assert [p["given_names"] for p in proof.data["parents"]] == ["Anna", "Ben"]
