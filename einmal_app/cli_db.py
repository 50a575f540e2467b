"""``einmal db upgrade``: the stores' schemas (Alembic migrations)."""

import asyncio
import os
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from einmal.migrate import upgrade
from einmal.settings import SettingsError, load_settings
from einmal.store import StoreError, create_engine

__all__ = ["db_group"]


@click.group("db")
def db_group() -> None:
    """The stores' schemas (Alembic migrations)."""

@db_group.command("upgrade")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--database-url", default=None)
@click.option("--components", default="broker,cockpit", show_default=True,
              help="Whose schema to upgrade.")
def db_upgrade(data_dir: Path | None, database_url: str | None, components: str) -> None:
    """Upgrade the schemas to this version of Einmal (safe to run again)."""
    try:
        settings = load_settings(os.environ, data_dir=data_dir, database_url=database_url,
                                 components=components)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> list[str]:
        lines = []
        for component in sorted(settings.components & {"broker", "cockpit"}):
            engine = create_engine(settings.database_url_for(component))
            try:
                before, after = await upgrade(engine, component)
            finally:
                await engine.dispose()
            lines.append(f"{component}: {before or 'empty'} -> {after}")
        return lines

    try:
        for line in asyncio.run(run()):
            click.echo(line)
    except (SQLAlchemyError, StoreError, OSError) as exc:
        raise click.ClickException(f"cannot upgrade: {type(exc).__name__}: {exc}") from exc
