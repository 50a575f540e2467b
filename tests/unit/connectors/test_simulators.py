"""The synthetic population and the register simulators (Litestar test client, no network)."""


import pytest
from litestar.testing import AsyncTestClient

from connectors.simulators import messages
from connectors.simulators.app import SimulatorSettings, create_registers_app
from connectors.simulators.population import generate_population
from einmal.domain.idnr import is_valid_idnr


class TestPopulation:
    def test_is_deterministic(self) -> None:
        first = generate_population(seed=7, families=50)
        second = generate_population(seed=7, families=50)
        assert [c.idnr for c in first.citizens()] == [c.idnr for c in second.citizens()]
        assert [c.idnr for c in generate_population(seed=8, families=50).citizens()] != \
            [c.idnr for c in first.citizens()]

    def test_all_idnrs_are_valid_and_unique(self) -> None:
        people = generate_population(seed=1, families=300).citizens()
        ids = [c.idnr for c in people]
        assert len(ids) == len(set(ids))
        assert all(is_valid_idnr(i) for i in ids)

    def test_demo_families_do_not_depend_on_the_seed(self) -> None:
        assert generate_population(1, 10).demo_citizens() == generate_population(2, 10).demo_citizens()

    def test_covers_the_cases_of_the_domain_brief(self) -> None:
        cases = {f.case for f in generate_population(seed=1, families=60).families}
        assert {"married", "unmarried_sole", "declaration_other_land", "married_after_birth",
                "court_to_father", "moved", "twins", "father_unknown", "born_abroad"} <= cases

    def test_married_after_birth_is_sole_before_and_joint_after(self) -> None:
        population = generate_population(seed=1, families=60)
        family = next(f for f in population.families if f.case == "married_after_birth")
        history = family.children[0].custody
        assert [p.custody for p in history] == ["sole", "joint"]
        assert history[1].since == family.married_on


@pytest.fixture(name="client")
async def fx_client():
    async with AsyncTestClient(create_registers_app(SimulatorSettings(families=20))) as client:
        yield client


class TestSimulators:
    async def test_uvo_custody_through_the_index(self, client) -> None:
        population = generate_population(1, 20)
        child = next(c for c in population.demo_citizens() if c.family == "uvo" and c.role == "child")
        at_home = await client.get(f"/registers/sorge/HH/records/{child.idnr}",
                                   params={"as_of": "2026-11-28"})
        assert at_home.json() == {"status": "held_elsewhere", "land": "NI"}
        record = (await client.get(f"/registers/sorge/NI/records/{child.idnr}",
                                   params={"as_of": "2026-11-28"})).json()
        assert record["custody"] == "sole"
        assert [h["given_names"] for h in record["holders"]] == ["Clara"]

    async def test_married_after_birth_as_of_dates(self, client) -> None:
        population = generate_population(1, 20)
        family = next(f for f in population.families if f.case == "married_after_birth")
        child = family.children[0]
        url = f"/registers/sorge/{child.custody_land}/records/{child.idnr}"
        before = (await client.get(url, params={"as_of": child.birth_date.isoformat()})).json()
        after = (await client.get(url, params={"as_of": family.married_on.isoformat()})).json()
        assert (before["custody"], after["custody"]) == ("sole", "joint")

    async def test_standesamt_answers_only_for_its_own_births(self, client) -> None:
        population = generate_population(1, 20)
        child = next(c for c in population.demo_citizens() if c.family == "elfe" and c.role == "child")
        request = messages.build_request(idnr=child.idnr, birth_date=child.birth_date,
                                         family_name=None, reader="x")
        own = await client.post(f"/registers/standesamt/{child.place_of_birth}/geburt",
                                content=request)
        other = await client.post("/registers/standesamt/02000000/geburt", content=request)
        assert own.status_code == 200
        assert messages.parse_xml(own.content).tag == messages.tag(messages.ANSWER)
        assert other.status_code == 404

    async def test_standesamt_refuses_entity_declarations(self, client) -> None:
        evil = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
        response = await client.post("/registers/standesamt/04011000/geburt", content=evil)
        assert response.status_code == 400

    async def test_income_not_held_for_self_employed(self, client) -> None:
        population = generate_population(1, 20)
        _, parent = next((f, p) for f in population.families for p in f.parents
                         if p.income_profile == "self_employed")
        response = await client.get(f"/registers/income/persons/{parent.idnr}/months",
                                    params={"from": "2025-01", "to": "2025-12"})
        assert response.status_code == 404
        assert response.json()["status"] == "not_held"

    async def test_failure_knob(self, client) -> None:
        changed = await client.put("/registers/_knobs", json={"failure_rate": 1.0,
                                                              "register": "income"})
        assert changed.json()["income"]["failure_rate"] == 1.0
        assert changed.json()["sorge"]["failure_rate"] == 0.0
        response = await client.get("/registers/income/persons/86095742719/months",
                                    params={"from": "2025-01", "to": "2025-12"})
        assert response.status_code == 503

    async def test_bad_knobs(self, client) -> None:
        response = await client.put("/registers/_knobs", json={"failure_rate": "often"})
        assert response.status_code == 400
