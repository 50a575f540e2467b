"""The PostgreSQL engine's pool (einmal/store.py: create_engine): it keeps its connections, it
pings only a connection that sat idle, and it survives a database restart without a failed
request, after a quiet spell and under load; only a statement on a connection ended under it
fails, as with ``pool_pre_ping``.

A restart is played by terminating exactly this engine's backends (``pg_terminate_backend``),
which is what a restart does to a client. Needs EINMAL_TEST_DATABASE_URL."""

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import NullPool, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from einmal.settings import _async_driver
from einmal.store import PING_IDLE_S, POOL_SIZE, create_engine

PG = os.environ.get("EINMAL_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not PG, reason="needs PostgreSQL (EINMAL_TEST_DATABASE_URL)")


@pytest.fixture(name="engine")
async def fx_engine() -> AsyncIterator[AsyncEngine]:
    assert PG
    engine = create_engine(_async_driver(PG))
    yield engine
    await engine.dispose()


async def _backends(engine: AsyncEngine, n: int) -> set[int]:
    """Run ``n`` statements at once; the backend pids that served them."""
    async def one() -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(text(
                "SELECT pg_backend_pid() FROM pg_sleep(0.05)"))).scalar_one())

    return set(await asyncio.gather(*(one() for _ in range(n))))


async def _restart(pids: set[int]) -> None:
    """What a database restart does to these connections: their backends end."""
    assert PG
    other = create_async_engine(_async_driver(PG), poolclass=NullPool)
    async with other.connect() as conn:
        ended = (await conn.execute(text(
            "SELECT count(*) FROM unnest(CAST(:pids AS int[])) AS pid "
            "WHERE pg_terminate_backend(pid)"), {"pids": sorted(pids)})).scalar_one()
    await other.dispose()
    assert ended == len(pids)


async def _select(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def test_a_restart_under_load_fails_no_later_request(engine: AsyncEngine) -> None:
    """Connections used moments ago are not pinged, but the client has read the server's
    goodbye: the pool replaces them at checkout, without a round trip."""
    pids = await _backends(engine, 16)
    await _restart(pids)
    await asyncio.sleep(0.1)  # the client has read the closes (under load: on the next loop pass)
    outcomes = await asyncio.gather(*(_select(engine) for _ in range(48)),
                                    return_exceptions=True)
    assert [o for o in outcomes if o is not None] == []
    assert not pids & await _backends(engine, 16)


async def test_a_connection_ended_while_in_use_fails_its_statement_and_the_pool_recovers(
        engine: AsyncEngine) -> None:
    pids = await _backends(engine, 16)
    async with engine.connect() as conn:
        pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        await _restart(pids)
        await asyncio.sleep(0.1)
        with pytest.raises(DBAPIError) as failed:  # a store turns it into StoreError: 503
            await conn.execute(text("SELECT 1"))
    assert failed.value.connection_invalidated
    assert pid in pids
    for _ in range(40):
        await _select(engine)
    assert not pids & await _backends(engine, 16)


async def test_a_restart_during_a_quiet_spell_fails_no_request(engine: AsyncEngine) -> None:
    pids = await _backends(engine, 16)
    await _restart(pids)
    await asyncio.sleep(PING_IDLE_S + 0.2)
    outcomes = await asyncio.gather(*(_select(engine) for _ in range(48)),
                                    return_exceptions=True)
    assert [o for o in outcomes if o is not None] == []
    assert not pids & await _backends(engine, 16)


async def test_only_a_connection_idle_for_a_while_is_pinged(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[Any] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    for _ in range(20):  # fresh, then back moments ago: no round trip before the statement
        await _select(engine)
    assert pings == []
    await asyncio.sleep(PING_IDLE_S + 0.1)
    await _select(engine)
    await _select(engine)
    assert len(pings) == 1


async def test_the_pool_keeps_its_connections_and_opens_no_more_than_its_size(
        engine: AsyncEngine) -> None:
    connects: list[Any] = []
    event.listen(engine.sync_engine.pool, "connect", lambda *_: connects.append(1))
    first = await _backends(engine, POOL_SIZE)
    assert len(first) == POOL_SIZE
    again = await _backends(engine, POOL_SIZE + 10)  # the extra ten wait for a connection
    assert again == first  # none was closed on return and reopened
    assert len(connects) == POOL_SIZE
