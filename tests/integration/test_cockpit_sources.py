"""The cockpit's desk against real sources over real HTTP (issue 15 §3, §4, §8, §9): the register
simulators in uvicorn with their protocol and source interface, plus a small source of our own
that misbehaves on purpose (garbage, another citizen, another session's key, another signing
key, too much, a refusal, slowness). The shipped source documents name the simulators."""

import asyncio
import base64
import json
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar, Request, Response, post
from litestar.params import FromPath

from cockpit.sources import DOCUMENTS_DIR, Desk, LogCheck, SourceSpec, load_sources
from cockpit.sources.desk import INVALID, REASONS, REFUSED, TOO_MUCH, UNAVAILABLE
from cockpit.sources.model import QueryResult, SourceInfo
from connectors.factory import build_connectors
from connectors.protocol import ProtocolConfig
from connectors.simulators.app import SimulatorSettings, create_registers_app
from connectors.simulators.population import DemoCitizen, Population, generate_population
from einmal.domain.proofs import ProofType
from einmal.domain.registers import Requester
from einmal.keys import SigningKey, load_or_create_signing_key, public_jwk
from einmal.source_interface import COCKPIT_SOURCES_KEY
from einmal_client.sources import (
    CONTENT_ANSWER,
    LIST_ANSWER,
    VERSION,
    ContentAnswer,
    ContentRequest,
    Envelope,
    ListAnswer,
    ListRequest,
    SessionKey,
    SourceEntry,
    SourceTokenSigner,
    content_groups,
    seal_answer,
)

FAMILIES = 30
COCKPIT = "http://cockpit.test"
BREMEN = "standesamt:04011000"
HAMBURG = "standesamt:02000000"
INCOME = "einkommensregister"
ELTERNGELD = Requester(service_id="elfe-bremen", service_name="ELFE Bremen",
                       authority="Elterngeldstelle Bremen", purpose="elterngeld",
                       legal_basis="§ 25 BEEG, § 68 (3) PStG", consent_id="consent-1")
OTHER_IDNR = "86095742719"


def _serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread, socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread, sock


def _stop(server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


# -- a source that misbehaves on purpose ---------------------------------------------------------

FAKE_KEY = SigningKey(kid="fake-1", private_key=Ed25519PrivateKey.generate())
ROGUE_KEY = SigningKey(kid="fake-1", private_key=Ed25519PrivateKey.generate())  # same kid
FAKE_MODES = ("good", "slow", "garbage", "other-idnr", "wrong-session", "wrong-key",
              "too-many", "twice", "refuse")


def _entry(source: str, number: int) -> SourceEntry:
    return SourceEntry(id=f"e{number}", occurred_at=datetime.now(UTC), source=source,
                       source_name="Fake", purpose="test")


def _fake_app() -> Litestar:
    @post("/{mode:str}/dsc/protokolldaten", status_code=200)
    async def listing(mode: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
        asked = msgspec.json.decode(await request.body(), type=ListRequest)
        source = f"fake:{mode}"
        if mode == "refuse":
            return Response(content=b'{"type":"urn:einmal:problem:unauthenticated"}',
                            status_code=401, media_type="application/problem+json")
        if mode == "garbage":
            return Response(content=b"<html>not an answer</html>", media_type="text/html")
        if mode == "slow":
            await asyncio.sleep(1.0)
        count = {"too-many": 5_001, "twice": 2}.get(mode, 1)
        entries = tuple(_entry(source, 1 if mode == "twice" else n) for n in range(count))
        answer = ListAnswer(correlation_id=asked.correlation_id, source=source,
                            idnr=OTHER_IDNR if mode == "other-idnr" else asked.idnr,
                            entries=entries)
        to = SessionKey().public_jwk if mode == "wrong-session" else asked.session_key
        key = ROGUE_KEY if mode == "wrong-key" else FAKE_KEY
        payload = seal_answer(to, msgspec.json.encode(answer), private_key=key.private_key,
                              kid=key.kid)
        envelope = Envelope(nachrichtentyp=LIST_ANSWER, version=VERSION,
                            correlation_id=asked.correlation_id, source=source, payload=payload)
        return Response(content=msgspec.json.encode(envelope), media_type="application/json")

    @post("/{mode:str}/dsc/inhaltsdaten", status_code=200)
    async def content(mode: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
        asked = msgspec.json.decode(await request.body(), type=ContentRequest)
        source = f"fake:{mode}"
        answer = ContentAnswer(correlation_id=asked.correlation_id, source=source,
                               idnr=asked.idnr, entry_id=asked.entry_id,
                               groups=content_groups({"Probe": {"Wert": "42"}}))
        payload = seal_answer(asked.session_key, msgspec.json.encode(answer),
                              private_key=FAKE_KEY.private_key, kid=FAKE_KEY.kid)
        envelope = Envelope(nachrichtentyp=CONTENT_ANSWER, version=VERSION,
                            correlation_id=asked.correlation_id, source=source, payload=payload)
        return Response(content=msgspec.json.encode(envelope), media_type="application/json")

    return Litestar([listing, content], logging_config=None, openapi_config=None)


def _fake_specs(base: str) -> list[SourceSpec]:
    key = {"keys": [public_jwk(FAKE_KEY.private_key.public_key(), FAKE_KEY.kid)]}
    return [SourceSpec(info=SourceInfo(id=f"fake:{mode}", name=f"Fake {mode}", kind="register",
                                       group="Tests"),
                       url=f"{base}/{mode}/dsc", key=key, key_path=None, file="fake.toml")
            for mode in FAKE_MODES]


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module", name="population")
def fx_population() -> Population:
    return generate_population(1, FAMILIES)


@pytest.fixture(scope="module", name="keys_dir")
def fx_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module", name="registers_url")
def fx_registers_url(population: Population, keys_dir: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = tmp_path_factory.mktemp("data") / "protocol.sqlite"
    config = ProtocolConfig(database_url=f"sqlite+aiosqlite:///{database}", keys_dir=keys_dir,
                            cockpit_issuer=COCKPIT)
    app = create_registers_app(SimulatorSettings(families=FAMILIES, protocol=config),
                               population)
    base, server, thread, sock = _serve(app)
    yield f"{base}/registers"
    _stop(server, thread, sock)


@pytest.fixture(scope="module", name="fake_url")
def fx_fake_url() -> Iterator[str]:
    base, server, thread, sock = _serve(_fake_app())
    yield base
    _stop(server, thread, sock)


@pytest.fixture(name="signer")
def fx_signer(keys_dir: Path) -> SourceTokenSigner:
    key = load_or_create_signing_key(keys_dir, COCKPIT_SOURCES_KEY)
    return SourceTokenSigner(private_key=key.private_key, kid=key.kid, issuer=COCKPIT)


@pytest.fixture(name="specs")
def fx_specs(registers_url: str, fake_url: str, keys_dir: Path) -> list[SourceSpec]:
    shipped = load_sources(DOCUMENTS_DIR, registers_base_url=registers_url,
                           broker_base_url="http://127.0.0.1:9", keys_dir=keys_dir)
    return [*shipped, *_fake_specs(fake_url)]


@pytest.fixture(name="desk")
async def fx_desk(specs: list[SourceSpec], signer: SourceTokenSigner) -> AsyncIterator[Desk]:
    desk = Desk(specs, signer=signer, deadline_s=0.6, timeout_s=3.0)
    yield desk
    await desk.aclose()


def _demo(population: Population, family: str, role: str) -> DemoCitizen:
    return next(c for c in population.demo_citizens() if c.family == family and c.role == role)


@pytest.fixture(scope="module", name="mia")
def fx_mia(registers_url: str, population: Population) -> DemoCitizen:
    """Mia's birth was fetched by the Elterngeldstelle: Standesamt Bremen logged it."""
    child = _demo(population, "elfe", "child")

    async def fetch() -> None:
        connectors = build_connectors(registers_url, timeout_s=3.0, retries=0)
        try:
            await connectors[ProofType.BIRTH].fetch(
                child.idnr, {"place_of_birth": child.place_of_birth,
                             "birth_date": child.birth_date}, requester=ELTERNGELD)
        finally:
            for connector in connectors.values():
                await connector.aclose()

    asyncio.run(fetch())
    return child


async def _folded(desk: Desk, source_id: str) -> QueryResult:
    """The session's result once ``source_id`` is no longer late (at most 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        held = desk.answers("s1")
        assert held is not None
        assert held.result is not None
        if _outcome(held.result, source_id).status != "late" or time.monotonic() > deadline:
            return held.result
        await asyncio.sleep(0.05)


def _outcome(result: Any, source_id: str) -> Any:
    return next(o for o in result.outcomes if o.source.id == source_id)


# -- tests ---------------------------------------------------------------------------------------

class TestBadSources:
    """A source that answers wrongly is a source error; nothing of its answer is kept."""

    @pytest.mark.parametrize(("mode", "details"), [
        ("garbage", {INVALID}), ("other-idnr", {INVALID}), ("wrong-session", {INVALID}),
        ("wrong-key", {INVALID}), ("twice", {INVALID}), ("refuse", {REFUSED}),
        # more entries than the desk takes (MAX_ENTRIES; the answer itself, some 1.5 MB,
        # opens: the session key accepts up to the envelope's 4 MiB)
        ("too-many", {TOO_MUCH}),
    ])
    async def test_a_bad_answer_is_an_error_without_entries(self, desk: Desk, mia: DemoCitizen,
                                                            mode: str, details: set[str],
                                                            ) -> None:
        desk.open("s1", expires_at=time.time() + 600)
        result = await desk.query("s1", mia.idnr, (f"fake:{mode}", "fake:good"))
        bad = _outcome(result, f"fake:{mode}")
        assert bad.status == "error"
        assert bad.detail in details
        assert bad.reason == REASONS[bad.detail]  # the stable code the page translates
        assert bad.count == 0
        assert _outcome(result, "fake:good").status == "ok"
        assert {e.source.id for e in result.entries} == {"fake:good"}

    async def test_an_unreachable_source_is_named_while_the_others_show(
            self, specs: list[SourceSpec], signer: SourceTokenSigner, mia: DemoCitizen) -> None:
        down = SourceSpec(info=SourceInfo(id="standesamt:99999999", name="Standesamt Nirgendwo",
                                          kind="register", group="Standesämter"),
                          url="http://127.0.0.1:9/dsc", key=specs[-1].key, key_path=None,
                          file="down.toml")
        desk = Desk([*specs, down], signer=signer, deadline_s=1.0, timeout_s=2.0)
        try:
            desk.open("s1", expires_at=time.time() + 600)
            result = await desk.query("s1", mia.idnr, ("standesamt:99999999", BREMEN))
        finally:
            await desk.aclose()
        assert _outcome(result, "standesamt:99999999").status == "error"
        assert _outcome(result, "standesamt:99999999").detail == UNAVAILABLE
        assert _outcome(result, BREMEN).status == "ok"
        assert [e.source.id for e in result.entries] == [BREMEN]

    async def test_a_source_whose_key_file_is_missing_is_not_asked(self, desk: Desk,
                                                                   mia: DemoCitizen) -> None:
        desk.open("s1", expires_at=time.time() + 600)
        result = await desk.query("s1", mia.idnr, ("broker:127.0.0.1:9",))
        broker = _outcome(result, "broker:127.0.0.1:9")
        assert broker.status == "error"
        assert "lacks its key" in broker.detail

    async def test_unknown_sources_and_unopened_sessions_are_refused(self, desk: Desk) -> None:
        with pytest.raises(KeyError):
            await desk.query("never-opened", OTHER_IDNR, (BREMEN,))
        desk.open("s1", expires_at=time.time() + 600)
        with pytest.raises(ValueError, match="no such source"):
            await desk.query("s1", OTHER_IDNR, ("standesamt:00000000",))


class TestRegisters:
    async def test_the_registers_answer_and_entries_merge_newest_first(
            self, desk: Desk, mia: DemoCitizen, population: Population) -> None:
        mother = _demo(population, "elfe", "parent")
        desk.open("s1", expires_at=time.time() + 600)
        result = await desk.query("s1", mother.idnr, (BREMEN, HAMBURG, INCOME, "fake:good"))
        assert [o.status for o in result.outcomes] == ["ok"] * 4
        assert _outcome(result, BREMEN).count >= 1
        keys = [e.key for e in result.entries]
        assert len(keys) == len(set(keys))
        times = [e.entry.occurred_at for e in result.entries]
        assert times == sorted(times, reverse=True)
        birth = next(e for e in result.entries if e.source.id == BREMEN)
        assert birth.key == f"{BREMEN}/{birth.entry.id}"
        assert birth.entry.relation == "concerned"
        assert birth.entry.recipient is not None
        assert birth.entry.recipient.service_id == "elfe-bremen"
        assert birth.log == "not-applicable"  # no log check given to this desk
        held = desk.answers("s1")
        assert held is not None
        assert held.result is result
        assert held.chosen == (BREMEN, HAMBURG, INCOME, "fake:good")

    async def test_content_is_fetched_from_the_source_and_kept_in_the_session(
            self, desk: Desk, mia: DemoCitizen) -> None:
        desk.open("s1", expires_at=time.time() + 600)
        result = await desk.query("s1", mia.idnr, (BREMEN,))
        birth = result.entries[0]
        groups = await desk.content("s1", mia.idnr, birth.key)
        life = next(g for g in groups if g.label == "Lebensdaten")
        values = {i.label: i.value for i in life.items}
        assert values["Vornamen"] == mia.given_names
        assert values["Geburtsdatum"] == mia.birth_date
        held = desk.answers("s1")
        assert held is not None
        assert held.contents[birth.key] == groups
        with pytest.raises(KeyError):
            await desk.content("s1", mia.idnr, f"{BREMEN}/no-such-entry")

    async def test_drop_forgets_the_session(self, desk: Desk, mia: DemoCitizen) -> None:
        first_key = desk.open("s1", expires_at=time.time() + 600).session_key
        await desk.query("s1", mia.idnr, (BREMEN,))
        desk.drop("s1")
        assert desk.answers("s1") is None
        with pytest.raises(KeyError):
            await desk.content("s1", mia.idnr, f"{BREMEN}/x")
        reopened = desk.open("s1", expires_at=time.time() + 600)
        assert reopened.result is None
        assert reopened.session_key is not first_key

    async def test_an_ended_session_is_gone(self, desk: Desk, mia: DemoCitizen) -> None:
        desk.open("s1", expires_at=time.time() + 0.2)
        await desk.query("s1", mia.idnr, (BREMEN,))
        await asyncio.sleep(0.3)
        assert desk.answers("s1") is None


class TestLateSources:
    async def test_a_late_register_is_named_then_folded_in(
            self, desk: Desk, mia: DemoCitizen, registers_url: str) -> None:
        async with httpx.AsyncClient() as http:
            knob = await http.put(f"{registers_url}/_knobs",
                                  json={"source_latency_ms": 1200, "source": BREMEN})
            assert knob.status_code == 200, knob.text
            try:
                desk.open("s1", expires_at=time.time() + 600)
                started = time.monotonic()
                result = await desk.query("s1", mia.idnr, (BREMEN, "fake:good"))
                waited = time.monotonic() - started
                assert waited < 1.0
                assert _outcome(result, BREMEN).status == "late"
                assert _outcome(result, "fake:good").status == "ok"
                assert {e.source.id for e in result.entries} == {"fake:good"}
                folded = await _folded(desk, BREMEN)
                assert _outcome(folded, BREMEN).status == "ok"
                assert BREMEN in {e.source.id for e in folded.entries}
            finally:
                await http.put(f"{registers_url}/_knobs",
                               json={"source_latency_ms": 0, "source": BREMEN})

    async def test_a_late_answer_of_an_earlier_query_is_not_folded_in(
            self, desk: Desk, mia: DemoCitizen) -> None:
        desk.open("s1", expires_at=time.time() + 600)
        first = await desk.query("s1", mia.idnr, ("fake:slow",))
        assert _outcome(first, "fake:slow").status == "late"
        second = await desk.query("s1", mia.idnr, ("fake:good",))
        await asyncio.sleep(1.2)
        held = desk.answers("s1")
        assert held is not None
        assert held.result is second
        assert [o.source.id for o in held.result.outcomes] == ["fake:good"]

    async def test_a_source_past_the_hard_timeout_is_an_error(
            self, specs: list[SourceSpec], signer: SourceTokenSigner, mia: DemoCitizen) -> None:
        desk = Desk(specs, signer=signer, deadline_s=0.2, timeout_s=0.5)
        try:
            desk.open("s1", expires_at=time.time() + 600)
            result = await desk.query("s1", mia.idnr, ("fake:slow",))
            assert _outcome(result, "fake:slow").status == "late"
            await asyncio.sleep(0.6)
            held = desk.answers("s1")
            assert held is not None and held.result is not None
            assert _outcome(held.result, "fake:slow").status == "error"
            assert held.result.entries == ()
        finally:
            await desk.aclose()


# -- the log cross-check, on a live demo server (broker + cockpit + registers) --------------------

def _service_token(http: httpx.Client, credentials: dict[str, Any], client_id: str) -> str:
    service = next(s for s in credentials["services"] if s["client_id"] == client_id)
    jwk = service["private_jwk"]
    key = Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode(jwk["d"] + "=" * (-len(jwk["d"]) % 4)))
    now = int(time.time())
    assertion = jwt.encode({"iss": client_id, "sub": client_id,
                            "aud": credentials["token_endpoint"], "iat": now, "exp": now + 60,
                            "jti": str(uuid.uuid4())}, key, algorithm="EdDSA",
                           headers={"kid": jwk["kid"]})
    response = http.post("/v1/token", data={
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


class TestLogCrossCheck:
    """Item 6: a source's entry that went through the broker is checked against the signed
    log; the log's transfers a source should have reported but did not are flagged."""

    @pytest.fixture(name="flow")
    def fx_flow(self, start_live_server: Any) -> Iterator[tuple[Any, dict[str, Any], str]]:
        live = start_live_server()
        credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
        child, parent = (next(c for c in credentials["citizens"]
                              if c["family"] == "elfe" and c["role"] == role)
                         for role in ("child", "parent"))
        with httpx.Client(base_url=live.base_url, timeout=20) as http:
            citizen = http.post("/demo/citizen-token", json={"idnr": parent["idnr"]})
            until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
            consent = http.post("/v1/consents", headers={
                "authorization": f"Bearer {citizen.json()['access_token']}"}, json={
                "service_id": "elterngeldstelle-bremen", "proof_types": ["birth"],
                "purpose": "elterngeld-antrag", "valid_until": until,
                "subject": child["idnr"]})
            assert consent.status_code == 201, consent.text
            token = _service_token(http, credentials, "elterngeldstelle-bremen")
            response = http.post("/v1/proof-requests", headers={
                "authorization": f"Bearer {token}"}, json={
                "proof_type": "birth", "subject": child["idnr"],
                "purpose": "elterngeld-antrag", "consent_id": consent.json()["id"],
                "parameters": {"place_of_birth": child["place_of_birth"],
                               "birth_date": child["birth_date"]}})
            assert response.status_code == 200, response.text
            yield live, child, response.json()["transfer_id"]

    @staticmethod
    def _run(live: Any, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, live.loop).result(timeout=30)

    def _query_until_logged(self, live: Any, idnr: str) -> Any:
        desk = live.component("cockpit").sources
        desk.open("cross-check", expires_at=time.time() + 600)
        deadline = time.monotonic() + 40
        while True:
            result = self._run(live, desk.query("cross-check", idnr, (BREMEN,)))
            if ((result.entries and result.entries[0].log == "logged")
                    or time.monotonic() > deadline):
                return result
            time.sleep(0.2)

    def test_an_entry_through_the_broker_is_in_the_signed_log(self, flow: Any) -> None:
        live, child, transfer_id = flow
        result = self._query_until_logged(live, child["idnr"])
        assert _outcome(result, BREMEN).status == "ok"
        [entry] = result.entries
        assert entry.entry.transfer_id == transfer_id
        assert entry.entry.intermediary == "einmal-broker"
        assert entry.log == "logged"
        assert entry.log_index is not None
        assert result.unreported == ()

    def test_a_transfer_the_register_does_not_report_is_flagged(self, flow: Any) -> None:
        live, child, transfer_id = flow
        self._query_until_logged(live, child["idnr"])
        with sqlite3.connect(live.data_dir / "registers-protocol.db") as db:
            db.execute("DELETE FROM register_protocol_subject")
            db.execute("DELETE FROM register_protocol")
        desk = live.component("cockpit").sources
        result = self._run(live, desk.query("cross-check", child["idnr"], (BREMEN,)))
        assert _outcome(result, BREMEN).status == "ok"
        assert result.entries == ()
        assert [(t, r) for t, _, r in result.unreported] == [(transfer_id, BREMEN)]
        # not flagged when the register that should report it was not asked
        other = self._run(live, desk.query("cross-check", child["idnr"], (HAMBURG,)))
        assert other.unreported == ()
        # the broker reports it: then it is reported, and checked against the log
        broker = next(s.id for s in desk.sources if s.kind == "broker")
        both = self._run(live, desk.query("cross-check", child["idnr"], (BREMEN, broker)))
        assert _outcome(both, broker).status == "ok"
        assert [e.entry.transfer_id for e in both.entries] == [transfer_id]
        assert both.entries[0].log == "logged"
        assert both.unreported == ()

    def test_a_transfer_the_log_lacks_is_missing_once_past_the_grace(self, flow: Any) -> None:
        live, child, transfer_id = flow
        self._query_until_logged(live, child["idnr"])
        cockpit = live.component("cockpit")
        checks = LogCheck(store=cockpit.store, log=cockpit.log,
                          pseudonym=cockpit.service.pseudonym)
        now = datetime.now(UTC)
        entries = [SourceEntry(id="a", occurred_at=now - timedelta(hours=1), source=BREMEN,
                               transfer_id="no-such-transfer"),
                   SourceEntry(id="b", occurred_at=now, source=BREMEN,
                               transfer_id="not-yet-arrived"),
                   SourceEntry(id="c", occurred_at=now, source=BREMEN,
                               transfer_id=transfer_id),
                   SourceEntry(id="d", occurred_at=now, source=BREMEN)]
        ref = cockpit.service.pseudonym(child["idnr"])
        found = self._run(live, checks.entry_checks(ref, entries))
        assert [check for check, _ in found] == ["missing", "pending", "logged",
                                                 "not-applicable"]
        # a source naming this transfer to another citizen: not among theirs in the log
        claimed = SourceEntry(id="e", occurred_at=now - timedelta(hours=1), source=BREMEN,
                              transfer_id=transfer_id)
        stranger = self._run(live, checks.entry_checks(cockpit.service.pseudonym(OTHER_IDNR),
                                                       [claimed]))
        assert stranger == [("missing", None)]

    def test_a_verified_inclusion_is_not_proven_again_but_another_leaf_is(self, flow: Any,
                                                                          ) -> None:
        """The tree only grows: an index once proven under a signed checkpoint stays proven
        (no proof read on the next query). A different leaf at that index is proven again -
        and fails."""
        live, child, transfer_id = flow
        self._query_until_logged(live, child["idnr"])
        cockpit = live.component("cockpit")
        proofs: list[tuple[int, int]] = []

        class CountingLog:
            def __getattr__(self, name: str) -> Any:
                return getattr(cockpit.log, name)

            async def inclusion(self, index: int, size: int) -> Any:
                proofs.append((index, size))
                return await cockpit.log.inclusion(index, size)

        checks = LogCheck(store=cockpit.store, log=CountingLog(),  # a wrapper of TransferLog
                          pseudonym=cockpit.service.pseudonym)
        entry = SourceEntry(id="c", occurred_at=datetime.now(UTC), source=BREMEN,
                            transfer_id=transfer_id)
        ref = cockpit.service.pseudonym(child["idnr"])
        first = self._run(live, checks.entry_checks(ref, [entry]))
        second = self._run(live, checks.entry_checks(ref, [entry]))
        assert first == second and first[0][0] == "logged"
        assert len(proofs) == 1
        index = first[0][1]
        assert index is not None
        # another leaf at that index (a store rewritten under the cockpit): proven again, fails
        real = cockpit.store.readable_entry

        async def rewritten(citizen_ref: str, wanted: str, *, since: datetime) -> Any:
            found = await real(citizen_ref, wanted, since=since)
            return None if found is None else (found[0], b'{"rewritten":true}')

        checks._store = type("Rewritten", (), {
            "readable_entry": staticmethod(rewritten)})()
        third = self._run(live, checks.entry_checks(ref, [entry]))
        assert third == [("missing", index)]
        assert len(proofs) == 2
