"""A register's own protocol (connectors/protocol): pseudonyms, sealing, the lookup by IdNr,
two-year retention with an injected clock, and the requester's headers."""

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
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
from connectors.protocol.headers import requester_from_asgi
from connectors.protocol.store import (
    ENTRIES,
    METADATA,
    MemoryProtocolStore,
    ProtocolRow,
    SqliteProtocolStore,
    SqlProtocolStore,
    open_protocol_store,
)
from connectors.simulators.app import SimulatorSettings, create_registers_app
from connectors.simulators.population import Population, generate_population
from einmal.domain.registers import Requester
from einmal.store import StoreError, create_engine, dispose, transaction
from einmal_client.sources import content_groups
from tests.conftest import TEST_DATABASE_URL

#: "sqlite": a SQLite file, the writes on its SqliteWriter; "sqlite-alchemy": the same file
#: through SQLAlchemy only (the path PostgreSQL takes)
BACKENDS = ["memory", "sqlite", "sqlite-alchemy",
            *(["postgresql"] if TEST_DATABASE_URL else [])]
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
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'protocol.sqlite'}"
    urls = {"memory": None, "sqlite": sqlite, "sqlite-alchemy": sqlite,
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
        if request.param == "sqlite-alchemy":
            protocol.store = SqlProtocolStore(protocol.store.engine)  # type: ignore[attr-defined]  # a SQL backend
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

    async def test_entry_ids_are_time_ordered_uuids(self, make, clock) -> None:
        protocol = make(clock)
        first = await _record(protocol)
        clock.now = T0 + timedelta(milliseconds=5)
        second = await _record(protocol)
        assert first < second
        assert uuid.UUID(first).version == uuid.UUID(second).version == 7
        assert uuid.UUID(first).int >> 80 == int(T0.timestamp() * 1000)


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


def _db_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as db:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608 - constant table names
                for table in ("register_protocol", "register_protocol_subject",
                              "register_source_jti")}


class TestSqliteWriterPath:
    """On a SQLite file the protocol's writes go in plain SQL on the engine's SqliteWriter
    (decision 0024); they must leave the rows SQLAlchemy's statements leave."""

    async def test_the_backend_is_chosen_by_the_database(self, tmp_path) -> None:
        file = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite'}")
        in_memory = create_engine("sqlite+aiosqlite://")
        try:
            assert isinstance(open_protocol_store(None), MemoryProtocolStore)
            assert type(open_protocol_store(file)) is SqliteProtocolStore
            assert type(open_protocol_store(in_memory)) is SqlProtocolStore
            with pytest.raises(ValueError, match="SQLite file"):
                SqliteProtocolStore(in_memory)
        finally:
            await dispose(file)
            await dispose(in_memory)

    async def test_both_paths_write_the_same_rows(self, tmp_path) -> None:
        rows = [ProtocolRow(id=f"entry-{i}", register=BREMEN,
                            occurred_at=T0 + timedelta(microseconds=i),
                            retention_until=plus_years(T0, 2), meta=b"m\0" * i,
                            content=b"c" * (i + 1),
                            subjects=(("ref-self", "self"), (f"ref-{i}", "concerned")))
                for i in range(3)]
        naive = ProtocolRow(id="entry-naive", register=BREMEN, occurred_at=T0.replace(tzinfo=None),
                            retention_until=plus_years(T0, 2).astimezone(
                                timezone(timedelta(hours=2))),
                            meta=b"", content=b"", subjects=())
        for name, kind in (("alchemy", SqlProtocolStore), ("writer", SqliteProtocolStore)):
            store = kind(create_engine(f"sqlite+aiosqlite:///{tmp_path / name}.sqlite"))
            try:
                await asyncio.gather(*(store.add(row) for row in [*rows, naive]))
                assert await store.use_token_id("s|a", expires_at=T0)
                assert not await store.use_token_id("s|a", expires_at=T0)
                [entry] = await store.entries(BREMEN, "ref-1", since=T0, now=T0)
                assert (entry.occurred_at, entry.relation, entry.meta) == (
                    T0 + timedelta(microseconds=1), "concerned", b"m\0")
            finally:
                await store.aclose()
        assert _db_rows(tmp_path / "alchemy.sqlite") == _db_rows(tmp_path / "writer.sqlite")

    async def test_a_write_that_fails_is_a_store_error(self, tmp_path) -> None:
        store = SqliteProtocolStore(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.sqlite'}"))
        row = ProtocolRow(id="entry-1", register=BREMEN, occurred_at=T0,
                          retention_until=plus_years(T0, 2), meta=b"", content=b"",
                          subjects=(("ref", "self"),))
        try:
            await store.add(row)
            with pytest.raises(StoreError):
                await store.add(row)  # the same id again
            assert await store.count() == 1
        finally:
            await store.aclose()


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

    @pytest.mark.parametrize("headers", [
        requester_headers(ASKER),
        {"x-einmal-service": "s", "x-einmal-authority": "%ff", "x-einmal-purpose": "a%0Ab",
         "x-einmal-legal-basis": "a\tb", "x-einmal-consent": ""},
        {"x-einmal-service": "s" * 5000, "x-einmal-authority": "%C3%BC" * 600},
        {"x-einmal-purpose": "x"},
        {},
    ])
    def test_the_asgi_headers_state_the_same_requester(self, headers) -> None:
        raw = [(b"host", b"registers"),
               *((k.encode(), v.encode("latin-1")) for k, v in headers.items())]
        assert requester_from_asgi(raw) == requester_from_headers(headers)

    def test_of_asgi_headers_sent_twice_the_first_counts_in_any_case(self) -> None:
        raw = [(b"X-Einmal-Service", b"first"), (b"x-einmal-service", b"second"),
               (b"x-einmal-authority", b"Jugendamt%20L%C3%BCneburg"),
               (b"x-einmal-purpose", b""), (b"x-einmal-purpose", b"late")]
        found = requester_from_asgi(raw)
        assert found is not None
        assert (found.service_id, found.authority, found.purpose) == (
            "first", "Jugendamt Lüneburg", "")


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
