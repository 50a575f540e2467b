"""The citizen API in the source model (issue 15 §7), end to end on a demo server: the
cockpit relays the sources' answers encrypted to the citizen's own key, the citizen's client
(``CitizenClient.source_query``) opens them and checks the sources' signatures; the cockpit
cannot read them and keeps nothing. Bad queries get problems and ask nobody."""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from einmal_client.client import CitizenClient, SourceAnswer, SourceInfo
from einmal_client.sources import ContentAnswer, InvalidSourceAnswerError, SessionKey
from tests.e2e.conftest import Demo, bearer
from tests.e2e.helpers import ELTERNGELD, NAMENSDIENST, birth_request, problem
from tests.e2e.security_support import module_server


@dataclass
class World:
    demo: Demo
    transfer_id: str
    parent: dict[str, Any]
    child: dict[str, Any]

    @property
    def standesamt(self) -> str:
        return f"standesamt:{self.child['place_of_birth']}"

    def query(self, idnr: str, sources: list[str] | None = None) -> list[SourceAnswer]:
        async def run() -> list[SourceAnswer]:
            async with CitizenClient(self.demo.base_url, self.demo.citizen_token(idnr),
                                     idnr=idnr) as citizen:
                return await citizen.source_query(sources)
        return asyncio.run(run())

    def content(self, idnr: str, source: SourceInfo, entry_id: str) -> ContentAnswer:
        async def run() -> ContentAnswer:
            async with CitizenClient(self.demo.base_url, self.demo.citizen_token(idnr),
                                     idnr=idnr) as citizen:
                return await citizen.source_content(source, entry_id)
        return asyncio.run(run())


@pytest.fixture(name="world", scope="module")
def fx_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for _live, demo in module_server(tmp_path_factory.mktemp("dsc-api")):
        parent = demo.citizen("elfe", "parent")
        child = demo.citizen("elfe", "child")
        # the Namensdienst fetches on a legal basis (no consent needed)
        released = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert released.status_code == 200, released.text
        yield World(demo=demo, transfer_id=released.json()["transfer_id"], parent=parent,
                    child=child)


def _one(answers: list[SourceAnswer], source_id: str) -> SourceAnswer:
    return next(a for a in answers if a.source.id == source_id)


class TestAskedLive:
    def test_the_register_reports_the_birth_query_to_the_parent_and_the_child(
            self, world: World) -> None:
        for idnr, relation in ((world.parent["idnr"], "concerned"),
                               (world.child["idnr"], "self")):
            answer = _one(world.query(idnr, [world.standesamt]), world.standesamt)
            assert answer.status == "ok", answer.detail
            entries = [e for e in answer.entries if e.transfer_id == world.transfer_id]
            assert len(entries) == 1, answer.entries
            entry = entries[0]
            assert entry.relation == relation
            assert entry.recipient is not None
            assert entry.recipient.service_id == NAMENSDIENST
            assert entry.purpose == "namensbestimmung"

    def test_the_content_is_what_was_sent(self, world: World) -> None:
        answer = _one(world.query(world.parent["idnr"], [world.standesamt]), world.standesamt)
        entry = next(e for e in answer.entries if e.transfer_id == world.transfer_id)
        content = world.content(world.parent["idnr"], answer.source, entry.id)
        values = [item.value for group in content.groups for item in _items(group)]
        assert world.child["birth_date"] in values
        assert any(world.child["given_names"].split()[0] in v for v in values), values

    def test_every_source_is_named_with_its_status(self, world: World) -> None:
        answers = world.query(world.parent["idnr"])
        listed = {s["id"] for s in world.demo.http.get(
            "/v1/me/sources",
            headers=bearer(world.demo.citizen_token(world.parent["idnr"]))).json()["items"]}
        assert {a.source.id for a in answers} == listed
        # every source is named: answered (ok), or late or failed with a reason
        assert all(a.status == "ok" or (a.status in {"late", "error"} and a.detail)
                   for a in answers)
        assert all(a.entries == () for a in answers if a.status != "ok")

    def test_another_citizen_sees_nothing_of_it(self, world: World) -> None:
        stranger = world.demo.citizen("uvo", "parent")["idnr"]
        answer = _one(world.query(stranger, [world.standesamt]), world.standesamt)
        assert answer.status == "ok"
        assert all(e.transfer_id != world.transfer_id for e in answer.entries)


class TestTheCockpitOnlyRelays:
    def test_the_relayed_answer_is_unreadable_without_the_citizens_key(self, world: World,
                                                                      ) -> None:
        token = world.demo.citizen_token(world.parent["idnr"])
        session = SessionKey()
        response = world.demo.http.post(
            "/v1/me/source-queries", headers=bearer(token),
            json={"session_key": session.public_jwk, "sources": [world.standesamt]})
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        relayed = response.json()["answers"][0]
        assert relayed["status"] == "ok"
        assert world.parent["idnr"] not in response.text
        assert world.child["birth_date"] not in response.text
        assert world.transfer_id not in response.text
        # the payload is a JWE (five parts) to the citizen's key: another key cannot open it
        assert relayed["envelope"]["payload"].count(".") == 4
        with pytest.raises(InvalidSourceAnswerError):
            SessionKey().open(relayed["envelope"]["payload"])
        # the citizen's key opens it: a JWS (three parts) signed by the source
        assert session.open(relayed["envelope"]["payload"]).count(b".") == 2

    def test_a_source_key_other_than_the_sources_is_refused(self, world: World) -> None:
        async def run() -> list[SourceAnswer]:
            idnr = world.parent["idnr"]
            async with CitizenClient(world.demo.base_url, world.demo.citizen_token(idnr),
                                     idnr=idnr) as citizen:
                sources = await citizen.sources()
                broker_key = next(s.key for s in sources if s.kind == "broker")
                forged = [SourceInfo(id=s.id, name=s.name, kind=s.kind, group=s.group,
                                     key=broker_key if s.id == world.standesamt else s.key)
                          for s in sources]
                return await citizen.source_query([world.standesamt], known=forged)
        answer = _one(asyncio.run(run()), world.standesamt)
        assert answer.status == "error"
        assert answer.entries == ()
        assert "key" in answer.detail


class TestBadQueries:
    def test_without_a_citizen_token(self, world: World) -> None:
        for path in ("/v1/me/source-queries", "/v1/me/source-queries/content"):
            problem(world.demo.http.post(path, json={}), 401, "unauthenticated")
        problem(world.demo.http.get("/v1/me/sources"), 401, "unauthenticated")
        problem(world.demo.http.post(
            "/v1/me/source-queries", json={"session_key": SessionKey().public_jwk},
            headers=bearer(world.demo.service_token(ELTERNGELD))), 401, "unauthenticated")

    @pytest.mark.parametrize("body", [
        {},
        {"session_key": {"kty": "OKP", "crv": "X25519", "x": "AAAA", "d": "AAAA"}},
        {"session_key": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},
        {"session_key": "x"},
        {"session_key": {"kty": "OKP", "crv": "X25519", "x": "AAAA"}, "sources": ["nope:1"]},
        {"session_key": {"kty": "OKP", "crv": "X25519", "x": "AAAA"}, "extra": 1},
    ])
    def test_a_bad_query_is_refused(self, world: World, body: dict[str, Any]) -> None:
        token = world.demo.citizen_token(world.parent["idnr"])
        problem(world.demo.http.post("/v1/me/source-queries", json=body,
                                     headers=bearer(token)), 422, "invalid-request")

    def test_content_of_an_entry_that_is_not_about_me(self, world: World) -> None:
        answer = _one(world.query(world.parent["idnr"], [world.standesamt]), world.standesamt)
        entry = next(e for e in answer.entries if e.transfer_id == world.transfer_id)
        stranger = world.demo.citizen("uvo", "parent")["idnr"]
        response = world.demo.http.post(
            "/v1/me/source-queries/content", headers=bearer(world.demo.citizen_token(stranger)),
            json={"session_key": SessionKey().public_jwk, "source": world.standesamt,
                  "entry_id": entry.id})
        problem(response, 404, "not-found")

    def test_a_body_too_large(self, world: World) -> None:
        token = world.demo.citizen_token(world.parent["idnr"])
        response = world.demo.http.post(
            "/v1/me/source-queries", headers={**bearer(token), "content-type": "application/json"},
            content=b'{"session_key": {}, "sources": ["' + b"a" * 70_000 + b'"]}')
        assert response.status_code == 413


def _items(group: Any) -> Iterator[Any]:
    yield from group.items
    for sub in group.groups:
        yield from _items(sub)
