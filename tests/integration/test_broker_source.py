"""The broker as a source of the Datenschutzcockpit (issue 15 §1, §5; decision 0035).

1. The store's part on every real backend: the protocol subject rows, written with the entry
   and deleted with it; the lookup by pseudonym; the cockpit's token ids.
2. ``BrokerSource`` over a real store: delivered transfers listed, refusals not, the content
   answer says what was relayed and where the content is.
3. Over real HTTP: a demo server (broker, cockpit, registers) - the register's protocol entry
   carries the broker's transfer id; and a SECOND broker process (``einmal serve --components
   broker``, its own data dir and port, the demo's registers) as a source: a proof request
   through it, then the cockpit's client lists that transfer and opens its content answer;
   replayed tokens, another cockpit's key, oversized bodies are refused as problem+json.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.protocol import OutboxSeal, Pseudonyms
from broker.retention import retention_cutoffs
from broker.source import ANSWER_KEY, SOURCE_NAME, BrokerSource, broker_source_id
from broker.store import (
    BrokerStore,
    PendingTransfer,
    SqlAlchemyBrokerStore,
    SqliteBrokerStore,
    StoredPreview,
)
from broker.tables import SUBJECT
from connectors.protocol import ANSWER_KEY as REGISTER_ANSWER_KEY
from einmal.demo_keys import demo_private_jwk
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.keys import SigningKey, load_or_create_signing_key
from einmal.source_interface import COCKPIT_SOURCES_KEY
from einmal.store import create_engine, dispose
from einmal_client.sources import (
    InvalidSourceAnswerError,
    ListRequest,
    SessionKey,
    SourceClient,
    SourceRefusedError,
    SourceTokenSigner,
)
from tests.conftest import (
    TEST_DATABASE_URL,
    LiveServer,
    free_port,
    reset_database,
    serve_demo,
)
from tests.e2e.conftest import assertion
from tests.e2e.helpers import NAMENSDIENST
from tests.integration.test_broker_migrations import _run, _to, _url

CHILD, PARENT, OTHER = "86095742719", "81709656328", "60478593182"
T0 = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
DATABASES = ["sqlite", "sqlalchemy", *(["postgresql"] if TEST_DATABASE_URL else [])]
PSEUDONYMS = Pseudonyms(b"p" * 32)
SEAL = OutboxSeal(key=b"o" * 32, pseudonyms=PSEUDONYMS)
SOURCE_ID = "broker:broker.test"


def _record(n: int, *, outcome: Outcome = Outcome.DELIVERED, at: datetime = T0,
            ) -> TransferRecord:
    return TransferRecord(
        id=str(uuid.UUID(int=n)), occurred_at=at + timedelta(seconds=n), outcome=outcome,
        proof_type="birth", purpose="namensbestimmung", subject=CHILD,
        service=ServiceRef(id="namensdienst", name="Namensdienst", authority="Standesamt",
                           land="HB"),
        register=RegisterRef(id="standesamt:04011000", name="Standesamt Bremen"),
        data_categories=("birth_date", "child_given_names")
        if outcome is Outcome.DELIVERED else (),
        legal_basis="§ 45 PStG", consent_id=None,
        concerned=(Concerned(idnr=CHILD, relation="self"),
                   Concerned(idnr=PARENT, relation="concerned")))


@pytest.fixture(name="db", params=DATABASES)
async def fx_db(request: pytest.FixtureRequest, tmp_path: Path,
                ) -> AsyncIterator[tuple[BrokerStore, AsyncEngine]]:
    if request.param == "postgresql":
        assert TEST_DATABASE_URL is not None
        reset_database(TEST_DATABASE_URL)
        engine = create_engine(TEST_DATABASE_URL.replace("postgresql://",
                                                         "postgresql+asyncpg://", 1))
    else:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}")
    store: BrokerStore = (SqliteBrokerStore(engine, SEAL) if request.param == "sqlite"
                          else SqlAlchemyBrokerStore(engine, SEAL))
    await store.create_schema()
    try:
        yield store, engine
    finally:
        await store.aclose()
        await dispose(engine)


async def _subject_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(SUBJECT))).scalar_one())


class TestTheStoreFindsEntriesByPseudonym:
    async def test_another_citizen_finds_nothing(self, db) -> None:
        store, _ = db
        await store.commit_transfer(_record(1))
        assert await store.protocol_of(PSEUDONYMS(OTHER), since=T0 - timedelta(days=1)) == []
        assert await store.protocol_entry_of(PSEUDONYMS(OTHER), _record(1).id,
                                             since=T0 - timedelta(days=1)) is None

    async def test_an_entry_older_than_the_window_is_not_found(self, db) -> None:
        store, _ = db
        await store.commit_transfer(_record(1))
        assert await store.protocol_of(PSEUDONYMS(CHILD), since=T0 + timedelta(days=1)) == []

    async def test_subject_and_concerned_find_it_newest_first(self, db) -> None:
        store, _ = db
        await store.commit_transfers([PendingTransfer(_record(1)),
                                      PendingTransfer(_record(2))])
        since = T0 - timedelta(days=1)
        child = await store.protocol_of(PSEUDONYMS(CHILD), since=since)
        parent = await store.protocol_of(PSEUDONYMS(PARENT), since=since)
        assert [h.relation for h in child] == ["self", "self"]
        assert [h.relation for h in parent] == ["concerned", "concerned"]
        assert [json.loads(h.protocol)["id"] for h in child] == [_record(2).id, _record(1).id]
        assert CHILD.encode() not in child[0].protocol  # pseudonyms only

    async def test_the_subject_rows_go_with_their_entry(self, db) -> None:
        store, engine = db
        for n in (1, 2):
            await store.commit_transfer(_record(n))
        seqs = [seq for seq, _ in await store.pending_transfers(10)]
        await store.mark_delivered(seqs[:1], T0)
        assert await _subject_rows(engine) == 4
        deleted = await store.apply_retention(retention_cutoffs(T0 + timedelta(days=800)))
        assert deleted["broker_transfer"] == 1
        assert await _subject_rows(engine) == 2  # the pending one keeps its rows

    async def test_a_finished_preview_writes_its_subject_rows_with_its_record(self,
                                                                            db) -> None:
        store, engine = db
        assert not await store.finish_preview("none", ["pending"], "refused", T0, _record(3))
        assert await _subject_rows(engine) == 0  # nothing to finish: nothing written
        await store.add_preview(StoredPreview(
            id=_record(3).id, client_id="svc", citizen_ref="c", subject_masked="86*******19",
            proof_type="birth", purpose="p", consent_id=None, state="pending", created_at=T0,
            expires_at=T0 + timedelta(minutes=15), decided_at=None, sealed=b"x"))
        refused = _record(3, outcome=Outcome.REFUSED)
        assert await store.finish_preview(refused.id, ["pending"], "refused", T0, refused)
        assert await _subject_rows(engine) == 2

    async def test_a_cockpit_token_id_is_refused_twice_until_it_expires(self, db) -> None:
        store, _ = db
        assert await store.use_source_token("broker:x|j1", T0 + timedelta(minutes=1), T0)
        assert not await store.use_source_token("broker:x|j1", T0 + timedelta(minutes=1), T0)
        # a service's assertion id of the same value is another thing
        assert await store.remember_jti("svc", "broker:x|j1", T0 + timedelta(minutes=1), T0)
        later = T0 + timedelta(minutes=2)
        assert await store.use_source_token("broker:x|j1", later + timedelta(minutes=1), later)


def test_migration_0005_indexes_the_entries_already_kept(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _run(url, _to("0004"))
    record = _record(1)
    _run(url, lambda c: c.execute(text(
        "INSERT INTO broker_transfer (id, created_at, record, protocol, attempts) "
        "VALUES (:id, :at, NULL, :protocol, 0)"),
        {"id": record.id, "at": record.occurred_at, "protocol": SEAL.protocol(record)}))
    _run(url, _to("0005"))
    rows = _run(url, lambda c: sorted(c.execute(text(
        "SELECT ref, transfer_id, relation FROM broker_protocol_subject")).all()))
    assert sorted(map(tuple, rows)) == sorted([(PSEUDONYMS(CHILD), record.id, "self"),
                                               (PSEUDONYMS(PARENT), record.id, "concerned")])
    _run(url, _to("0004", down=True))
    assert "broker_protocol_subject" not in _run(
        url, lambda c: inspect(c).get_table_names())


class TestBrokerSource:
    @pytest.fixture(name="source")
    def fx_source(self, db, tmp_path: Path) -> BrokerSource:
        store, _ = db
        return BrokerSource(
            store=store, pseudonyms=PSEUDONYMS, source_id=SOURCE_ID,
            answer_key=load_or_create_signing_key(tmp_path, ANSWER_KEY), keys_dir=tmp_path,
            clock=lambda: (T0 + timedelta(days=1)).timestamp())

    async def test_refusals_are_not_listed_and_have_no_content(self, db, source) -> None:
        store, _ = db
        await store.commit_transfer(_record(1, outcome=Outcome.REFUSED))
        assert await source.entries(SOURCE_ID, CHILD) == []
        assert await source.content(SOURCE_ID, CHILD, _record(1).id) is None

    async def test_a_delivered_transfer_is_listed_with_its_transfer_id(self, db,
                                                                       source) -> None:
        store, _ = db
        await store.commit_transfer(_record(1))
        [entry] = await source.entries(SOURCE_ID, CHILD)
        assert entry.id == entry.transfer_id == _record(1).id
        assert (entry.source, entry.source_name) == (SOURCE_ID, SOURCE_NAME)
        assert entry.recipient is not None and entry.recipient.service_id == "namensdienst"
        assert entry.intermediary is None and entry.relation == "self"
        assert entry.data_categories == ("birth_date", "child_given_names")
        assert entry.retention_until == entry.occurred_at.replace(year=2028)
        [parent] = await source.entries(SOURCE_ID, PARENT)
        assert parent.relation == "concerned"

    async def test_the_content_says_what_was_relayed_and_where_the_content_is(
            self, db, source) -> None:
        store, _ = db
        await store.commit_transfer(_record(1))
        groups = await source.content(SOURCE_ID, CHILD, _record(1).id)
        assert groups is not None
        found = {g.label: {i.label: i.value for i in g.items} for g in groups}
        assert found["Inhaltsdaten"]["Inhalt"] == "beim Register anfragen"
        assert found["Herkunft der Daten"]["Register"] == "Standesamt Bremen"
        assert found["Vermittlung"]["Übermittelte Datenkategorien"] == (
            "birth_date, child_given_names")
        assert await source.content(SOURCE_ID, OTHER, _record(1).id) is None

    def test_the_source_id_is_the_host_and_port_of_the_base_url(self) -> None:
        assert broker_source_id("http://127.0.0.1:8000/") == "broker:127.0.0.1:8000"
        assert broker_source_id("https://Einmal.Bremen.de") == "broker:einmal.bremen.de"
        with pytest.raises(ValueError):
            broker_source_id("einmal")


# -- over real HTTP --------------------------------------------------------------------------

def _signer(key: SigningKey, cockpit_url: str) -> SourceTokenSigner:
    """The cockpit's token signer: its URL is the issuer the sources expect."""
    return SourceTokenSigner(private_key=key.private_key, kid=key.kid, issuer=cockpit_url)


def _jwks(keys_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((keys_dir / f"{name}.public.json").read_text())


def _service_token(base_url: str, client_id: str) -> str:
    """A demo service's access token at a broker (the demo keys are public knowledge)."""
    token_endpoint = f"{base_url}/v1/token"
    response = httpx.post(token_endpoint, data={
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion(client_id, demo_private_jwk(client_id),
                                      token_endpoint)}, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _birth(base_url: str, child: dict[str, Any]) -> httpx.Response:
    body = {"proof_type": "birth", "subject": child["idnr"], "purpose": "namensbestimmung",
            "parameters": {"place_of_birth": child["place_of_birth"],
                           "birth_date": child["birth_date"]}}
    return httpx.post(f"{base_url}/v1/proof-requests", json=body, timeout=20,
                      headers={"authorization":
                               f"Bearer {_service_token(base_url, NAMENSDIENST)}"})


def _citizen(demo: LiveServer, family: str, role: str) -> dict[str, Any]:
    credentials = json.loads((demo.data_dir / "demo-credentials.json").read_text())
    return next(c for c in credentials["citizens"]
                if c["family"] == family and c["role"] == role)


class TestTheRegisterKnowsTheBrokersTransferId:
    async def test_the_registers_entry_carries_the_transfer_id_of_the_broker(
            self, second_demo: LiveServer) -> None:
        keys_dir = second_demo.data_dir / "keys"
        cockpit = load_or_create_signing_key(keys_dir, COCKPIT_SOURCES_KEY)
        child = _citizen(second_demo, "elfe", "child")
        response = _birth(second_demo.base_url, child)
        assert response.status_code == 200, response.text
        transfer_id = response.json()["transfer_id"]
        ags = child["place_of_birth"]
        client = SourceClient(url=f"{second_demo.base_url}/registers/standesamt/{ags}/dsc",
                              source_id=f"standesamt:{ags}",
                              signer=_signer(cockpit, second_demo.base_url),
                              source_key=_jwks(keys_dir, REGISTER_ANSWER_KEY))
        try:
            answer = await client.list_entries(child["idnr"], SessionKey())
        finally:
            await client.aclose()
        mine = [e for e in answer.entries if e.transfer_id == transfer_id]
        assert len(mine) == 1, [e.transfer_id for e in answer.entries]
        assert mine[0].recipient is not None
        assert mine[0].recipient.service_id == NAMENSDIENST
        assert mine[0].purpose == "namensbestimmung"


class SecondBroker:
    """``einmal serve --demo --components broker`` in a process of its own, asking the demo
    server's registers and delivering to its cockpit (which does not know it: its records stay
    pending, which the source lists all the same)."""

    def __init__(self, data_dir: Path, demo_url: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cockpit_url = demo_url
        env = {**os.environ, "EINMAL_SIMULATOR_FAMILIES": "60"}
        env.pop("EINMAL_DATABASE_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "einmal_app", "serve", "--demo", "--components", "broker",
             "--port", str(self.port), "--data-dir", str(data_dir),
             "--registers-url", f"{demo_url}/registers", "--cockpit-url", demo_url,
             "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True)

    def wait_live(self) -> None:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"the second broker exited: {stderr[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the second broker did not start")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        try:
            _, stderr = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        return stderr or ""


@pytest.fixture(name="second_broker", scope="module")
def fx_second_broker(tmp_path_factory: pytest.TempPathFactory,
                     second_demo: LiveServer) -> Iterator[SecondBroker]:
    broker = SecondBroker(tmp_path_factory.mktemp("broker2"), second_demo.base_url)
    try:
        broker.wait_live()
        yield broker
    finally:
        stderr = broker.stop()
        assert "Traceback" not in stderr, stderr[-3000:]


@pytest.fixture(name="second_demo", scope="module")
def fx_second_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The demo server beside the second broker (its registers answer both brokers)."""
    yield from serve_demo(tmp_path_factory)


@pytest.fixture(name="released", scope="module")
def fx_released(second_demo: LiveServer, second_broker: SecondBroker) -> dict[str, Any]:
    """A birth proof released by the second broker: its answer and the child."""
    child = _citizen(second_demo, "elfe", "child")
    response = _birth(second_broker.url, child)
    assert response.status_code == 200, response.text
    return {"answer": response.json(), "child": child}


@pytest.fixture(name="cockpit_key", scope="module")
def fx_cockpit_key(second_broker: SecondBroker, tmp_path_factory: pytest.TempPathFactory,
                   ) -> SigningKey:
    """The cockpit's key: made elsewhere, its public half placed in the broker's keys dir."""
    key = load_or_create_signing_key(tmp_path_factory.mktemp("cockpit-keys"),
                                     COCKPIT_SOURCES_KEY)
    (second_broker.data_dir / "keys" / f"{COCKPIT_SOURCES_KEY}.public.json").write_text(
        json.dumps({"keys": [key.public_jwk]}))
    return key


@pytest.fixture(name="client")
async def fx_client(second_broker: SecondBroker, cockpit_key: SigningKey,
                    ) -> AsyncIterator[SourceClient]:
    client = SourceClient(url=f"{second_broker.url}/dsc",
                          source_id=broker_source_id(second_broker.url),
                          signer=_signer(cockpit_key, second_broker.cockpit_url),
                          source_key=_jwks(second_broker.data_dir / "keys", ANSWER_KEY))
    yield client
    await client.aclose()


def _problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == f"urn:einmal:problem:{slug}"


class TestASecondBrokerIsASource:
    async def test_it_lists_the_transfer_it_relayed(self, client, released) -> None:
        child, transfer_id = released["child"], released["answer"]["transfer_id"]
        answer = await client.list_entries(child["idnr"], SessionKey())
        [entry] = [e for e in answer.entries if e.id == transfer_id]
        assert entry.transfer_id == transfer_id
        assert entry.source == client.source_id and entry.source_name == SOURCE_NAME
        assert entry.recipient is not None and entry.recipient.service_id == NAMENSDIENST
        assert entry.purpose == "namensbestimmung" and entry.data_categories

    async def test_its_content_answer_says_where_the_content_is(self, client,
                                                                released) -> None:
        child, transfer_id = released["child"], released["answer"]["transfer_id"]
        content = await client.content(child["idnr"], transfer_id, SessionKey())
        found = {g.label: {i.label: i.value for i in g.items} for g in content.groups}
        assert found["Inhaltsdaten"]["Inhalt"] == "beim Register anfragen"
        assert found["Vermittlung"]["Vorgang"] == transfer_id
        assert found["Herkunft der Daten"]["Registerkennung"].startswith("standesamt:")
        assert child["given_names"] not in msgspec.json.encode(content.groups).decode()

    async def test_another_citizen_gets_nothing_of_it(self, client, released,
                                                      second_demo) -> None:
        other = _citizen(second_demo, "uvo", "parent")
        transfer_id = released["answer"]["transfer_id"]
        session = SessionKey()
        assert all(e.id != transfer_id
                   for e in (await client.list_entries(other["idnr"], session)).entries)
        with pytest.raises(SourceRefusedError) as refused:
            await client.content(other["idnr"], transfer_id, session)
        assert refused.value.status == 404

    async def test_the_status_names_the_broker(self, client) -> None:
        status = await client.status()
        assert (status.source, status.name) == (client.source_id, SOURCE_NAME)

    async def test_an_answer_checked_with_another_key_is_refused(
            self, second_broker, cockpit_key, released, tmp_path) -> None:
        other = load_or_create_signing_key(tmp_path, ANSWER_KEY)
        client = SourceClient(url=f"{second_broker.url}/dsc",
                              source_id=broker_source_id(second_broker.url),
                              signer=_signer(cockpit_key, second_broker.cockpit_url),
                              source_key={"keys": [other.public_jwk]})
        try:
            with pytest.raises(InvalidSourceAnswerError, match="signed with another key"):
                await client.list_entries(released["child"]["idnr"], SessionKey())
        finally:
            await client.aclose()


class TestASecondBrokerRefuses:
    def _body(self, idnr: str) -> bytes:
        return msgspec.json.encode(ListRequest(correlation_id=str(uuid.uuid4()), idnr=idnr,
                                               session_key=SessionKey().public_jwk))

    def _token(self, broker: SecondBroker, key: SigningKey, body: bytes,
               audience: str | None = None) -> str:
        return _signer(key, broker.cockpit_url).token(audience or broker_source_id(broker.url),
                                                      body)

    def _post(self, broker: SecondBroker, body: bytes, token: str) -> httpx.Response:
        return httpx.post(f"{broker.url}/dsc/protokolldaten", content=body, timeout=10,
                          headers={"authorization": f"Bearer {token}",
                                   "content-type": "application/json"})

    def test_a_replayed_token(self, second_broker, cockpit_key, released) -> None:
        body = self._body(released["child"]["idnr"])
        token = self._token(second_broker, cockpit_key, body)
        assert self._post(second_broker, body, token).status_code == 200
        replay = self._post(second_broker, body, token)
        _problem(replay, 401, "unauthenticated")
        assert released["child"]["given_names"] not in replay.text

    def test_another_cockpits_key(self, second_broker, cockpit_key, released,
                                  tmp_path) -> None:
        rogue = load_or_create_signing_key(tmp_path, COCKPIT_SOURCES_KEY)
        body = self._body(released["child"]["idnr"])
        token = self._token(second_broker, rogue, body)
        _problem(self._post(second_broker, body, token), 401, "unauthenticated")

    def test_a_token_for_another_source(self, second_broker, cockpit_key, released) -> None:
        body = self._body(released["child"]["idnr"])
        token = self._token(second_broker, cockpit_key, body, "broker:elsewhere.example")
        _problem(self._post(second_broker, body, token), 401, "unauthenticated")

    def test_an_oversized_body(self, second_broker, cockpit_key) -> None:
        body = b"{" + b" " * 20_000 + b"}"
        token = self._token(second_broker, cockpit_key, body)
        _problem(self._post(second_broker, body, token), 413, "payload-too-large")

    def test_a_body_that_is_no_request(self, second_broker, cockpit_key) -> None:
        body = b'{"nachrichtentyp": "anfrageListeProtokolldaten", "idnr": "1"}'
        token = self._token(second_broker, cockpit_key, body)
        _problem(self._post(second_broker, body, token), 422, "invalid-request")

    def test_no_token(self, second_broker) -> None:
        response = httpx.post(f"{second_broker.url}/dsc/protokolldaten", content=b"{}",
                              timeout=10)
        _problem(response, 401, "unauthenticated")

