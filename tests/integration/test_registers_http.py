"""The real connectors against the register simulators in a real uvicorn server over HTTP."""

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import httpx
import pytest
import uvicorn

from connectors.factory import build_connectors
from connectors.simulators.app import SimulatorSettings, create_registers_app
from connectors.simulators.population import Population, generate_population
from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.domain.registers import (
    Connector,
    RecordNotFoundError,
    RegisterTimeoutError,
    RegisterUnavailableError,
)

FAMILIES = 30
TODAY = date(2026, 11, 28)


@pytest.fixture(scope="module", name="population")
def fx_population() -> Population:
    return generate_population(1, FAMILIES)


@pytest.fixture(scope="module", name="registers_url")
def fx_registers_url(population: Population) -> Iterator[str]:
    """The simulator app in uvicorn on 127.0.0.1, an OS-chosen port, in a daemon thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_registers_app(SimulatorSettings(families=FAMILIES, today=TODAY), population)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning",
                                          access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "simulator did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/registers"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(name="connectors")
async def fx_connectors(registers_url: str) -> AsyncIterator[dict[ProofType, Connector]]:
    built = build_connectors(registers_url, timeout_s=2.0, retries=1, backoff_s=0.01,
                             clock=lambda: TODAY)
    yield built
    for connector in built.values():
        await connector.aclose()


@pytest.fixture(name="knobs")
async def fx_knobs(registers_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for /_knobs; every knob is reset afterwards."""
    async with httpx.AsyncClient(base_url=registers_url) as client:
        yield client
        reset = await client.put("/_knobs", json={"failure_rate": 0.0, "latency_ms": 0})
        assert reset.status_code == 200


def _child(population: Population, family: str):
    return next(c for c in population.demo_citizens() if c.family == family and c.role == "child")


class TestOverHttp:
    async def test_birth_of_the_elfe_baby(self, connectors, population) -> None:
        mia = _child(population, "elfe")
        anna, ben = population.family("elfe").parents
        proof = await connectors[ProofType.BIRTH].fetch(
            mia.idnr, {"place_of_birth": mia.place_of_birth, "birth_date": mia.birth_date,
                       "family_name": "Schmidt"})
        assert set(proof.data) == PROOF_FIELDS[ProofType.BIRTH]
        assert (proof.data["register_number"], proof.data["birth_place"]) == ("G 2211/2026",
                                                                              "Bremen")
        assert proof.concerned == (mia.idnr, anna.idnr, ben.idnr)

    async def test_birth_abroad_routed_to_standesamt_i(self, connectors, population) -> None:
        family = next(f for f in population.families if f.case == "born_abroad")
        child = family.children[0]
        proof = await connectors[ProofType.BIRTH].fetch(
            child.idnr, {"place_of_birth": "11000000",
                         "birth_date": child.birth_date.isoformat()})
        assert proof.issuer == "standesamt:11000000"

    async def test_uvo_custody_follows_the_index_from_hh_to_ni(self, connectors,
                                                               population) -> None:
        leon = _child(population, "uvo")
        (clara,) = population.family("uvo").parents
        proof = await connectors[ProofType.CUSTODY].fetch(leon.idnr, {"land": "HH"})
        assert proof.route == ("sorgeregister:HH", "sorgeregister:NI")
        assert (proof.data["custody"], proof.data["as_of"]) == ("sole", "2026-11-28")
        assert proof.concerned == (leon.idnr, clara.idnr)

    async def test_marriage_after_birth(self, connectors, population) -> None:
        family = next(f for f in population.families if f.case == "married_after_birth")
        child = family.children[0]
        before = (family.married_on - timedelta(days=1)).isoformat()
        custody = connectors[ProofType.CUSTODY]
        sole = await custody.fetch(child.idnr, {"land": family.home_land, "as_of": before})
        joint = await custody.fetch(child.idnr, {"land": family.home_land,
                                                 "as_of": family.married_on.isoformat()})
        assert (sole.data["custody"], joint.data["custody"]) == ("sole", "joint")
        assert joint.data["basis"] == "marriage"

    async def test_income_of_the_year_before_the_birth(self, connectors, population) -> None:
        anna, ben = population.family("elfe").parents
        period = {"from": "2025-10", "to": "2026-09"}
        first = await connectors[ProofType.INCOME].fetch(anna.idnr, period)
        second = await connectors[ProofType.INCOME].fetch(ben.idnr, period)
        assert len(first.data["months"]) == len(second.data["months"]) == 12
        assert first.data["total_gross_eur"] == "41400.00"  # 12 x 3450
        assert second.data["total_gross_eur"] == "37720.00"  # 5 x 4100 + 7 x 2460 (part time)

    async def test_not_found_and_not_held(self, connectors, population) -> None:
        self_employed = next(p for f in population.families for p in f.parents
                             if p.income_profile == "self_employed")
        with pytest.raises(RecordNotFoundError, match="not held"):
            await connectors[ProofType.INCOME].fetch(self_employed.idnr, {"from": "2025-01",
                                                                          "to": "2025-12"})
        with pytest.raises(RecordNotFoundError):
            await connectors[ProofType.CUSTODY].fetch("86095742719", {"land": "HB"})
        with pytest.raises(RecordNotFoundError):
            await connectors[ProofType.BIRTH].fetch(
                "86095742719", {"place_of_birth": "04011000", "birth_date": "2026-10-12"})


class TestFaultsOverHttp:
    async def test_failure_rate_one_makes_every_register_unavailable(self, connectors, knobs,
                                                                     population) -> None:
        assert (await knobs.put("/_knobs", json={"failure_rate": 1.0})).status_code == 200
        mia = _child(population, "elfe")
        anna = population.family("elfe").parents[0]
        calls = [
            connectors[ProofType.BIRTH].fetch(mia.idnr, {"place_of_birth": mia.place_of_birth,
                                                         "birth_date": mia.birth_date}),
            connectors[ProofType.CUSTODY].fetch(mia.idnr, {"land": "HB"}),
            connectors[ProofType.INCOME].fetch(anna.idnr, {"from": "2025-10", "to": "2026-09"}),
        ]
        for call in calls:
            with pytest.raises(RegisterUnavailableError) as caught:
                await call
            assert not isinstance(caught.value, RegisterTimeoutError)

    async def test_latency_beyond_the_timeout_is_a_timeout(self, registers_url, knobs,
                                                           population) -> None:
        await knobs.put("/_knobs", json={"latency_ms": 400, "register": "sorge"})
        slow = build_connectors(registers_url, timeout_s=0.1, retries=0)
        try:
            with pytest.raises(RegisterTimeoutError):
                await slow[ProofType.CUSTODY].fetch(_child(population, "elfe").idnr,
                                                    {"land": "HB"})
        finally:
            for connector in slow.values():
                await connector.aclose()
