"""What the broker keeps (broker/protocol.py) and for how long (broker/retention.py), over the
fake store and a hand-moved clock. Failure cases first."""

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from structlog.testing import capture_logs

from broker.protocol import OutboxSeal, ProtocolEntry, Pseudonyms, SealError
from broker.retention import (
    Retention,
    RetentionError,
    retention_sweeper,
    years_before,
)
from broker.store import RetentionCutoffs
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.store import StoreError
from tests.unit.broker.conftest import CHILD, OTHER, PARENT
from tests.unit.broker.fakes import Clock, FakeBrokerStore

NOW = datetime(2028, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PSEUDONYMS = Pseudonyms(b"p" * 32)
SEAL = OutboxSeal(key=b"o" * 32, pseudonyms=PSEUDONYMS)


def _record(n: int = 1, *, at: datetime = NOW) -> TransferRecord:
    return TransferRecord(
        id=f"00000000-0000-7000-8000-{n:012d}", occurred_at=at, outcome=Outcome.DELIVERED,
        proof_type="birth", purpose="elterngeld-antrag",
        service=ServiceRef(id="svc", name="Elterngeldstelle", authority="Amt", land="HB"),
        subject=CHILD, data_categories=("birth_date",),
        register=RegisterRef(id="standesamt:04011000", name="Standesamt Bremen"),
        legal_basis="§ 1 Test", consent_id="c1", correlation_id=f"Akte {PARENT}",
        concerned=(Concerned(idnr=CHILD, relation="self"),
                   Concerned(idnr=PARENT, relation="concerned")))


class TestOutboxSeal:
    def test_a_key_of_the_wrong_size_is_refused(self) -> None:
        with pytest.raises(ValueError, match="32 bytes"):
            OutboxSeal(key=b"short", pseudonyms=PSEUDONYMS)
        with pytest.raises(ValueError, match="at least 32 bytes"):
            Pseudonyms(b"short")

    def test_a_sealed_record_opens_only_under_its_id_and_key(self) -> None:
        sealed, _ = SEAL.seal(_record(1))
        with pytest.raises(SealError):
            SEAL.open(_record(2).id, sealed)  # moved to another row
        with pytest.raises(SealError):
            OutboxSeal(key=b"x" * 32, pseudonyms=PSEUDONYMS).open(_record(1).id, sealed)
        with pytest.raises(SealError):
            SEAL.open(_record(1).id, sealed[:-1] + bytes([sealed[-1] ^ 1]))  # tampered
        with pytest.raises(SealError):
            SEAL.open(_record(1).id, b"")

    def test_the_sealed_record_holds_nothing_in_plain_and_opens_to_the_record(self) -> None:
        record = _record()
        sealed, _ = SEAL.seal(record)
        assert CHILD.encode() not in sealed and PARENT.encode() not in sealed
        assert msgspec.json.decode(SEAL.open(record.id, sealed), type=TransferRecord) == record
        assert SEAL.seal(record)[0] != sealed  # a fresh nonce each time

    def test_the_protocol_entry_names_citizens_only_by_pseudonym(self) -> None:
        record = _record()
        protocol = SEAL.protocol(record)
        for idnr in (CHILD, PARENT):
            assert idnr.encode() not in protocol
        entry = msgspec.json.decode(protocol, type=ProtocolEntry)
        assert entry.subject == PSEUDONYMS(CHILD)
        assert [(c.ref, c.relation) for c in entry.concerned] == [
            (PSEUDONYMS(CHILD), "self"), (PSEUDONYMS(PARENT), "concerned")]
        # who asked whom for what, when, on which basis
        assert (entry.service.id, entry.register, entry.proof_type, entry.data_categories,
                entry.purpose, entry.occurred_at, entry.legal_basis, entry.consent_id) == (
            "svc", record.register, "birth", ("birth_date",), "elterngeld-antrag", NOW,
            "§ 1 Test", "c1")
        assert b"Akte" not in protocol  # the service's free-text correlation id is left out

    def test_the_pseudonym_is_the_hmac_the_consents_use(self) -> None:
        assert PSEUDONYMS(OTHER) == hmac.new(b"p" * 32, OTHER.encode(),
                                             hashlib.sha256).hexdigest()
        assert PSEUDONYMS(OTHER) == PSEUDONYMS(OTHER) != PSEUDONYMS(CHILD)


class TestYearsBefore:
    def test_two_calendar_years_back(self) -> None:
        assert years_before(NOW, 2) == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def test_29_february_becomes_the_28th(self) -> None:
        leap = datetime(2028, 2, 29, 8, 30, tzinfo=UTC)
        assert years_before(leap, 2) == datetime(2026, 2, 28, 8, 30, tzinfo=UTC)


@pytest.fixture(name="retention")
def fx_retention() -> tuple[Retention, FakeBrokerStore, Clock]:
    store, clock = FakeBrokerStore(), Clock(NOW)
    return Retention(store, clock=clock), store, clock


_Setup = tuple[Retention, FakeBrokerStore, Clock]


class TestRetention:
    def test_shredding_protocol_data_younger_than_two_years_is_refused(
            self, retention: _Setup) -> None:
        rules, _, _ = retention
        with pytest.raises(RetentionError, match=r"§ 9 \(3\) IDNrG.*2026-03-01T12:00:00"):
            rules.cutoffs(before=NOW - DAY)
        assert rules.cutoffs(before=NOW - 3 * 365 * DAY).protocol_before == NOW - 3 * 365 * DAY

    async def test_a_store_failure_propagates(self, retention: _Setup) -> None:
        rules, store, _ = retention
        store.failure = StoreError("disk gone")
        with pytest.raises(StoreError):
            await rules.sweep()

    def test_the_cut_offs_follow_the_clock(self, retention: _Setup) -> None:
        rules, _, clock = retention
        clock.advance(DAY)
        cutoffs = rules.cutoffs()
        assert cutoffs.now == NOW + DAY
        assert cutoffs.protocol_before == cutoffs.consents_before == datetime(
            2026, 3, 2, 12, 0, tzinfo=UTC)
        assert cutoffs.previews_before == NOW  # a day after their time was up
        assert cutoffs.buckets_before == (NOW + DAY).timestamp() - 3600

    async def test_protocol_entries_go_two_years_after_delivery_not_before(
            self, retention: _Setup) -> None:
        rules, store, clock = retention
        await store.commit_transfer(_record(1))
        await store.commit_transfer(_record(2))  # never delivered: kept
        await store.mark_delivered([1], NOW)
        clock.advance(730 * DAY)  # 2030-03-01 12:00: two calendar years, to the second
        assert (await rules.sweep())["broker_transfer"] == 0
        clock.advance(timedelta(seconds=1))
        with capture_logs() as logs:
            deleted = await rules.sweep()
        assert deleted["broker_transfer"] == 1
        assert [t.record.id for t in store.transfers] == [_record(2).id]
        assert logs == [{"event": "retention.swept", "log_level": "info", "sealed": 0,
                         **deleted}]

    async def test_a_sweep_with_nothing_to_do_logs_nothing(self, retention: _Setup) -> None:
        rules, _, _ = retention
        with capture_logs() as logs:
            assert set((await rules.sweep()).values()) == {0}
        assert logs == []


class TestTheSweeper:
    async def test_it_runs_by_itself_and_keeps_running_after_a_store_failure(
            self, retention: _Setup) -> None:
        rules, store, clock = retention
        await store.commit_transfer(_record(1))
        await store.mark_delivered([1], NOW)
        clock.advance(3 * 365 * DAY)
        failures: list[None] = []
        apply_retention = store.apply_retention

        async def fails_once(cutoffs: RetentionCutoffs) -> dict[str, int]:
            if not failures:
                failures.append(None)
                raise StoreError("disk gone")
            return await apply_retention(cutoffs)

        store.apply_retention = fails_once  # type: ignore[method-assign]  # a store down once
        worker = retention_sweeper(rules, interval_s=0.001)
        worker.start()
        try:
            await _until(lambda: not store.transfers)
        finally:
            await worker.stop()
        assert failures == [None]
        assert worker.name == "retention"


async def _until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)
