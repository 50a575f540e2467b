"""Broker migrations: 0002 (previews) upgrades a 0001 store with data, the head schema is the
models' schema (no autogenerate drift), and it downgrades cleanly. Runs on SQLite, and on
PostgreSQL when EINMAL_TEST_DATABASE_URL is set."""

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel

import broker.tables  # noqa: F401 - registers the tables
from einmal.migrate import _config
from einmal.store import create_engine
from tests.conftest import TEST_DATABASE_URL, reset_database


def _url(tmp_path: Path) -> str:
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)
        return TEST_DATABASE_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}"


def _run(url: str, fn: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _to(revision: str, *, down: bool = False) -> Any:
    def go(connection: Connection) -> None:
        config = _config("broker", connection)
        (command.downgrade if down else command.upgrade)(config, revision)
    return go


def _drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={
        "include_object": lambda obj, name, type_, *_: (
            (name if type_ == "table" else getattr(getattr(obj, "table", None), "name", ""))
            or "").startswith("broker_") and name != "broker_alembic_version",
        "compare_type": True})
    return compare_metadata(context, SQLModel.metadata)


def test_0002_keeps_consents_and_matches_the_models(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _run(url, _to("0001"))
    _run(url, lambda c: c.execute(text(
        "INSERT INTO broker_consent (id, citizen_ref, subject_ref, subject_masked, service_id, "
        "proof_types, purpose, granted_at, valid_until, uses) VALUES ('c1', 'a', 'b', "
        "'12*******34', 'familienkasse', 'birth', 'kindergeld-antrag', "
        "'2026-01-01 00:00:00+00:00', '2027-01-01 00:00:00+00:00', 0)")))
    _run(url, _to("head"))
    preview = _run(url, lambda c: c.execute(text(
        "SELECT preview FROM broker_consent WHERE id = 'c1'")).scalar_one())
    assert preview in (False, 0)
    assert "broker_preview" in _run(url, lambda c: inspect(c).get_table_names())
    assert _run(url, _drift) == []
    _run(url, _to("0001", down=True))
    assert "broker_preview" not in _run(url, lambda c: inspect(c).get_table_names())
    columns = _run(url, lambda c: [col["name"] for col in inspect(c).get_columns("broker_consent")])
    assert "preview" not in columns
