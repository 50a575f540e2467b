"""Schema migrations with Alembic, one migration history per component (decision 0012).

Each component keeps its own script folder (``broker/migrations``, ``cockpit/migrations``) and
its own version table (``broker_alembic_version``, ``cockpit_alembic_version``), so the two can
share one PostgreSQL database or live in separate SQLite files.
"""

import importlib.resources
from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["SchemaError", "current_and_head", "ensure_schema", "head", "upgrade"]


class SchemaError(Exception):
    """The database schema is not the one this version of Einmal expects."""


def _config(component: str, connection: Connection | None = None) -> Config:
    package = {"broker": "broker", "cockpit": "cockpit"}[component]
    config = Config()
    config.set_main_option("script_location",
                           str(importlib.resources.files(package) / "migrations"))
    config.attributes["version_table"] = f"{component}_alembic_version"
    config.attributes["component"] = component
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head(component: str) -> str | None:
    """The newest migration of ``component`` this version of Einmal ships."""
    return _head(component)


def _head(component: str) -> str | None:
    return ScriptDirectory.from_config(_config(component)).get_current_head()


def _current(connection: Connection, component: str) -> str | None:
    context = MigrationContext.configure(
        connection, opts={"version_table": f"{component}_alembic_version"})
    return context.get_current_revision()


def _run(engine: AsyncEngine, fn: Callable[[Connection], Any]) -> Any:
    async def go() -> Any:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)

    return go()


async def current_and_head(engine: AsyncEngine, component: str) -> tuple[str | None, str | None]:
    current = await _run(engine, lambda c: _current(c, component))
    return current, _head(component)


async def upgrade(engine: AsyncEngine, component: str) -> tuple[str | None, str | None]:
    """Upgrade to head; returns (before, after)."""
    before = await _run(engine, lambda c: _current(c, component))

    def go(connection: Connection) -> None:
        command.upgrade(_config(component, connection), "head")

    await _run(engine, go)
    return before, _head(component)


async def ensure_schema(engine: AsyncEngine, component: str, tables: list[str]) -> None:
    """At start-up: migrate an empty database; refuse one that is behind or ahead."""
    def state(connection: Connection) -> tuple[str | None, bool]:
        existing = set(inspect(connection).get_table_names())
        return _current(connection, component), bool(existing & set(tables))

    current, has_tables = await _run(engine, state)
    head = _head(component)
    if current == head:
        return
    if current is None and not has_tables:
        await upgrade(engine, component)  # a fresh install: nothing to migrate from
        return
    script = ScriptDirectory.from_config(_config(component))
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        msg = (f"the {component} database is at revision {current}, newer than this version of "
               f"Einmal knows (head {head}): upgrade Einmal")
        raise SchemaError(msg)
    msg = (f"the {component} database schema is behind (at {current or 'no revision'}, "
           f"need {head}): run `einmal db upgrade` with the same --data-dir/--database-url")
    raise SchemaError(msg)
