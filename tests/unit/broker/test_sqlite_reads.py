"""The SQLite backend reads a consent and the outbox on a reader connection of its own: the
same as the SQLAlchemy backend reads, what was committed last, and no read left open."""

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.protocol import OutboxSeal, Pseudonyms
from broker.store import SqliteBrokerStore
from broker.store.alchemy import SqlAlchemyBrokerStore
from broker.store.base import StoredConsent
from einmal.domain.transfer import Outcome, ServiceRef, TransferRecord
from einmal.store import StoreError, create_engine, dispose

T0 = datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=UTC)
SEAL = OutboxSeal(key=b"o" * 32, pseudonyms=Pseudonyms(b"p" * 32))


def _consent(**changes: Any) -> StoredConsent:
    values: dict[str, Any] = {
        "id": "c-1", "citizen_ref": "citizen", "subject_ref": "child",
        "subject_masked": "86*******19", "service_id": "familienkasse",
        "proof_types": ("birth", "custody"), "purpose": "kindergeld-antrag", "granted_at": T0,
        "valid_until": T0 + timedelta(days=30), "max_uses": 3, "uses": 0, "revoked_at": None,
        "preview": True}
    return StoredConsent(**{**values, **changes})


@pytest.fixture(name="stores")
async def fx_stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteBrokerStore, Any]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}")
    store = SqliteBrokerStore(engine, SEAL)
    await store.create_schema()
    try:
        yield store, engine
    finally:
        await store.aclose()
        await dispose(engine)


class TestConsent:
    async def test_a_failing_read_is_a_store_error(
            self, stores: tuple[SqliteBrokerStore, Any], monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        store, _ = stores

        def broken() -> Any:
            raise sqlite3.DatabaseError("file is not a database")

        monkeypatch.setattr(store, "_reader_connection", broken)
        with pytest.raises(StoreError):
            await store.consent("c-1")

    async def test_a_busy_reader_reads_on_the_writer(
            self, stores: tuple[SqliteBrokerStore, Any], monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        store, _ = stores
        await store.add_consent(_consent())

        def busy() -> Any:
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise exc

        monkeypatch.setattr(store, "_reader_connection", busy)
        assert await store.consent("c-1") == _consent()

    async def test_reads_what_the_sqlalchemy_backend_reads(
            self, stores: tuple[SqliteBrokerStore, Any]) -> None:
        store, engine = stores
        for consent in (_consent(), _consent(id="c-2", max_uses=None, preview=False,
                                             revoked_at=T0 + timedelta(hours=1))):
            await store.add_consent(consent)
            assert await store.consent(consent.id) == consent
            assert await SqlAlchemyBrokerStore.consent(store, consent.id) == consent
        assert await store.consent("unknown") is None
        del engine

    async def test_sees_a_revocation_once_committed(
            self, stores: tuple[SqliteBrokerStore, Any]) -> None:
        store, _ = stores
        await store.add_consent(_consent())
        found = await store.consent("c-1")
        assert found is not None
        assert found.revoked_at is None
        await store.revoke_consent("c-1", "citizen", T0 + timedelta(minutes=5))
        revoked = await store.consent("c-1")
        assert revoked is not None
        assert revoked.revoked_at == T0 + timedelta(minutes=5)

    async def test_leaves_no_read_open(self, stores: tuple[SqliteBrokerStore, Any],
                                       tmp_path: Path) -> None:
        store, _ = stores
        await store.add_consent(_consent())
        record = TransferRecord(id="t-1", occurred_at=T0, outcome=Outcome.REFUSED,
                                proof_type="birth", purpose="p", subject="86095742719",
                                service=ServiceRef(id="s", name="S", authority="A", land="HB"))
        await store.commit_transfer(record)
        assert await store.consent("c-1") is not None
        assert [seq for seq, _ in await store.pending_transfers(10)] == [1]
        assert await SqlAlchemyBrokerStore.pending_transfers(store, 10) == \
            await store.pending_transfers(10)
        other = sqlite3.connect(tmp_path / "broker.db", isolation_level=None)
        try:  # a checkpoint that truncates the WAL is held back by any open read
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            other.close()
        assert busy == 0
