"""A register's own protocol (connectors/protocol): pseudonyms, sealing, the lookup by IdNr,
two-year retention with an injected clock, and the requester's headers."""

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from connectors import xpersonenstand as messages
from connectors.protocol import (
    ProtocolConfig,
    ProtocolSealError,
    RegisterProtocol,
    plus_years,
    requester_from_headers,
    requester_headers,
)
from connectors.protocol.store import ENTRIES, METADATA, MemoryProtocolStore
from connectors.simulators.app import SimulatorSettings, create_registers_app
from connectors.simulators.population import Population, generate_population
from einmal.domain.registers import Requester
from einmal.store import StoreError, create_engine, dispose, transaction
from einmal_client.sources import content_groups
from tests.conftest import TEST_DATABASE_URL

BACKENDS = ["memory", "sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]
MIA, ANNA, CLARA = "84953625010", "81709656328", "67965208344"
BREMEN = "standesamt:04011000"
T0 = datetime(2026, 10, 20, 9, 30, tzinfo=UTC)
ASKER = Requester(service_id="elfe-bremen", service_name="ELFE Bremen",
                  authority="Elterngeldstelle Bremen", purpose="elterngeld",
                  legal_basis="§ 25 BEEG", consent_id="consent-1", transfer_id="t-1")
CONTENT = content_groups({"Lebensdaten": {"Vornamen": "Mia Sophie",
                                          "Geburtsdatum": "2026-10-12"}})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(name="clock")
def fx_clock() -> Clock:
    return Clock()


@pytest.fixture(name="make", params=BACKENDS)
async def fx_make(request: pytest.FixtureRequest, tmp_path: Path,
                  ) -> AsyncIterator[Callable[[Clock], RegisterProtocol]]:
    """A factory of protocols on each backend (all made by one test share its database;
    PostgreSQL: EINMAL_TEST_DATABASE_URL, the protocol's tables dropped first)."""
    made: list[RegisterProtocol] = []
    postgresql = (TEST_DATABASE_URL or "").replace("postgresql://", "postgresql+asyncpg://", 1)
    urls = {"memory": None, "sqlite": f"sqlite+aiosqlite:///{tmp_path / 'protocol.sqlite'}",
            "postgresql": postgresql}
    if request.param == "postgresql":
        engine = create_engine(postgresql)
        async with engine.begin() as conn:
            await conn.run_sync(METADATA.drop_all)
        await dispose(engine)

    def make(clock: Clock) -> RegisterProtocol:
        url = urls[request.param]
        protocol = RegisterProtocol(ProtocolConfig(database_url=url, keys_dir=tmp_path / "keys"),
                                    clock=clock)
        made.append(protocol)
        return protocol

    yield make
    for protocol in made:
        await protocol.stop()


async def _record(protocol: RegisterProtocol, subject: str = MIA, register: str = BREMEN,
                  concerned: tuple[str, ...] = (ANNA,)) -> str:
    return await protocol.record(register=register, source_name="Standesamt Bremen",
                                 subject=subject, concerned=concerned, content=CONTENT,
                                 requester=ASKER, data_categories=("birth_date",))


class TestPseudonyms:
    def test_a_pseudonym_is_keyed_and_per_register(self, tmp_path: Path) -> None:
        one = RegisterProtocol(ProtocolConfig(keys_dir=tmp_path))
        again = RegisterProtocol(ProtocolConfig(keys_dir=tmp_path))  # same key file
        other_key = RegisterProtocol()
        assert one.pseudonym(BREMEN, MIA) == again.pseudonym(BREMEN, MIA)
        assert one.pseudonym(BREMEN, MIA) != other_key.pseudonym(BREMEN, MIA)
        assert one.pseudonym(BREMEN, MIA) != one.pseudonym("sorgeregister:HB", MIA)
        assert one.pseudonym(BREMEN, MIA) != one.pseudonym(BREMEN, ANNA)
        assert MIA not in one.pseudonym(BREMEN, MIA)

    def test_the_keys_are_files_of_the_keys_dir(self, tmp_path: Path) -> None:
        RegisterProtocol(ProtocolConfig(keys_dir=tmp_path))
        assert (tmp_path / "register-protocol.key").stat().st_mode & 0o077 == 0
        assert len((tmp_path / "register-protocol.key").read_bytes()) == 32
        assert (tmp_path / "register-protocol-pseudonym.key").exists()


class TestLookup:
    async def test_an_entry_is_found_by_the_idnr_it_is_about(self, make, clock) -> None:
        protocol = make(clock)
        entry_id = await _record(protocol)
        [entry] = await protocol.entries(BREMEN, MIA)
        assert entry.id == entry_id and entry.relation == "self"
        assert entry.recipient is not None and entry.recipient.authority == ASKER.authority
        assert (entry.purpose, entry.legal_basis, entry.consent_id) == (
            "elterngeld", "§ 25 BEEG", "consent-1")
        assert entry.occurred_at == T0 and entry.data_categories == ("birth_date",)
        assert entry.transfer_id == "t-1"
        assert await protocol.content(BREMEN, MIA, entry_id) == CONTENT

    async def test_a_person_named_in_the_answer_finds_it_as_concerned(self, make,
                                                                      clock) -> None:
        protocol = make(clock)
        await _record(protocol)
        [entry] = await protocol.entries(BREMEN, ANNA)
        assert entry.relation == "concerned"

    async def test_others_and_other_registers_find_nothing(self, make, clock) -> None:
        protocol = make(clock)
        entry_id = await _record(protocol)
        assert await protocol.entries(BREMEN, CLARA) == []
        assert await protocol.entries("sorgeregister:HB", MIA) == []
        assert await protocol.content(BREMEN, CLARA, entry_id) is None
        assert await protocol.content("sorgeregister:HB", MIA, entry_id) is None

    async def test_a_query_without_requester_is_logged_as_not_stated(self, make,
                                                                     clock) -> None:
        protocol = make(clock)
        await protocol.record(register=BREMEN, subject=MIA, content=CONTENT, requester=None)
        [entry] = await protocol.entries(BREMEN, MIA)
        assert entry.recipient is None and entry.purpose == ""

    async def test_entries_are_listed_newest_first(self, make, clock) -> None:
        protocol = make(clock)
        first = await _record(protocol)
        clock.now = T0 + timedelta(days=1)
        second = await _record(protocol)
        assert [e.id for e in await protocol.entries(BREMEN, MIA)] == [second, first]

    async def test_concurrent_records_all_land(self, make, clock) -> None:
        protocol = make(clock)
        ids = await asyncio.gather(*(_record(protocol) for _ in range(20)))
        assert {e.id for e in await protocol.entries(BREMEN, MIA)} == set(ids)


class TestSealing:
    async def test_another_register_key_opens_nothing(self, tmp_path, clock) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'protocol.sqlite'}"
        protocol = RegisterProtocol(ProtocolConfig(database_url=url, keys_dir=tmp_path),
                                    clock=clock)
        await _record(protocol)
        await protocol.stop()
        # the same database and register secret (the lookup works), another register key
        (tmp_path / "register-protocol.key").write_bytes(b"k" * 32)
        stranger = RegisterProtocol(ProtocolConfig(database_url=url, keys_dir=tmp_path),
                                    clock=clock)
        try:
            with pytest.raises(ProtocolSealError):
                await stranger.entries(BREMEN, MIA)
        finally:
            await stranger.stop()

    async def test_a_blob_moved_to_another_row_does_not_open(self, tmp_path, clock) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'protocol.sqlite'}"
        protocol = RegisterProtocol(ProtocolConfig(database_url=url, keys_dir=tmp_path),
                                    clock=clock)
        try:
            first = await _record(protocol)
            second = await _record(protocol, subject=CLARA, concerned=())
            engine = protocol.store.engine  # type: ignore[attr-defined]  # SQL backend
            async with transaction(engine) as conn:
                blob = (await conn.execute(ENTRIES.select().where(ENTRIES.c.id == first))
                        ).one().content
                await conn.execute(ENTRIES.update().where(ENTRIES.c.id == second)
                                   .values(content=blob))
            with pytest.raises(ProtocolSealError):
                await protocol.content(BREMEN, CLARA, second)
        finally:
            await protocol.stop()


class TestRetention:
    def test_two_calendar_years(self) -> None:
        assert plus_years(T0, 2) == T0.replace(year=2028)
        leap = datetime(2028, 2, 29, tzinfo=UTC)
        assert plus_years(leap, 2) == datetime(2030, 3, 1, tzinfo=UTC)
        assert plus_years(leap, -2) == datetime(2026, 3, 1, tzinfo=UTC)

    async def test_an_entry_is_listed_for_two_years_then_swept(self, make, clock) -> None:
        protocol = make(clock)
        await _record(protocol)
        clock.now = plus_years(T0, 2) - timedelta(seconds=1)
        assert len(await protocol.entries(BREMEN, MIA)) == 1
        assert await protocol.sweep() == 0
        clock.now = plus_years(T0, 2)
        assert await protocol.entries(BREMEN, MIA) == []
        assert await protocol.sweep() == 1
        assert await protocol.store.count() == 0

    async def test_the_sweeper_runs_in_the_background(self, tmp_path, clock) -> None:
        protocol = RegisterProtocol(ProtocolConfig(keys_dir=tmp_path, sweep_interval_s=0.01),
                                    clock=clock)
        await _record(protocol)
        await protocol.start()
        try:
            assert protocol.sweeper_running
            clock.now = plus_years(T0, 3)
            async with asyncio.timeout(5):
                while await protocol.store.count():
                    await asyncio.sleep(0.01)  # polls the condition, bounded by the timeout
        finally:
            await protocol.stop()
        assert not protocol.sweeper_running

    async def test_a_token_id_is_refused_twice_until_it_expires(self, make, clock) -> None:
        store = make(clock).store
        until = T0 + timedelta(seconds=65)
        assert await store.use_token_id("s|a", expires_at=until)
        assert not await store.use_token_id("s|a", expires_at=until)
        assert await store.use_token_id("s|b", expires_at=until)
        await store.sweep(until)
        assert await store.use_token_id("s|a", expires_at=until + timedelta(seconds=60))


class TestRequesterHeaders:
    def test_a_requester_travels_through_headers(self) -> None:
        headers = requester_headers(ASKER)
        assert all(v.isascii() for v in headers.values())
        assert headers["x-einmal-service"] == "elfe-bremen"
        assert requester_from_headers(headers) == ASKER

    def test_umlauts_survive(self) -> None:
        asker = Requester(service_id="uvo", authority="Jugendamt Lüneburg", purpose="uvg")
        assert requester_from_headers(requester_headers(asker)) == Requester(
            service_id="uvo", authority="Jugendamt Lüneburg", purpose="uvg")

    def test_no_requester_no_headers(self) -> None:
        assert requester_headers(None) == {}
        assert requester_from_headers({}) is None
        assert requester_from_headers({"x-einmal-purpose": "x"}) is None

    def test_a_value_that_is_not_utf8_is_left_out(self) -> None:
        found = requester_from_headers({"x-einmal-service": "s", "x-einmal-authority": "%ff",
                                        "x-einmal-purpose": "a%0Ab"})
        assert found is not None
        assert (found.authority, found.purpose) == ("", "")

    def test_values_are_bounded(self) -> None:
        found = requester_from_headers({"x-einmal-service": "s" * 5000})
        assert found is not None and len(found.service_id) == 500


class TestMemoryStore:
    async def test_the_memory_store_is_bounded_dropping_the_oldest(self, clock) -> None:
        protocol = RegisterProtocol(clock=clock)
        protocol.store = MemoryProtocolStore(max_entries=3)
        ids = [await _record(protocol) for _ in range(5)]
        assert await protocol.store.count() == 3
        assert {e.id for e in await protocol.entries(BREMEN, MIA)} == set(ids[2:])


@pytest.fixture(name="population", scope="module")
def fx_population() -> Population:
    return generate_population(1, 10)


class _BrokenStore(MemoryProtocolStore):
    async def add(self, row) -> None:
        msg = "disk full"
        raise StoreError(msg)


class TestRegistersLogBeforeTheyAnswer:
    """The simulators embed the protocol: an answer leaves only once it is logged."""

    async def _ask_birth(self, protocol: RegisterProtocol, population: Population):
        mia = next(c for c in population.demo_citizens()
                   if c.family == "elfe" and c.role == "child")
        body = messages.build_request(idnr=mia.idnr, birth_date="2026-10-12",
                                      family_name=None, reader="test")
        app = create_registers_app(SimulatorSettings(families=10), population, protocol)
        async with AsyncTestClient(app) as client:
            return await client.post("/registers/standesamt/04011000/geburt", content=body,
                                     headers={"content-type": "application/xml",
                                              **requester_headers(ASKER)}), mia.idnr

    async def test_an_answer_is_logged_with_who_asked(self, population, clock) -> None:
        protocol = RegisterProtocol(clock=clock)
        response, idnr = await self._ask_birth(protocol, population)
        assert response.status_code == 200
        [entry] = await protocol.entries(BREMEN, idnr)
        assert entry.recipient is not None and entry.recipient.service_id == "elfe-bremen"

    async def test_a_register_that_cannot_log_does_not_answer(self, population,
                                                              clock) -> None:
        protocol = RegisterProtocol(clock=clock)
        protocol.store = _BrokenStore()
        response, idnr = await self._ask_birth(protocol, population)
        assert response.status_code == 503
        assert idnr.encode() not in response.content
        assert b'"Mia"' not in response.content  # quoted: never in base64

    async def test_without_a_cockpit_key_the_source_answers_nobody(self) -> None:
        app = create_registers_app(SimulatorSettings(families=10))
        async with AsyncTestClient(app) as client:
            response = await client.get("/registers/income/dsc/status",
                                        headers={"authorization": "Bearer x.y.z"})
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")

    async def test_an_unknown_source_is_not_found(self) -> None:
        app = create_registers_app(SimulatorSettings(families=10))
        async with AsyncTestClient(app) as client:
            response = await client.get("/registers/standesamt/09999999/dsc/status")
        assert response.status_code == 404
