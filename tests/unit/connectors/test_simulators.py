"""The register simulators over the Litestar test client (no network)."""

import time
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
from litestar.testing import AsyncTestClient

from connectors import xpersonenstand as messages
from connectors.directory import MUNICIPALITIES
from connectors.income import REGISTER as INCOME_REGISTER
from connectors.protocol import RegisterProtocol
from connectors.simulators.app import SimulatorSettings, create_registers_app
from connectors.simulators.population import Population, generate_population

FAMILIES = 40


@pytest.fixture(scope="module", name="population")
def fx_population() -> Population:
    return generate_population(1, FAMILIES)


@pytest.fixture(name="client")
async def fx_client(population) -> AsyncIterator[AsyncTestClient]:
    app = create_registers_app(SimulatorSettings(families=FAMILIES, today=date(2026, 11, 28)),
                               population)
    async with AsyncTestClient(app) as client:
        yield client


def _demo_child(population: Population, family: str):
    return next(c for c in population.demo_citizens() if c.family == family and c.role == "child")


def _request(idnr: str, birth_date: str, family_name: str | None = None) -> bytes:
    return messages.build_request(idnr=idnr, birth_date=birth_date, family_name=family_name,
                                  reader="test")


class TestStandesamt:
    async def test_refuses_entity_declarations(self, client) -> None:
        evil = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
        response = await client.post("/registers/standesamt/04011000/geburt", content=evil)
        assert response.status_code == 400
        assert messages.parse_xml(response.content).tag == messages.tag(messages.ERROR)

    async def test_refuses_entities_hidden_in_utf16(self, client) -> None:
        evil = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
        response = await client.post("/registers/standesamt/04011000/geburt",
                                     content=evil.encode("utf-16"))
        assert response.status_code == 400

    @pytest.mark.parametrize("body", [b"<broken", b'<x xmlns="urn:einmal:xpersonenstand-sim:1"/>'])
    async def test_refuses_other_messages(self, client, body) -> None:
        response = await client.post("/registers/standesamt/04011000/geburt", content=body)
        assert response.status_code == 400

    async def test_unknown_municipality(self, client, population) -> None:
        child = _demo_child(population, "elfe")
        response = await client.post("/registers/standesamt/09999999/geburt",
                                     content=_request(child.idnr, child.birth_date))
        assert response.status_code == 404

    async def test_answers_only_for_its_own_births(self, client, population) -> None:
        child = _demo_child(population, "elfe")
        request = _request(child.idnr, child.birth_date)
        own = await client.post(f"/registers/standesamt/{child.place_of_birth}/geburt",
                                content=request)
        other = await client.post("/registers/standesamt/02000000/geburt", content=request)
        assert own.status_code == 200
        answer = messages.parse_xml(own.content)
        assert answer.tag == messages.tag(messages.ANSWER)
        assert answer.findtext(f".//{messages.tag('registernummer')}") == "G 2211/2026"
        assert len(answer.findall(f".//{messages.tag('elternteil')}")) == 2
        assert other.status_code == 404
        assert b"nicht-gefunden" in other.content

    @pytest.mark.parametrize(("date_shift", "family_name"), [(1, None), (0, "Meier")])
    async def test_search_must_match(self, client, population, date_shift, family_name) -> None:
        child = _demo_child(population, "elfe")
        when = (date.fromisoformat(child.birth_date) + timedelta(days=date_shift)).isoformat()
        response = await client.post(f"/registers/standesamt/{child.place_of_birth}/geburt",
                                     content=_request(child.idnr, when, family_name))
        assert response.status_code == 404

    async def test_one_parent_unknown(self, client, population) -> None:
        family = next(f for f in population.families if f.case == "father_unknown")
        child = family.children[0]
        response = await client.post(f"/registers/standesamt/{child.place_of_birth}/geburt",
                                     content=_request(child.idnr, child.birth_date.isoformat()))
        answer = messages.parse_xml(response.content)
        assert len(answer.findall(f".//{messages.tag('elternteil')}")) == 1


class TestSorgeregister:
    async def test_uvo_custody_through_the_index(self, client, population) -> None:
        child = _demo_child(population, "uvo")
        at_home = await client.get(f"/registers/sorge/HH/records/{child.idnr}",
                                   params={"as_of": "2026-11-28"})
        assert at_home.json() == {"status": "held_elsewhere", "land": "NI"}
        record = (await client.get(f"/registers/sorge/NI/records/{child.idnr}",
                                   params={"as_of": "2026-11-28"})).json()
        assert (record["custody"], record["basis"], record["since"]) == ("sole", "law",
                                                                         "2024-03-05")
        assert [h["given_names"] for h in record["holders"]] == ["Clara"]

    async def test_default_as_of_is_the_settings_today(self, client, population) -> None:
        child = _demo_child(population, "elfe")
        record = (await client.get(f"/registers/sorge/HB/records/{child.idnr}")).json()
        assert record["as_of"] == "2026-11-28"

    async def test_married_after_birth_as_of_dates(self, client, population) -> None:
        family = next(f for f in population.families if f.case == "married_after_birth")
        child = family.children[0]
        url = f"/registers/sorge/{child.custody_land}/records/{child.idnr}"
        day_before = (family.married_on - timedelta(days=1)).isoformat()
        before = (await client.get(url, params={"as_of": day_before})).json()
        after = (await client.get(url, params={"as_of": family.married_on.isoformat()})).json()
        assert (before["custody"], after["custody"]) == ("sole", "joint")
        assert after["since"] == family.married_on.isoformat()
        assert len(after["holders"]) == 2

    async def test_court_decision_gives_sole_custody_to_the_father(self, client,
                                                                   population) -> None:
        family = next(f for f in population.families if f.case == "court_to_father")
        child = family.children[0]
        record = (await client.get(f"/registers/sorge/{child.custody_land}/records/{child.idnr}",
                                   params={"as_of": "2027-06-01"})).json()
        assert (record["custody"], record["basis"]) == ("sole", "court")
        assert [h["role"] for h in record["holders"]] == ["father"]

    async def test_before_the_birth_there_is_no_custody(self, client, population) -> None:
        child = _demo_child(population, "elfe")
        record = (await client.get(f"/registers/sorge/HB/records/{child.idnr}",
                                   params={"as_of": "2026-01-01"})).json()
        assert (record["custody"], record["holders"]) == ("none", [])

    async def test_declaration_in_another_land_found_from_the_birth_land(self, client,
                                                                         population) -> None:
        family = next(f for f in population.families if f.case == "declaration_other_land")
        child = family.children[0]
        birth_land = MUNICIPALITIES[child.place_of_birth].land
        answer = (await client.get(f"/registers/sorge/{birth_land}/records/{child.idnr}")).json()
        assert answer == {"status": "held_elsewhere", "land": child.custody_land}

    @pytest.mark.parametrize(("path", "params", "status"), [
        ("/registers/sorge/HB/records/86095742719", {}, 404),
        ("/registers/sorge/XX/records/86095742719", {}, 404),
        ("/registers/sorge/HB/records/86095742719", {"as_of": "soon"}, 400),
    ])
    async def test_errors(self, client, path, params, status) -> None:
        response = await client.get(path, params=params)
        assert response.status_code == status


class TestIncomeRegister:
    async def test_months_of_the_period(self, client, population) -> None:
        anna = population.family("elfe").parents[0]
        response = await client.get(f"/registers/income/persons/{anna.idnr}/months",
                                    params={"from": "2025-10", "to": "2026-09"})
        months = response.json()["months"]
        assert [m["month"] for m in months][0::11] == ["2025-10", "2026-09"]
        assert {m["gross_eur"] for m in months} == {"3450.00"}

    async def test_not_held_for_self_employed(self, client, population) -> None:
        parent = next(p for f in population.families for p in f.parents
                      if p.income_profile == "self_employed")
        response = await client.get(f"/registers/income/persons/{parent.idnr}/months",
                                    params={"from": "2025-01", "to": "2025-12"})
        assert response.status_code == 404
        assert response.json()["status"] == "not_held"
        assert "not held by this register" in response.json()["detail"]

    async def test_unknown_person_is_not_found(self, client) -> None:
        response = await client.get("/registers/income/persons/86095742719/months",
                                    params={"from": "2025-01", "to": "2025-12"})
        assert (response.status_code, response.json()["status"]) == (404, "not_found")

    @pytest.mark.parametrize("params", [{}, {"from": "2025-01"},
                                        {"from": "2025-13", "to": "2026-01"},
                                        {"from": "2026-01", "to": "2025-01"}])
    async def test_bad_period(self, client, params) -> None:
        response = await client.get("/registers/income/persons/86095742719/months", params=params)
        assert response.status_code == 400


class TestKnobs:
    async def test_failure_knob_per_register(self, client, population) -> None:
        changed = await client.put("/registers/_knobs", json={"failure_rate": 1.0,
                                                              "register": "income"})
        assert changed.json()["income"]["failure_rate"] == 1.0
        assert changed.json()["sorge"]["failure_rate"] == 0.0
        failing = await client.get("/registers/income/persons/86095742719/months",
                                   params={"from": "2025-01", "to": "2025-12"})
        child = _demo_child(population, "elfe")
        working = await client.get(f"/registers/sorge/HB/records/{child.idnr}")
        assert (failing.status_code, working.status_code) == (503, 200)

    async def test_failure_knob_for_all(self, client, population) -> None:
        await client.put("/registers/_knobs", json={"failure_rate": 1.0})
        child = _demo_child(population, "elfe")
        responses = [
            await client.post("/registers/standesamt/04011000/geburt",
                              content=_request(child.idnr, child.birth_date)),
            await client.get(f"/registers/sorge/HB/records/{child.idnr}"),
        ]
        assert [r.status_code for r in responses] == [503, 503]
        assert (await client.get("/registers/_knobs")).json()["standesamt"]["failure_rate"] == 1.0

    async def test_latency_knob(self, client, population) -> None:
        await client.put("/registers/_knobs", json={"latency_ms": 60, "register": "sorge"})
        knobs = (await client.get("/registers/_knobs")).json()
        assert (knobs["sorge"]["latency_ms"], knobs["income"]["latency_ms"]) == (60, 0)
        child = _demo_child(population, "elfe")
        started = time.perf_counter()
        await client.get(f"/registers/sorge/HB/records/{child.idnr}")
        assert time.perf_counter() - started >= 0.06

    async def test_source_latency_knob_for_one_source(self, client) -> None:
        """The source interface waits before it even checks the token, so an unauthenticated
        status request shows the delay of the source asked and of no other."""
        await client.put("/registers/_knobs", json={"source_latency_ms": 150,
                                                    "source": "standesamt:04011000"})
        assert (await client.get("/registers/_knobs")).json()["dsc"] == {
            "*": 0, "standesamt:04011000": 150}
        started = time.perf_counter()
        slow = await client.get("/registers/standesamt/04011000/dsc/status")
        slow_s = time.perf_counter() - started
        started = time.perf_counter()
        other = await client.get("/registers/standesamt/04012000/dsc/status")
        other_s = time.perf_counter() - started
        assert (slow.status_code, other.status_code) == (401, 401)
        assert slow_s >= 0.15
        assert other_s < slow_s

    async def test_source_latency_knob_for_all_replaces_the_per_source_ones(self, client,
                                                                             ) -> None:
        await client.put("/registers/_knobs", json={"source_latency_ms": 100, "source": "x"})
        await client.put("/registers/_knobs", json={"source_latency_ms": 80})
        assert (await client.get("/registers/_knobs")).json()["dsc"] == {"*": 80}
        started = time.perf_counter()
        await client.get("/registers/income/dsc/status")
        assert time.perf_counter() - started >= 0.08

    @pytest.mark.parametrize("body", [{"failure_rate": "often"}, {"failure_rate": 1.5},
                                      {"latency_ms": -1}, {"register": "tax"}, {"speed": 1},
                                      {"source_latency_ms": -5}, {"source": ""}])
    async def test_bad_knobs(self, client, body) -> None:
        response = await client.put("/registers/_knobs", json=body)
        assert response.status_code == 400


class TestRepeatedQueries:
    """What an answer holds about a person is made once per distinct query and kept; every
    query is still logged, and an XML answer is still a message of its own."""

    async def test_every_query_is_logged_and_answered_alike(self, population) -> None:
        protocol = RegisterProtocol()
        app = create_registers_app(SimulatorSettings(families=FAMILIES), population, protocol)
        child = _demo_child(population, "elfe")
        anna = population.family("elfe").parents[0]
        async with AsyncTestClient(app) as client:
            custody = [await client.get(f"/registers/sorge/HB/records/{child.idnr}",
                                        params={"as_of": day}, headers={"x-einmal-service": s})
                       for day, s in (("2026-11-28", "one"), ("2026-11-28", "two"),
                                      ("2026-01-01", "three"))]
            income = [await client.get(f"/registers/income/persons/{anna.idnr}/months",
                                       params={"from": "2025-10", "to": "2026-09"})
                      for _ in range(2)]
            births = [await client.post(f"/registers/standesamt/{child.place_of_birth}/geburt",
                                        content=_request(child.idnr, child.birth_date))
                      for _ in range(2)]
        assert custody[0].content == custody[1].content != custody[2].content
        assert custody[0].headers["content-type"] == "application/json"
        assert custody[2].json()["custody"] == "none"
        assert income[0].content == income[1].content
        ids = [messages.parse_xml(b.content).findtext(f".//{messages.tag('nachrichtenID')}")
               for b in births]
        assert ids[0] != ids[1]
        logged = await protocol.entries("sorgeregister:HB", child.idnr)
        assert sorted(e.recipient.service_id for e in logged if e.recipient) == [
            "one", "three", "two"]
        assert len(await protocol.entries(f"standesamt:{child.place_of_birth}",
                                          child.idnr)) == 2
        assert len(await protocol.entries(INCOME_REGISTER, anna.idnr)) == 2
