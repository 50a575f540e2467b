"""The cockpit store's conformance suite: every backend (cockpit/store/base.py) leaves the same
rows, the same roots, the same signed checkpoints, gives the same feed and fails with the same
errors. ``sqlite`` (the writer's fast path) and ``sqlalchemy`` run on a SQLite file each; the
SQLAlchemy store also runs on PostgreSQL when EINMAL_TEST_DATABASE_URL is set.
"""

import asyncio
import base64
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit.errors import TreeIntegrityError
from cockpit.log import TransferLog
from cockpit.log.checkpoints import CheckpointSigner
from cockpit.service import CockpitService
from cockpit.store import CockpitStore, NewEntry
from cockpit.tables import (
    CHECKPOINT,
    CITIZEN_ENTRY,
    CITIZEN_KEY,
    COCKPIT_TABLES,
    COSIGNED,
    ENTRY,
    LOG_STATE,
    RELATION,
    TREE_NODE,
    as_utc,
)
from cockpit.vault import CitizenVault, VaultError
from einmal.domain.transfer import Concerned, Outcome, RegisterRef, ServiceRef, TransferRecord
from einmal.keys import SigningKey
from einmal.store import StoreError, create_engine, dispose, sqlite_time
from einmal_client import tlog
from tests.integration.cockpit_stores import BACKENDS, open_backend

CHILD, PARENT, OTHER = "86095742719", "81709656328", "60478593182"
T0 = datetime(2026, 11, 29, 7, 0, 0, 120, tzinfo=UTC)
#: a fixed log key: Ed25519 signatures are deterministic, so checkpoints compare byte for byte
LOG_KEY = SigningKey(kid="log-test", private_key=Ed25519PrivateKey.from_private_bytes(
    bytes(range(32))))
ORIGIN = "test.example/log"


def _id(n: int) -> str:
    return str(uuid.UUID(int=n))


def _record(subject: str, n: int, *, proof_type: str = "birth", service: str = "s",
            parents: tuple[str, ...] = ()) -> TransferRecord:
    return TransferRecord(
        id=_id(n), occurred_at=T0 + timedelta(seconds=n), outcome=Outcome.DELIVERED,
        proof_type=proof_type, purpose="p", subject=subject,
        service=ServiceRef(id=service, name="S", authority="A", land="HB"),
        register=RegisterRef(id="r", name="R"), retention_until=T0 + timedelta(days=30),
        concerned=(Concerned(idnr=subject, relation="self"),
                   *(Concerned(idnr=p, relation="concerned") for p in parents)))


def _batch() -> list[TransferRecord]:
    records = [_record(CHILD, 1), _record(CHILD, 2, parents=(PARENT,)),
               _record(OTHER, 3, proof_type="income"), _record(CHILD, 4)]
    return [*records, records[1]]  # a duplicate in the batch


@dataclass
class Cockpit:
    store: CockpitStore
    engine: AsyncEngine
    vault: CitizenVault
    service: CockpitService
    log: TransferLog


def _cockpit(store: CockpitStore, engine: AsyncEngine, *, master: bytes = b"m" * 32) -> Cockpit:
    vault = CitizenVault(master)
    return Cockpit(store=store, engine=engine, vault=vault,
                   service=CockpitService(store=store, pseudonym_key=b"k" * 32, vault=vault,
                                          clock=lambda: T0),
                   log=TransferLog(store=store, key=LOG_KEY, origin=ORIGIN, batch_size=4,
                                   clock=lambda: T0))


@pytest.fixture(name="cockpit", params=BACKENDS)
async def fx_cockpit(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cockpit]:
    async with open_backend(request.param, tmp_path) as (store, engine):
        cockpit = _cockpit(store, engine)
        await cockpit.log.initialise()
        yield cockpit


async def _count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _integrate_all(log: TransferLog) -> int:
    total = 0
    while count := await log.integrate():
        total += count
    return total


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value)
    return value


async def _dump(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every cockpit table as plain values, in key order; sealed views and wrapped keys (random
    by design) as whether they are there."""
    queries = {
        "entries": select(ENTRY.c.seq, ENTRY.c.id, ENTRY.c.occurred_at, ENTRY.c.received_at,
                          ENTRY.c.subject_ref, ENTRY.c.body.is_not(None), ENTRY.c.leaf,
                          ENTRY.c.leaf_hash, ENTRY.c.log_index, ENTRY.c.service_id,
                          ENTRY.c.register_id).order_by(ENTRY.c.seq),
        "index": select(CITIZEN_ENTRY).order_by(CITIZEN_ENTRY.c.citizen_ref,
                                                CITIZEN_ENTRY.c.transfer_id),
        "relations": select(RELATION).order_by(RELATION.c.parent_ref, RELATION.c.child_ref),
        "keys": select(CITIZEN_KEY.c.citizen_ref, CITIZEN_KEY.c.created_at)
        .order_by(CITIZEN_KEY.c.citizen_ref),
        "nodes": select(TREE_NODE).order_by(TREE_NODE.c.level, TREE_NODE.c.idx),
        "checkpoints": select(CHECKPOINT).order_by(CHECKPOINT.c.tree_size),
        "state": select(LOG_STATE),
    }
    async with engine.connect() as conn:
        return {name: [tuple(_plain(v) for v in row) for row in await conn.execute(query)]
                for name, query in queries.items()}


async def _scenario(cockpit: Cockpit) -> dict[str, Any]:
    """Ingest, integrate, ingest, integrate, read: what every backend must answer alike."""
    answers: dict[str, Any] = {}
    answers["first"] = await cockpit.service.ingest(_batch())
    answers["again"] = await cockpit.service.ingest([_record(CHILD, 1), _record(PARENT, 5)])
    answers["integrated"] = await _integrate_all(cockpit.log)
    answers["more"] = await cockpit.service.ingest([_record(OTHER, 6)])
    answers["integrated"] += await _integrate_all(cockpit.log)
    answers["checkpoint"] = await cockpit.log.checkpoint()
    answers["feeds"] = {idnr: await cockpit.service.transfers_of(idnr, limit=2)
                        for idnr in (CHILD, PARENT, OTHER)}
    answers["status"] = await cockpit.log.status()
    answers["entry"] = await cockpit.log.entry_of(_id(2))
    answers["inclusion"] = await cockpit.log.inclusion(1, 6)
    answers["consistency"] = await cockpit.log.consistency(2, 6)
    answers["export"] = [line async for line in cockpit.log.export(tree_size=6)]
    answers["filtered"] = [line async for line in cockpit.log.export(
        tree_size=6, since=T0 + timedelta(seconds=3))]
    answers["rows"] = await _dump(cockpit.engine)
    return answers


class TestFailures:
    async def test_every_operation_of_a_broken_store_raises_store_error(
            self, cockpit: Cockpit) -> None:
        store = cockpit.store
        async with cockpit.engine.begin() as conn:
            for table in COCKPIT_TABLES:
                await conn.execute(text(f"DROP TABLE {table.name}"))
        entry = NewEntry(id=_id(1), occurred_at=T0, subject_ref="ref", view=b"{}", leaf=b"{}",
                         leaf_hash=tlog.leaf_hash(b"{}"), service_id="s", register_id=None)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "ingest": lambda: store.ingest([entry], received_at=T0, keys=cockpit.vault),
            "feed": lambda: store.feed("ref", since=T0, limit=1),
            "forget_citizen": lambda: store.forget_citizen("ref", keys=cockpit.vault),
            "initialise_log": lambda: store.initialise_log(empty_note="n", now=T0),
            "integrate": lambda: store.integrate(batch=1, sign=lambda size, root: "n", now=T0),
            "log_status": store.log_status,
            "latest_checkpoint": store.latest_checkpoint,
            "position": lambda: store.position(_id(1)),
            "leaf_hash_at": lambda: store.leaf_hash_at(0),
            "nodes": lambda: store.nodes({(0, 0)}),
            "tree_nodes": lambda: store.tree_nodes(0, 0, 1),
            "shredded_groups": lambda: store.shredded_groups(tree_size=1, group=1),
            "log_lines": lambda: store.log_lines(after=-1, tree_size=1, limit=1),
            "shred": lambda: store.shred(T0),
            "publish_checkpoint": lambda: store.publish_checkpoint(
                tree_size=0, note="n", cosignatures=0, now=T0),
            "published_checkpoint": store.published_checkpoint,
            "readable_entry": lambda: store.readable_entry("ref", _id(1), since=T0),
        }
        assert set(calls) == {name for name in dir(CockpitStore) if not name.startswith("_")
                              } - {"create_schema"}  # every operation of the interface
        for name, call in calls.items():
            with pytest.raises(StoreError):
                await call()
                pytest.fail(f"{name} did not fail")

    async def test_a_missing_frontier_node_stops_integration_and_changes_nothing(
            self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, n) for n in (1, 2, 3)])
        assert await _integrate_all(cockpit.log) == 3
        async with cockpit.engine.begin() as conn:
            await conn.execute(delete(TREE_NODE).where(TREE_NODE.c.level == 0,
                                                       TREE_NODE.c.idx == 2))
        await cockpit.service.ingest([_record(CHILD, 4)])
        with pytest.raises(TreeIntegrityError):
            await cockpit.log.integrate()
        assert await cockpit.log.status() == (3, 1)
        assert (await cockpit.log.checkpoint())[0] == 3
        with pytest.raises(TreeIntegrityError):
            await cockpit.store.nodes({(0, 2)})

    async def test_a_citizen_key_that_does_not_unwrap_fails_the_ingest_and_writes_nothing(
            self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, 1)])
        stranger = _cockpit(cockpit.store, cockpit.engine, master=b"x" * 32)
        with pytest.raises(VaultError):
            await stranger.service.ingest([_record(OTHER, 2), _record(CHILD, 3)])
        assert await _count(cockpit.engine, ENTRY) == 1
        assert await _count(cockpit.engine, CITIZEN_KEY) == 1  # OTHER's new key rolled back
        assert stranger.vault.cached([cockpit.service.pseudonym(OTHER)]) == {}

    async def test_proofs_of_what_is_not_there_are_refused_alike(self, cockpit: Cockpit) -> None:
        assert await cockpit.store.position(_id(1)) is None
        assert await cockpit.store.leaf_hash_at(0) is None
        assert await cockpit.store.log_lines(after=-1, tree_size=10, limit=10) == []
        assert await cockpit.store.feed("nobody", since=T0, limit=10) == []


#: every table of a SQLite file as stored (sealed views and wrapped keys are random: left out)
_RAW = [
    "SELECT seq, id, occurred_at, received_at, subject_ref, body IS NOT NULL, leaf, leaf_hash, "
    "log_index, service_id, register_id FROM cockpit_entry ORDER BY seq",
    "SELECT * FROM cockpit_citizen_entry ORDER BY citizen_ref, transfer_id",
    "SELECT * FROM cockpit_relation ORDER BY parent_ref, child_ref",
    "SELECT citizen_ref, created_at FROM cockpit_citizen_key ORDER BY citizen_ref",
    "SELECT * FROM cockpit_tree_node ORDER BY level, idx",
    "SELECT * FROM cockpit_checkpoint ORDER BY tree_size",
    "SELECT * FROM cockpit_log_state",
]


class TestEveryBackendAlike:
    async def test_same_rows_roots_signed_checkpoints_and_answers(self, tmp_path: Path) -> None:
        answers = {}
        for backend in BACKENDS:
            async with open_backend(backend, tmp_path) as (store, engine):
                cockpit = _cockpit(store, engine)
                await cockpit.log.initialise()
                answers[backend] = await _scenario(cockpit)
        first, *others = BACKENDS
        for backend in others:
            for part in answers[first]:
                assert answers[backend][part] == answers[first][part], (backend, part)
        expected = answers[first]
        assert (expected["first"], expected["again"], expected["more"]) == (
            {"accepted": 4, "duplicates": 1}, {"accepted": 1, "duplicates": 1},
            {"accepted": 1, "duplicates": 0})
        assert expected["integrated"] == 6
        # the signed checkpoint: the RFC 9162 root of the leaves in log order, signed by the log
        size, note = expected["checkpoint"]
        hashes = [row[7] for row in sorted(expected["rows"]["entries"], key=lambda r: r[8])]
        root = tlog.mth(hashes)
        assert size == 6
        assert note == CheckpointSigner(key=LOG_KEY, origin=ORIGIN).sign(6, root)
        # the parent sees their own record, and the birth and the child's later record as the
        # child's - not the child's record from before the birth named them
        feed = expected["feeds"][PARENT]
        assert [(v.id, v.relation) for v in feed["items"]] == [(_id(5), "self"),
                                                               (_id(4), "child")]
        assert feed["next_cursor"] is not None

    async def test_both_sqlite_backends_store_the_same_bytes(self, tmp_path: Path) -> None:
        dumps = {}
        for backend in ("sqlite", "sqlalchemy"):
            async with open_backend(backend, tmp_path) as (store, engine):
                cockpit = _cockpit(store, engine)
                await cockpit.log.initialise()
                await _scenario(cockpit)
            with sqlite3.connect(tmp_path / f"cockpit-{backend}.db") as conn:
                dumps[backend] = {query: conn.execute(query).fetchall() for query in _RAW}
        assert dumps["sqlite"] == dumps["sqlalchemy"]
        # times in SQLAlchemy's SQLite format, so either backend reads the other's rows
        assert dumps["sqlite"][_RAW[0]][0][2] == sqlite_time(T0 + timedelta(seconds=1))


class TestEntries:
    async def test_a_repeated_id_changes_nothing(self, cockpit: Cockpit) -> None:
        assert await cockpit.service.ingest(_batch()) == {"accepted": 4, "duplicates": 1}
        rows = await _dump(cockpit.engine)
        assert await cockpit.service.ingest(_batch()) == {"accepted": 0, "duplicates": 5}
        assert await _dump(cockpit.engine) == rows
        assert await cockpit.store.ingest([], received_at=T0, keys=cockpit.vault) == 0

    async def test_one_key_per_citizen_stored_wrapped_and_cached_once_committed(
            self, cockpit: Cockpit) -> None:
        child = cockpit.service.pseudonym(CHILD)
        assert cockpit.vault.cached([child]) == {}
        await cockpit.service.ingest([_record(CHILD, 1), _record(CHILD, 2)])
        key = cockpit.vault.cached([child])[child]
        async with cockpit.engine.connect() as conn:
            (wrapped,) = (await conn.execute(select(CITIZEN_KEY.c.wrapped_key))).scalars()
        assert key not in bytes(wrapped)
        assert CitizenVault(b"m" * 32).unwrap(bytes(wrapped)) == key
        # a fresh vault (another process) finds the stored key instead of making a new one
        again = _cockpit(cockpit.store, cockpit.engine)
        await again.service.ingest([_record(CHILD, 3)])
        assert again.vault.cached([child]) == {child: key}
        assert await _count(cockpit.engine, CITIZEN_KEY) == 1

    async def test_the_feed_is_newest_first_pages_by_cursor_and_starts_at_since(
            self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, n) for n in range(1, 6)])
        child = cockpit.service.pseudonym(CHILD)
        rows = await cockpit.store.feed(child, since=T0, limit=3)
        assert [r.transfer_id for r in rows] == [_id(5), _id(4), _id(3)]
        assert all(r.occurred_at.tzinfo is UTC and r.relation == "self" for r in rows)
        last = rows[-1]
        rest = await cockpit.store.feed(child, since=T0, limit=3,
                                        after=(last.occurred_at, last.transfer_id))
        assert [r.transfer_id for r in rest] == [_id(2), _id(1)]
        later = await cockpit.store.feed(child, since=T0 + timedelta(seconds=4), limit=10)
        assert [r.transfer_id for r in later] == [_id(5), _id(4)]

    async def test_a_forgotten_citizen_s_views_lose_their_key(self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, 1), _record(OTHER, 2)])
        child = cockpit.service.pseudonym(CHILD)
        await cockpit.store.forget_citizen(child, keys=cockpit.vault)
        assert cockpit.vault.cached([child]) == {}
        (row,) = await cockpit.store.feed(child, since=T0, limit=10)
        assert row.wrapped_key is None
        assert (await cockpit.service.transfers_of(CHILD))["items"] == []
        assert len((await cockpit.service.transfers_of(OTHER))["items"]) == 1


class TestLog:
    async def test_the_log_is_initialised_once_with_a_signed_empty_checkpoint(
            self, cockpit: Cockpit) -> None:
        await cockpit.log.initialise()
        assert await _count(cockpit.engine, CHECKPOINT) == 1
        assert await cockpit.log.checkpoint() == (
            0, CheckpointSigner(key=LOG_KEY, origin=ORIGIN).sign(0, tlog.EMPTY_ROOT))
        assert await cockpit.log.status() == (0, 0)

    @pytest.mark.parametrize("backend", BACKENDS)
    async def test_processes_starting_together_on_a_fresh_store_initialise_it_once(
            self, backend: str, tmp_path: Path) -> None:
        """Several processes (workers, `einmal` commands) start on one fresh database at once:
        each sees no log state; all must start, and one empty checkpoint stands."""
        async with open_backend(backend, tmp_path) as (store, engine):
            url = engine.url.render_as_string(hide_password=False)
            others = [create_engine(url) for _ in range(3)]
            try:
                stores = [store, *(type(store)(other) for other in others)]
                for each in [engine, *others]:  # connected before the race, not during it
                    async with each.connect() as conn:
                        await conn.execute(select(1))
                for _ in range(5):
                    async with engine.begin() as conn:
                        await conn.execute(delete(CHECKPOINT))
                        await conn.execute(delete(LOG_STATE))
                    await asyncio.gather(*(s.initialise_log(empty_note=f"note {i}", now=T0)
                                           for i, s in enumerate(stores)))
                await store.initialise_log(empty_note="later", now=T0)
            finally:
                for other in others:
                    await dispose(other)
            assert await _count(engine, LOG_STATE) == 1
            async with engine.connect() as conn:
                notes = (await conn.execute(select(CHECKPOINT.c.note))).scalars().all()
            assert len(notes) == 1 and notes[0].startswith("note ")

    async def test_integration_numbers_entries_in_seq_order_across_a_gap(
            self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, 1), _record(CHILD, 2)])
        async with cockpit.engine.begin() as conn:  # a row far ahead: the seqs have a gap
            await conn.execute(insert(ENTRY).values(
                seq=100, id="gap", occurred_at=T0, received_at=T0, subject_ref="x",
                leaf_hash=b"\x01" * 32, service_id="s"))
        await cockpit.service.ingest([_record(OTHER, 3)])
        assert await _integrate_all(cockpit.log) == 4
        await cockpit.service.ingest([_record(OTHER, 4), _record(OTHER, 5)])  # no gap
        assert await _integrate_all(cockpit.log) == 2
        async with cockpit.engine.connect() as conn:
            rows = (await conn.execute(select(ENTRY.c.id, ENTRY.c.log_index, ENTRY.c.leaf_hash)
                                       .order_by(ENTRY.c.seq))).all()
        # each batch in the order received (seq), the log without a hole
        first = {_id(1), _id(2), "gap", _id(3)}
        assert [r.log_index for r in rows if r.id in first] == [0, 1, 2, 3]
        assert [r.log_index for r in rows if r.id not in first] == [4, 5]
        size, note = await cockpit.log.checkpoint()
        assert size == 6
        hashes = [r.leaf_hash for r in sorted(rows, key=lambda r: r.log_index)]
        assert note.split("\n")[2] == base64.b64encode(tlog.mth(hashes)).decode()

    async def test_every_checkpoint_is_the_signed_root_of_a_prefix(
            self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, n) for n in range(1, 11)])
        assert await _integrate_all(cockpit.log) == 10  # batches of 4: sizes 4, 8, 10
        async with cockpit.engine.connect() as conn:
            hashes = list((await conn.execute(select(ENTRY.c.leaf_hash)
                                              .order_by(ENTRY.c.log_index))).scalars())
            checkpoints = (await conn.execute(select(CHECKPOINT.c.tree_size, CHECKPOINT.c.root,
                                                     CHECKPOINT.c.note)
                                              .order_by(CHECKPOINT.c.tree_size))).all()
        signer = CheckpointSigner(key=LOG_KEY, origin=ORIGIN)
        assert [c.tree_size for c in checkpoints] == [0, 4, 8, 10]
        for size, root, note in checkpoints:
            assert bytes(root) == tlog.mth(hashes[:size])
            assert note == signer.sign(size, bytes(root))
        proof = await cockpit.log.inclusion(7, 10)
        tlog.verify_inclusion(7, 10, hashes[7], [base64.b64decode(h) for h in proof.hashes],
                              tlog.mth(hashes))

    async def test_positions_before_and_after_integration(self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, 1)])
        index, leaf_hash = await cockpit.store.position(_id(1)) or (0, b"")
        assert index is None
        assert await cockpit.log.status() == (0, 1)
        await _integrate_all(cockpit.log)
        assert await cockpit.store.position(_id(1)) == (0, leaf_hash)
        assert await cockpit.store.leaf_hash_at(0) == leaf_hash
        assert await cockpit.log.status() == (1, 0)

    async def test_log_lines_filter_and_page(self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, n, service="a" if n % 2 else "b")
                                      for n in range(1, 8)])
        await _integrate_all(cockpit.log)

        async def indexes(**filters: Any) -> list[int]:
            lines = await cockpit.store.log_lines(**{"after": -1, "tree_size": 7,
                                                     "limit": 100, **filters})
            assert all(leaf is not None and tlog.leaf_hash(leaf) == h for _, leaf, h in lines)
            return [index for index, _, _ in lines]

        assert await indexes() == list(range(7))
        assert await indexes(after=2, tree_size=6, limit=2) == [3, 4]
        assert await indexes(service="b") == [1, 3, 5]
        assert await indexes(register="r", since=T0 + timedelta(seconds=3),
                             until=T0 + timedelta(seconds=5)) == [2, 3]
        assert await indexes(register="none") == []

    async def test_shredding_keeps_the_hashes_and_only_touches_integrated_old_entries(
            self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, n) for n in range(1, 5)])
        await _integrate_all(cockpit.log)
        await cockpit.service.ingest([_record(CHILD, 5)])  # not integrated: kept
        before = T0 + timedelta(seconds=3)
        assert await cockpit.log.shred(before) == 2
        assert await cockpit.log.shred(before) == 0
        lines = await cockpit.store.log_lines(after=-1, tree_size=4, limit=10)
        assert [(index, leaf is None) for index, leaf, _ in lines] == [
            (0, True), (1, True), (2, False), (3, False)]
        feed = await cockpit.store.feed(cockpit.service.pseudonym(CHILD), since=T0, limit=10)
        assert [r.transfer_id for r in feed] == [_id(5), _id(4), _id(3)]
        assert await cockpit.log.shred(T0 + timedelta(days=1)) == 2  # never the pending one
        root = tlog.mth([h for _, _, h in lines])
        assert (await cockpit.log.checkpoint())[1].split("\n")[2] == (
            base64.b64encode(root).decode())


class TestPublication:
    """The published (cosigned) checkpoints and the citizen's view of one entry (receipts)."""

    async def test_the_first_checkpoint_published_for_a_size_stays_and_the_largest_is_read(
            self, cockpit: Cockpit) -> None:
        assert await cockpit.store.published_checkpoint() is None
        assert await cockpit.store.publish_checkpoint(tree_size=4, note="four\n",
                                                      cosignatures=1, now=T0)
        assert not await cockpit.store.publish_checkpoint(tree_size=4, note="other\n",
                                                          cosignatures=2, now=T0)
        assert await cockpit.store.publish_checkpoint(tree_size=2, note="two\n",
                                                      cosignatures=1, now=T0)
        assert await cockpit.store.published_checkpoint() == (4, "four\n")
        assert await _count(cockpit.engine, COSIGNED) == 2

    async def test_a_citizen_reads_only_entries_of_their_feed_since_the_time_given(
            self, cockpit: Cockpit) -> None:
        await cockpit.service.ingest([_record(CHILD, 1), _record(CHILD, 2, parents=(PARENT,)),
                                      _record(OTHER, 3)])
        child, parent = cockpit.service.pseudonym(CHILD), cockpit.service.pseudonym(PARENT)
        other = cockpit.service.pseudonym(OTHER)
        # the parent was named by the second record: not a reader of the first
        assert await cockpit.store.readable_entry(parent, _id(1), since=T0) is None
        assert await cockpit.store.readable_entry(other, _id(2), since=T0) is None
        assert await cockpit.store.readable_entry(child, _id(9), since=T0) is None
        pending = await cockpit.store.readable_entry(parent, _id(2), since=T0)
        assert pending is not None
        assert pending[0] is None  # not integrated yet
        await _integrate_all(cockpit.log)
        index, leaf = await cockpit.store.readable_entry(parent, _id(2), since=T0) or (0, b"")
        assert index == 1
        assert leaf is not None
        assert await cockpit.store.leaf_hash_at(1) == tlog.leaf_hash(leaf)
        late = T0 + timedelta(seconds=3)
        assert await cockpit.store.readable_entry(child, _id(2), since=late) is None
        assert await cockpit.store.readable_entry(other, _id(3), since=late) is not None
        await cockpit.log.shred(T0 + timedelta(seconds=5))
        assert await cockpit.store.readable_entry(other, _id(3), since=T0) is None

