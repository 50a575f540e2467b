"""Ingest through the service on a real store: the same readers as record-by-record,
duplicates counted; and a store that fails is a 503 ``store-unavailable``, on every backend."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar import Litestar
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit.http import AuditorAuth, ChannelAuth, create_cockpit_router
from cockpit.log import TransferLog
from cockpit.service import CockpitService
from cockpit.tables import CITIZEN_ENTRY, ENTRY
from cockpit.vault import CitizenVault
from einmal.citizen import CitizenAuth
from einmal.domain.contract import CHANNEL_AUDIENCE
from einmal.domain.transfer import (
    Concerned,
    Outcome,
    RegisterRef,
    ServiceRef,
    TransferBatch,
    TransferRecord,
)
from einmal.keys import load_or_create_signing_key
from einmal.problems import exception_handlers
from einmal.tokens import TokenIssuer
from tests.integration.cockpit_stores import BACKENDS, open_backend

CHILD, PARENT, OTHER = "86095742719", "81709656328", "60478593182"


def _record(subject: str, *, proof_type: str = "income", parents: tuple[str, ...] = (),
            outcome: Outcome = Outcome.DELIVERED) -> TransferRecord:
    return TransferRecord(
        id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), outcome=outcome,
        proof_type=proof_type, purpose="p", subject=subject,
        service=ServiceRef(id="s", name="S", authority="A", land="HB"),
        register=RegisterRef(id="r", name="R") if outcome is Outcome.DELIVERED else None,
        error_type=None if outcome is Outcome.DELIVERED else "consent-required",
        concerned=(Concerned(idnr=subject, relation="self"),
                   *(Concerned(idnr=p, relation="concerned") for p in parents)))


async def _readers(engine: AsyncEngine) -> dict[str, set[tuple[str, str]]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(CITIZEN_ENTRY.c.transfer_id,
                                          CITIZEN_ENTRY.c.citizen_ref,
                                          CITIZEN_ENTRY.c.relation))).all()
    out: dict[str, set[tuple[str, str]]] = {}
    for transfer_id, ref, relation in rows:
        out.setdefault(transfer_id, set()).add((ref, relation))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_relation_applies_to_its_record_and_later_ones_in_the_batch(
        tmp_path: Path, backend: str) -> None:
    async with open_backend(backend, tmp_path) as (store, engine):
        service = CockpitService(store=store, pseudonym_key=b"k" * 32,
                                 vault=CitizenVault(b"m" * 32))
        before = _record(CHILD)                                  # no relation known yet
        birth = _record(CHILD, proof_type="birth", parents=(PARENT,))
        after = _record(CHILD)                                   # the relation is known now
        other = _record(OTHER)
        result = await service.ingest([before, birth, after, other, birth])
        assert result == {"accepted": 4, "duplicates": 1}
        readers = await _readers(engine)
        child, parent = service.pseudonym(CHILD), service.pseudonym(PARENT)
        assert readers[before.id] == {(child, "self")}
        assert readers[birth.id] == {(child, "self"), (parent, "child")}
        assert readers[after.id] == {(child, "self"), (parent, "child")}
        assert readers[other.id] == {(service.pseudonym(OTHER), "self")}

        # a second batch: known relation from the store; repeats are duplicates
        later = _record(CHILD)
        refused = _record(OTHER, proof_type="birth", parents=(PARENT,),
                          outcome=Outcome.REFUSED)  # a refusal teaches no relation
        result = await service.ingest([before, later, refused])
        assert result == {"accepted": 2, "duplicates": 1}
        readers = await _readers(engine)
        assert readers[later.id] == {(child, "self"), (parent, "child")}
        assert readers[refused.id] == {(service.pseudonym(OTHER), "self"),
                                       (parent, "concerned")}
        async with engine.connect() as conn:
            count = len((await conn.execute(select(ENTRY.c.id))).all())
        assert count == 6


def _app(tmp_path: Path, service: CockpitService, transfer_log: TransferLog) -> Litestar:
    router = create_cockpit_router(
        cockpit=service, citizens=CitizenAuth(issuer="x", keys_file=None, allow_test_idnrs=True),
        channel=ChannelAuth(keys_file=tmp_path / "broker-channel.public.json",
                            issuer="https://broker", audience=CHANNEL_AUDIENCE),
        transfer_log=transfer_log, auditors=AuditorAuth(keys_file=tmp_path / "auditors.json"))
    return Litestar(route_handlers=[router], exception_handlers=exception_handlers())


def _store_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:einmal:problem:store-unavailable"
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_failed_ingest_answers_503_store_unavailable_with_retry_after(
        tmp_path: Path, backend: str) -> None:
    """The SQLite writer's failure is a store failure like any other: a 503, never a 500."""
    channel_key = load_or_create_signing_key(tmp_path, "broker-channel")
    token = TokenIssuer(key=channel_key, issuer="https://broker", audience=CHANNEL_AUDIENCE,
                        ttl_s=60).issue("broker")
    async with open_backend(backend, tmp_path) as (store, engine):
        service = CockpitService(store=store, pseudonym_key=b"k" * 32,
                                 vault=CitizenVault(b"m" * 32))
        transfer_log = TransferLog(store=store, origin="test/log",
                                   key=load_or_create_signing_key(tmp_path, "cockpit-log"))
        async with engine.begin() as conn:  # the store breaks: every ingest fails
            await conn.execute(text("DROP TABLE cockpit_citizen_entry"))
        # the app on this test's event loop (the store's connections belong to it)
        transport = httpx.ASGITransport(app=_app(tmp_path, service, transfer_log))
        async with httpx.AsyncClient(transport=transport, base_url="http://cockpit") as client:
            response = await client.post(
                "/v1/transfer-records", headers={"authorization": f"Bearer {token}"},
                content=msgspec.json.encode(TransferBatch(records=[_record(CHILD)])))
            _store_unavailable(response)
            async with engine.begin() as conn:  # the log's reads fail the same way
                await conn.execute(text("DROP TABLE cockpit_checkpoint"))
            _store_unavailable(await client.get("/v1/log/checkpoint"))
