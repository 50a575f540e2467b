"""The registers' protocol and their source interface (issue 15 §1, §2) over real HTTP: the
register simulators in uvicorn (lifespan on: the protocol's SQLite store in a temp data dir),
queried by the real connectors with the requester's headers, then asked by the cockpit's
client (einmal_client.sources) with a token per request and a session key."""

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import httpx
import msgspec
import pytest
import uvicorn

from connectors.factory import build_connectors
from connectors.protocol import ANSWER_KEY, COCKPIT_SOURCES_KEY, ProtocolConfig
from connectors.simulators.app import SimulatorSettings, create_registers_app
from connectors.simulators.population import Population, generate_population
from einmal.domain.proofs import ProofType
from einmal.domain.registers import Connector, Requester
from einmal.keys import SigningKey, load_or_create_signing_key
from einmal_client.sources import (
    ContentGroup,
    Envelope,
    InvalidSourceAnswerError,
    ListRequest,
    SessionKey,
    SourceClient,
    SourceRefusedError,
    SourceTokenSigner,
    source_public_keys,
    verify_answer,
)

FAMILIES = 30
TODAY = date(2026, 11, 28)
COCKPIT = "einmal-cockpit"
BREMEN = "standesamt:04011000"
ELTERNGELD = Requester(service_id="elfe-bremen", service_name="ELFE Bremen",
                       authority="Elterngeldstelle Bremen, Amt für Soziale Dienste",
                       purpose="elterngeld", legal_basis="§ 25 BEEG, § 68 (3) PStG",
                       consent_id="consent-1")


@pytest.fixture(scope="module", name="population")
def fx_population() -> Population:
    return generate_population(1, FAMILIES)


@pytest.fixture(scope="module", name="keys_dir")
def fx_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module", name="cockpit_key")
def fx_cockpit_key(keys_dir: Path) -> SigningKey:
    """The cockpit's token key; its public half is the file every source reads."""
    return load_or_create_signing_key(keys_dir, COCKPIT_SOURCES_KEY)


@pytest.fixture(scope="module", name="server")
def fx_server(population: Population, keys_dir: Path, cockpit_key: SigningKey,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The simulators in uvicorn on 127.0.0.1 (lifespan on), protocol in a SQLite file."""
    data = tmp_path_factory.mktemp("data")
    database = data / "registers" / "protocol.sqlite"
    config = ProtocolConfig(database_url=f"sqlite+aiosqlite:///{database}", keys_dir=keys_dir,
                            cockpit_issuer=COCKPIT)
    app = create_registers_app(SimulatorSettings(families=FAMILIES, today=TODAY,
                                                 protocol=config), population)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "simulator did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/registers", database
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(name="registers_url")
def fx_registers_url(server: tuple[str, Path]) -> str:
    return server[0]


@pytest.fixture(name="connectors")
async def fx_connectors(registers_url: str) -> AsyncIterator[dict[ProofType, Connector]]:
    built = build_connectors(registers_url, timeout_s=2.0, retries=0, clock=lambda: TODAY)
    yield built
    for connector in built.values():
        await connector.aclose()


@pytest.fixture(name="signer")
def fx_signer(cockpit_key: SigningKey) -> SourceTokenSigner:
    return SourceTokenSigner(private_key=cockpit_key.private_key, kid=cockpit_key.kid,
                             issuer=COCKPIT)


@pytest.fixture(name="source_key")
def fx_source_key(keys_dir: Path, server: tuple[str, Path]) -> dict:
    """The registers' public signing key, as their source documents name it."""
    return msgspec.json.decode((keys_dir / f"{ANSWER_KEY}.public.json").read_bytes())


@pytest.fixture(name="bremen")
async def fx_bremen(registers_url: str, signer: SourceTokenSigner, source_key: dict,
                    ) -> AsyncIterator[SourceClient]:
    client = SourceClient(url=f"{registers_url}/standesamt/04011000/dsc", source_id=BREMEN,
                          signer=signer, source_key=source_key)
    yield client
    await client.aclose()


def _person(population: Population, family: str, role: str):
    return next(c for c in population.demo_citizens() if c.family == family and c.role == role)


def _group(groups: tuple[ContentGroup, ...], label: str) -> ContentGroup:
    return next(g for g in groups if g.label == label)


def _values(group: ContentGroup) -> dict[str, str]:
    return {item.label: item.value for item in group.items}


async def _birth_of_mia(connectors, population: Population) -> str:
    mia = _person(population, "elfe", "child")
    await connectors[ProofType.BIRTH].fetch(
        mia.idnr, {"place_of_birth": "04011000", "birth_date": "2026-10-12"},
        requester=ELTERNGELD)
    return mia.idnr


class TestRefusals:
    """Only the cockpit may ask, once per token; nothing readable otherwise."""

    async def _post(self, url: str, body: bytes, token: str | None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        async with httpx.AsyncClient() as http:
            return await http.post(f"{url}/standesamt/04011000/dsc/protokolldaten",
                                   content=body, headers=headers)

    def _body(self, idnr: str) -> bytes:
        return msgspec.json.encode(ListRequest(correlation_id=str(uuid.uuid4()), idnr=idnr,
                                               session_key=SessionKey().public_jwk))

    def _refused(self, response: httpx.Response, given_names: str) -> None:
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "urn:einmal:problem:unauthenticated"
        assert given_names not in response.text

    async def test_no_token_is_refused(self, registers_url, connectors, population) -> None:
        idnr = await _birth_of_mia(connectors, population)
        self._refused(await self._post(registers_url, self._body(idnr), None), "Mia")

    async def test_a_token_for_another_source_is_refused(self, registers_url, connectors,
                                                         population, signer) -> None:
        idnr = await _birth_of_mia(connectors, population)
        body = self._body(idnr)
        token = signer.token("standesamt:04012000", body)  # Bremerhaven's audience
        self._refused(await self._post(registers_url, body, token), "Mia")

    async def test_a_replayed_token_is_refused(self, registers_url, connectors, population,
                                               signer) -> None:
        idnr = await _birth_of_mia(connectors, population)
        body = self._body(idnr)
        token = signer.token(BREMEN, body)
        first = await self._post(registers_url, body, token)
        assert first.status_code == 200
        self._refused(await self._post(registers_url, body, token), "Mia")

    async def test_an_expired_token_is_refused(self, registers_url, connectors, population,
                                               signer) -> None:
        idnr = await _birth_of_mia(connectors, population)
        body = self._body(idnr)
        token = signer.token(BREMEN, body, now=time.time() - 120)
        self._refused(await self._post(registers_url, body, token), "Mia")

    async def test_a_long_lived_token_is_refused(self, registers_url, signer) -> None:
        body = self._body("84953625010")
        token = signer.token(BREMEN, body, ttl_s=300)
        self._refused(await self._post(registers_url, body, token), "Mia")

    async def test_a_token_for_another_body_is_refused(self, registers_url, signer) -> None:
        token = signer.token(BREMEN, self._body("84953625010"))
        self._refused(await self._post(registers_url, self._body("81709656328"), token), "Mia")

    async def test_a_token_of_another_key_is_refused(self, registers_url, tmp_path) -> None:
        other = load_or_create_signing_key(tmp_path, COCKPIT_SOURCES_KEY)
        rogue = SourceTokenSigner(private_key=other.private_key, kid=other.kid, issuer=COCKPIT)
        body = self._body("84953625010")
        self._refused(await self._post(registers_url, body, rogue.token(BREMEN, body)), "Mia")

    async def test_a_private_session_key_is_refused(self, registers_url, signer) -> None:
        session = SessionKey()
        jwk = {**session.public_jwk, "d": "AAAA"}
        body = msgspec.json.encode({"nachrichtentyp": "anfrageListeProtokolldaten",
                                    "correlationID": "c1", "idnr": "84953625010",
                                    "session_key": jwk})
        response = await self._post(registers_url, body, signer.token(BREMEN, body))
        assert response.status_code == 422
        assert response.json()["type"] == "urn:einmal:problem:invalid-request"

    async def test_an_answer_for_another_session_does_not_open(
            self, registers_url, connectors, population, signer, source_key) -> None:
        idnr = await _birth_of_mia(connectors, population)
        mine, theirs = SessionKey(), SessionKey()
        body = msgspec.json.encode(ListRequest(correlation_id="c2", idnr=idnr,
                                               session_key=mine.public_jwk))
        response = await self._post(registers_url, body, signer.token(BREMEN, body))
        assert response.status_code == 200
        assert '"Mia"' not in response.text and idnr not in response.text  # quoted: not base64
        envelope = msgspec.json.decode(response.content, type=Envelope)
        assert envelope.correlation_id == "c2" and envelope.source == BREMEN
        with pytest.raises(InvalidSourceAnswerError):
            theirs.open(envelope.payload)
        signed = mine.open(envelope.payload)
        assert idnr.encode() in verify_answer(signed, source_public_keys(source_key))


class TestTheCockpitAsks:
    async def test_a_birth_query_leaves_an_entry_the_cockpit_lists(
            self, connectors, population, bremen) -> None:
        idnr = await _birth_of_mia(connectors, population)
        answer = await bremen.list_entries(idnr, SessionKey())
        assert answer.idnr == idnr and answer.source == BREMEN
        assert answer.entries, "no protocol entry at the Standesamt"
        entry = answer.entries[0]
        assert entry.source_name == "Standesamt Bremen"
        assert entry.recipient is not None
        assert entry.recipient.service_id == "elfe-bremen"
        assert entry.recipient.authority == "Elterngeldstelle Bremen, Amt für Soziale Dienste"
        assert (entry.purpose, entry.legal_basis, entry.consent_id) == (
            "elterngeld", "§ 25 BEEG, § 68 (3) PStG", "consent-1")
        assert entry.intermediary == "einmal-broker"
        assert "child_given_names" in entry.data_categories
        assert entry.relation == "self"
        assert entry.retention_until is not None
        assert entry.retention_until.year == entry.occurred_at.year + 2

    async def test_the_content_is_what_was_sent(self, connectors, population, bremen) -> None:
        idnr = await _birth_of_mia(connectors, population)
        session = SessionKey()
        entry = (await bremen.list_entries(idnr, session)).entries[0]
        content = await bremen.content(idnr, entry.id, session)
        assert content.entry_id == entry.id
        life = _values(_group(content.groups, "Lebensdaten"))
        assert life["Vornamen"] == "Mia Sophie"
        assert life["Familienname"] == "Schmidt"
        assert life["Geburtsdatum"] == "2026-10-12"
        parents = _group(content.groups, "Eltern").groups
        assert [_values(p)["Vornamen"] for p in parents] == ["Anna", "Ben"]
        assert [p.label for p in parents] == ["Elternteil 1", "Elternteil 2"]

    async def test_a_parent_named_in_the_answer_finds_the_entry(
            self, connectors, population, bremen) -> None:
        await _birth_of_mia(connectors, population)
        anna = next(p for p in population.demo_citizens()
                    if p.family == "elfe" and p.given_names == "Anna")
        entries = (await bremen.list_entries(anna.idnr, SessionKey())).entries
        assert entries and {e.relation for e in entries} == {"concerned"}

    async def test_someone_without_entries_gets_an_empty_list(self, bremen,
                                                              population) -> None:
        clara = _person(population, "uvo", "parent")
        answer = await bremen.list_entries(clara.idnr, SessionKey())
        assert answer.entries == ()

    async def test_another_citizens_entry_is_not_found(self, connectors, population,
                                                       bremen) -> None:
        idnr = await _birth_of_mia(connectors, population)
        session = SessionKey()
        entry = (await bremen.list_entries(idnr, session)).entries[0]
        clara = _person(population, "uvo", "parent")
        with pytest.raises(SourceRefusedError) as refused:
            await bremen.content(clara.idnr, entry.id, session)
        assert refused.value.status == 404

    async def test_the_custody_register_that_answered_keeps_the_entry(
            self, connectors, population, registers_url, signer, source_key) -> None:
        leon = _person(population, "uvo", "child")
        await connectors[ProofType.CUSTODY].fetch(leon.idnr, {"land": "HH"},
                                                  requester=ELTERNGELD)
        clients = {land: SourceClient(url=f"{registers_url}/sorge/{land}/dsc",
                                      source_id=f"sorgeregister:{land}", signer=signer,
                                      source_key=source_key)
                   for land in ("HH", "NI")}
        try:
            session = SessionKey()
            held = await clients["NI"].list_entries(leon.idnr, session)
            asked_first = await clients["HH"].list_entries(leon.idnr, session)
            content = await clients["NI"].content(leon.idnr, held.entries[0].id, session)
        finally:
            for client in clients.values():
                await client.aclose()
        assert held.entries and held.entries[0].recipient is not None
        assert asked_first.entries == ()  # the index answer sends no personal data
        assert _values(_group(content.groups, "Sorgerecht"))["Sorge"] == "alleinige Sorge"

    async def test_an_answer_signed_with_another_key_is_refused(
            self, registers_url, connectors, population, signer, tmp_path) -> None:
        idnr = await _birth_of_mia(connectors, population)
        other = load_or_create_signing_key(tmp_path, ANSWER_KEY)  # another register's key
        client = SourceClient(url=f"{registers_url}/standesamt/04011000/dsc",
                              source_id=BREMEN, signer=signer,
                              source_key={"keys": [other.public_jwk]})
        try:
            with pytest.raises(InvalidSourceAnswerError, match="signed with another key"):
                await client.list_entries(idnr, SessionKey())
        finally:
            await client.aclose()

    async def test_an_oversized_body_is_refused(self, registers_url, signer) -> None:
        body = b"{" + b" " * 20_000 + b"}"
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{registers_url}/standesamt/04011000/dsc/protokolldaten", content=body,
                headers={"authorization": f"Bearer {signer.token(BREMEN, body)}",
                         "content-type": "application/json"})
        assert response.status_code == 413
        assert response.json()["type"] == "urn:einmal:problem:payload-too-large"

    async def test_the_status_answers_the_cockpit(self, bremen) -> None:
        status = await bremen.status()
        assert (status.source, status.name, status.status) == (
            BREMEN, "Standesamt Bremen", "verfuegbar")

    async def test_nothing_readable_at_rest(self, connectors, population, server) -> None:
        idnr = await _birth_of_mia(connectors, population)
        database = server[1]
        stored = b"".join(p.read_bytes() for p in database.parent.glob("protocol.sqlite*"))
        assert stored, "no protocol database"
        for secret in (idnr, "Mia Sophie", "2026-10-12", "Elterngeldstelle"):
            assert secret.encode() not in stored, secret
