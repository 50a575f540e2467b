"""``Witness`` and its store: what it cosigns, what it refuses (storing nothing), and that no two
requests checked against the same state can both be cosigned. On SQLite, and on PostgreSQL too
when EINMAL_TEST_DATABASE_URL is set."""

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from einmal.store import StoreError, create_engine
from einmal_client.cosignature import verify_cosignatures, witness_vkey
from einmal_client.tlog import verify_note
from tests.unit.witness.signed_log import SignedLog, add_checkpoint_body
from witness.errors import (
    ForkError,
    InconsistentCheckpointError,
    MalformedRequestError,
    StaleSizeError,
    UnknownLogError,
    UntrustedCheckpointError,
    WitnessError,
)
from witness.protocol import parse_log_keys
from witness.service import Witness
from witness.store import LogState, WitnessStore, async_url, logs_table

_PG = os.environ.get("EINMAL_TEST_DATABASE_URL")
NAME = "witness.example/w1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="engine", params=["sqlite", *(["postgresql"] if _PG else [])])
async def fx_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = async_url(_PG) if request.param == "postgresql" and _PG else (
        f"sqlite+aiosqlite:///{tmp_path / 'witness.db'}")
    engine = create_engine(url)
    yield engine
    await engine.dispose()


@pytest.fixture(name="store")
async def fx_store(engine: AsyncEngine) -> AsyncIterator[WitnessStore]:
    # the PostgreSQL test database is shared: a table of this test's own
    table = logs_table(MetaData(), f"witness_logs_{secrets.token_hex(4)}")
    store = WitnessStore(engine, table)
    await store.create_schema()
    yield store
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.drop_all)


@pytest.fixture(name="log")
def fx_log() -> SignedLog:
    return SignedLog()


@pytest.fixture(name="key")
def fx_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)


@pytest.fixture(name="clock")
def fx_clock() -> Clock:
    return Clock()


@pytest.fixture(name="witness")
def fx_witness(store: WitnessStore, log: SignedLog, key: Ed25519PrivateKey,
               clock: Clock) -> Witness:
    return Witness(name=NAME, private_key=key, logs=parse_log_keys([log.vkey]), store=store,
                   clock=clock)


def _verify(note: str, answer: str, key: Ed25519PrivateKey) -> None:
    assert verify_cosignatures(note + answer, [witness_vkey(NAME, key.public_key())], 1) == [NAME]


class TestRefusals:
    """Every refusal leaves the stored state as it was."""

    async def _refused(self, witness: Witness, store: WitnessStore, origin: str, body: bytes,
                       error: type[WitnessError]) -> WitnessError:
        before = await store.latest(origin)
        with pytest.raises(error) as caught:
            await witness.add_checkpoint(body)
        assert await store.latest(origin) == before
        return caught.value

    async def test_malformed_bodies_store_nothing(self, witness: Witness, store: WitnessStore,
                                                  log: SignedLog) -> None:
        await self._refused(witness, store, log.origin, b"old 0\n" + log.note(1).encode(),
                            MalformedRequestError)
        await self._refused(witness, store, log.origin, b"\x00" * 100, MalformedRequestError)

    async def test_an_unknown_origin_is_404(self, witness: Witness, store: WitnessStore) -> None:
        other = SignedLog(origin="other.example/log")
        error = await self._refused(witness, store, other.origin, other.request(0, 3),
                                    UnknownLogError)
        assert error.status == 404

    async def test_a_checkpoint_not_signed_by_the_log_is_403(self, witness: Witness,
                                                             store: WitnessStore,
                                                             log: SignedLog) -> None:
        forged = add_checkpoint_body(0, [], log.note(3, key=SignedLog(seed=66).key))
        await self._refused(witness, store, log.origin, forged, UntrustedCheckpointError)

    async def test_a_fork_at_the_cosigned_size_gets_no_cosignature(
            self, witness: Witness, store: WitnessStore, log: SignedLog) -> None:
        await witness.add_checkpoint(log.request(0, 5))
        fork = SignedLog(fork="rewritten ")
        await self._refused(witness, store, log.origin, fork.request(5, 5), ForkError)

    async def test_a_larger_fork_gets_no_cosignature(self, witness: Witness,
                                                     store: WitnessStore, log: SignedLog,
                                                     ) -> None:
        await witness.add_checkpoint(log.request(0, 5))
        fork = SignedLog(fork="rewritten ")
        await self._refused(witness, store, log.origin, fork.request(5, 12),
                            InconsistentCheckpointError)
        # ... not even with the honest log's proof for the sizes
        body = add_checkpoint_body(5, log.proof(5, 12), fork.note(12))
        await self._refused(witness, store, log.origin, body, InconsistentCheckpointError)

    async def test_a_rollback_is_refused(self, witness: Witness, store: WitnessStore,
                                         log: SignedLog) -> None:
        await witness.add_checkpoint(log.request(0, 9))
        error = await self._refused(witness, store, log.origin, log.request(0, 4),
                                    StaleSizeError)
        assert isinstance(error, StaleSizeError)
        assert error.latest == 9
        await self._refused(witness, store, log.origin, add_checkpoint_body(
            9, [], log.note(4)), MalformedRequestError)

    async def test_a_store_that_fails_is_a_store_error(self, tmp_path: Path, log: SignedLog,
                                                       key: Ed25519PrivateKey) -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-table.db'}")
        witness = Witness(name=NAME, private_key=key, logs=parse_log_keys([log.vkey]),
                          store=WitnessStore(engine))
        with pytest.raises(StoreError):
            await witness.add_checkpoint(log.request(0, 1))
        await engine.dispose()


class TestCosigning:
    async def test_a_growing_log_is_cosigned_at_every_step(self, witness: Witness,
                                                           store: WitnessStore, log: SignedLog,
                                                           key: Ed25519PrivateKey,
                                                           clock: Clock) -> None:
        old = 0
        for size in (0, 1, 2, 7, 8, 100, 100, 257):
            clock.now += 1
            answer = await witness.add_checkpoint(log.request(old, size))
            _verify(log.note(size), answer, key)
            state = await store.latest(log.origin)
            assert state is not None
            assert (state.size, state.root, state.cosigned_at) == (size, log.root(size),
                                                                   int(clock.now))
            old = size

    async def test_the_stored_checkpoint_carries_the_logs_and_the_witness_signatures(
            self, witness: Witness, store: WitnessStore, log: SignedLog,
            key: Ed25519PrivateKey) -> None:
        stranger = SignedLog(seed=31).note(3).rsplit("\n\n", 1)[1]  # dropped: unknown key
        answer = await witness.add_checkpoint(
            add_checkpoint_body(0, [], log.note(3) + stranger))
        state = await store.latest(log.origin)
        assert state is not None
        assert state.checkpoint == log.note(3) + answer
        verify_note(state.checkpoint, log.origin, log.key.public_key())
        _verify(state.checkpoint, "", key)

    async def test_the_same_checkpoint_again_is_cosigned_again_with_a_later_time(
            self, witness: Witness, log: SignedLog, clock: Clock) -> None:
        first = await witness.add_checkpoint(log.request(0, 4))
        clock.now += 30
        again = await witness.add_checkpoint(log.request(4, 4))
        assert first != again

    async def test_cosignature_time_never_goes_back(self, witness: Witness, store: WitnessStore,
                                                    log: SignedLog, clock: Clock) -> None:
        await witness.add_checkpoint(log.request(0, 4))
        clock.now -= 3600  # the system clock was set back
        await witness.add_checkpoint(log.request(4, 6))
        state = await store.latest(log.origin)
        assert state is not None
        assert state.cosigned_at == 1_800_000_000


class _StallingStore(WitnessStore):
    """Lets both requests read the state before either writes (the race of tlog-witness)."""

    def __init__(self, inner: WitnessStore, readers: int) -> None:
        self._inner = inner
        self._barrier = asyncio.Barrier(readers)
        self._stalled = 0

    async def latest(self, origin: str) -> LogState | None:
        state = await self._inner.latest(origin)
        if self._stalled < self._barrier.parties:  # the first reads only, not the 409's
            self._stalled += 1
            await self._barrier.wait()
        return state

    async def compare_and_swap(self, expected: LogState | None, new: LogState) -> bool:
        return await self._inner.compare_and_swap(expected, new)


class TestRace:
    async def test_two_requests_from_the_same_state_cannot_both_win(
            self, store: WitnessStore, log: SignedLog, key: Ed25519PrivateKey) -> None:
        witness = Witness(name=NAME, private_key=key, logs=parse_log_keys([log.vkey]),
                          store=store)
        await witness.add_checkpoint(log.request(0, 10))
        racing = Witness(name=NAME, private_key=key, logs=parse_log_keys([log.vkey]),
                         store=_StallingStore(store, readers=2))
        results = await asyncio.gather(racing.add_checkpoint(log.request(10, 20)),
                                       racing.add_checkpoint(log.request(10, 15)),
                                       return_exceptions=True)
        won = [r for r in results if isinstance(r, str)]
        lost = [r for r in results if isinstance(r, StaleSizeError)]
        assert len(won) == 1 and len(lost) == 1
        state = await store.latest(log.origin)
        assert state is not None
        assert lost[0].latest == state.size
        assert state.size in (15, 20)

    async def test_compare_and_swap_on_a_new_log_lets_one_insert_win(
            self, store: WitnessStore) -> None:
        a = LogState(origin="o", size=1, root=bytes(32), cosigned_at=1, checkpoint="a")
        b = LogState(origin="o", size=2, root=bytes(32), cosigned_at=1, checkpoint="b")
        assert await store.compare_and_swap(None, a)
        assert not await store.compare_and_swap(None, b)
        assert await store.latest("o") == a

    async def test_compare_and_swap_needs_the_exact_state(self, store: WitnessStore) -> None:
        a = LogState(origin="o", size=1, root=bytes(32), cosigned_at=1, checkpoint="a")
        await store.compare_and_swap(None, a)
        b = LogState(origin="o", size=2, root=b"\x01" * 32, cosigned_at=2, checkpoint="b")
        for stale in (LogState("o", 1, b"\x02" * 32, 1, "a"), LogState("o", 1, bytes(32), 0, "a"),
                      LogState("o", 0, bytes(32), 1, "a")):
            assert not await store.compare_and_swap(stale, b)
        assert await store.compare_and_swap(a, b)
        assert await store.latest("o") == b

    async def test_two_engines_racing_on_one_database(self, engine: AsyncEngine,
                                                      store: WitnessStore) -> None:
        """Two engines stand for two witness processes sharing one database."""
        second = create_engine(engine.url.render_as_string(hide_password=False))
        other = WitnessStore(second, store.table)
        base = LogState(origin="o", size=1, root=bytes(32), cosigned_at=1, checkpoint="a")
        await store.compare_and_swap(None, base)
        results = await asyncio.gather(*(
            s.compare_and_swap(base, LogState("o", 2 + i, bytes(32), 2, str(i)))
            for i, s in enumerate([store, other] * 3)))
        assert results.count(True) == 1
        await second.dispose()
