"""CockpitService on an in-memory store and an injected clock: ingest, the citizen's feed,
refusals. Failure cases first."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from cockpit.errors import InvalidRequestError
from cockpit.service import MAX_PAGE, VISIBLE_FOR, CockpitService
from cockpit.vault import CitizenVault, VaultError
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.store import StoreError
from tests.unit.cockpit.fakes import FakeEntryStore

CHILD, PARENT, OTHER = "86095742719", "81709656328", "60478593182"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _record(subject: str, n: int, *, proof_type: str = "income",
            parents: tuple[str, ...] = (), outcome: Outcome = Outcome.DELIVERED,
            at: datetime | None = None) -> TransferRecord:
    return TransferRecord(
        id=str(uuid.UUID(int=n)), occurred_at=at or NOW - timedelta(minutes=100 - n),
        outcome=outcome, proof_type=proof_type, purpose="kindergeld-antrag", subject=subject,
        service=ServiceRef(id="s", name="S", authority="A", land="HB"),
        register=RegisterRef(id="r", name="R") if outcome is Outcome.DELIVERED else None,
        error_type=None if outcome is Outcome.DELIVERED else "consent-required",
        concerned=(Concerned(idnr=subject, relation="self"),
                   *(Concerned(idnr=p, relation="concerned") for p in parents)))


@pytest.fixture(name="store")
def fx_store() -> FakeEntryStore:
    return FakeEntryStore()


@pytest.fixture(name="make_service")
def fx_make_service(store: FakeEntryStore) -> Callable[..., CockpitService]:
    def make(*, master: bytes = b"m" * 32, clock: Callable[[], datetime] = lambda: NOW,
             on_ingested: Callable[[], None] = lambda: None) -> CockpitService:
        return CockpitService(store=store, pseudonym_key=b"k" * 32,
                              vault=CitizenVault(master), clock=clock, on_ingested=on_ingested)

    return make


@pytest.fixture(name="service")
def fx_service(make_service: Callable[..., CockpitService]) -> CockpitService:
    return make_service()


class TestRefusals:
    @pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1])
    async def test_a_feed_page_outside_1_to_200_is_refused(self, service: CockpitService,
                                                           limit: int) -> None:
        with pytest.raises(InvalidRequestError, match="limit: between 1 and 200"):
            await service.transfers_of(CHILD, limit=limit)

    @pytest.mark.parametrize("cursor", ["not-a-cursor", "Zm9v", "!!"])
    async def test_a_cursor_not_from_this_api_is_refused(self, service: CockpitService,
                                                         cursor: str) -> None:
        with pytest.raises(InvalidRequestError, match="cursor"):
            await service.transfers_of(CHILD, cursor=cursor)

    async def test_a_store_failure_reaches_the_caller_and_nothing_is_announced(
            self, store: FakeEntryStore, make_service: Callable[..., CockpitService]) -> None:
        announced: list[None] = []
        service = make_service(on_ingested=lambda: announced.append(None))
        store.failure = StoreError("disk full")
        with pytest.raises(StoreError):
            await service.ingest([_record(CHILD, 1)])
        with pytest.raises(StoreError):
            await service.transfers_of(CHILD)
        assert not announced

    async def test_views_sealed_under_another_master_key_do_not_open(
            self, service: CockpitService, make_service: Callable[..., CockpitService]) -> None:
        await service.ingest([_record(CHILD, 1)])
        with pytest.raises(VaultError):
            await make_service(master=b"x" * 32).transfers_of(CHILD)


class TestIngest:
    async def test_a_repeated_transfer_id_is_a_duplicate_and_changes_nothing(
            self, store: FakeEntryStore, service: CockpitService) -> None:
        first, second = _record(CHILD, 1), _record(CHILD, 2)
        assert await service.ingest([first, second, first]) == {"accepted": 2, "duplicates": 1}
        stored = dict(store.entries)
        assert await service.ingest([second, first]) == {"accepted": 0, "duplicates": 2}
        assert store.entries == stored
        assert len((await service.transfers_of(CHILD))["items"]) == 2

    async def test_the_sequencer_is_woken_only_when_something_new_arrived(
            self, make_service: Callable[..., CockpitService]) -> None:
        announced: list[None] = []
        service = make_service(on_ingested=lambda: announced.append(None))
        await service.ingest([])
        assert not announced
        await service.ingest([_record(CHILD, 1)])
        await service.ingest([_record(CHILD, 1)])  # a duplicate: nothing new
        assert len(announced) == 1

    async def test_the_store_sees_pseudonyms_only(self, store: FakeEntryStore,
                                                  service: CockpitService) -> None:
        await service.ingest([_record(CHILD, 1, proof_type="birth", parents=(PARENT,))])
        (entry, sealed), = store.entries.values()
        stored = msgspec.json.encode(msgspec.structs.asdict(entry) | {"sealed": sealed})
        for idnr in (CHILD, PARENT):
            assert idnr.encode() not in stored
            assert idnr.encode() not in entry.view  # the view carries the masked IdNr
        assert entry.subject_ref == service.pseudonym(CHILD)
        assert entry.named_refs == (service.pseudonym(PARENT),)
        assert entry.names_parents
        assert b"86*******19" in entry.view

    async def test_a_refusal_teaches_no_relation(self, service: CockpitService) -> None:
        await service.ingest([_record(CHILD, 1, proof_type="birth", parents=(PARENT,),
                                      outcome=Outcome.REFUSED),
                              _record(CHILD, 2)])
        seen = {(v.id, v.relation) for v in (await service.transfers_of(PARENT))["items"]}
        assert seen == {(str(uuid.UUID(int=1)), "concerned")}  # named, not a parent


class TestFeed:
    async def test_a_parent_sees_the_birth_and_the_childs_later_transfers_not_earlier_ones(
            self, service: CockpitService) -> None:
        before, birth, after = (_record(CHILD, 1), _record(CHILD, 2, proof_type="birth",
                                                           parents=(PARENT,)),
                                _record(CHILD, 3))
        await service.ingest([before, birth, after, _record(PARENT, 4)])
        page = await service.transfers_of(PARENT)
        assert [(v.id, v.relation) for v in page["items"]] == [
            (str(uuid.UUID(int=4)), "self"), (after.id, "child"), (birth.id, "child")]

    async def test_pages_are_newest_first_and_the_cursor_continues_where_a_page_ended(
            self, service: CockpitService) -> None:
        records = [_record(CHILD, n) for n in range(1, 8)]
        await service.ingest(records)
        seen: list[str] = []
        cursor = None
        while True:
            page = await service.transfers_of(CHILD, limit=3, cursor=cursor)
            seen += [v.id for v in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [r.id for r in reversed(records)]

    async def test_only_the_last_two_years_are_shown(
            self, make_service: Callable[..., CockpitService]) -> None:
        now = [NOW]
        service = make_service(clock=lambda: now[0])
        await service.ingest([_record(CHILD, 1, at=NOW - VISIBLE_FOR + timedelta(seconds=1)),
                              _record(CHILD, 2, at=NOW - timedelta(days=1))])
        assert len((await service.transfers_of(CHILD))["items"]) == 2
        now[0] = NOW + timedelta(seconds=2)
        assert [v.id for v in (await service.transfers_of(CHILD))["items"]] == [
            str(uuid.UUID(int=2))]

    async def test_shredded_or_forgotten_entries_are_left_out(
            self, store: FakeEntryStore, service: CockpitService) -> None:
        await service.ingest([_record(CHILD, 1), _record(CHILD, 2), _record(OTHER, 3)])
        store.shred([str(uuid.UUID(int=1))])
        assert [v.id for v in (await service.transfers_of(CHILD))["items"]] == [
            str(uuid.UUID(int=2))]
        del store.wrapped_keys[service.pseudonym(CHILD)]  # crypto-shredded
        assert (await service.transfers_of(CHILD))["items"] == []
        assert len((await service.transfers_of(OTHER))["items"]) == 1

    async def test_an_entry_shows_its_log_index_once_integrated(
            self, store: FakeEntryStore, service: CockpitService) -> None:
        record = _record(CHILD, 1)
        await service.ingest([record])
        (view,) = (await service.transfers_of(CHILD))["items"]
        assert (view.log_index, view.included) == (None, False)
        store.log_index[record.id] = 0
        (view,) = (await service.transfers_of(CHILD))["items"]
        assert (view.log_index, view.included) == (0, True)
        assert (view.purpose, view.subject_masked, view.outcome) == (
            "kindergeld-antrag", "86*******19", "delivered")
