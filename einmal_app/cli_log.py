"""``einmal log shred|publish|monitor``: the cockpit's transfer log."""

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from cockpit.log import TransferLog
from einmal.keys import load_or_create_signing_key
from einmal.settings import SettingsError, load_settings
from einmal.store import StoreError, create_engine
from einmal_app.cli_log_tiles import log_monitor, log_publish

__all__ = ["log_group"]


@click.group("log")
def log_group() -> None:
    """The cockpit's transfer log (retention, tiles, monitoring)."""

log_group.add_command(log_publish)
log_group.add_command(log_monitor)

@log_group.command("shred")
@click.option("--before", required=True, help="Shred entries that occurred before this date "
              "(YYYY-MM-DD or RFC 3339, UTC).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--database-url", default=None)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def log_shred(before: str, data_dir: Path | None, database_url: str | None, yes: bool) -> None:
    """Destroy the data of expired entries; the tree, checkpoints and proofs still verify."""
    try:
        when = datetime.fromisoformat(before.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter("a date YYYY-MM-DD or an RFC 3339 time",
                                 param_hint="--before") from exc
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    try:
        settings = load_settings(os.environ, data_dir=data_dir, database_url=database_url)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if not (settings.keys_dir / "cockpit-log.jwk.json").exists():
        raise click.ClickException(f"no cockpit data in {settings.data_dir} (no log key)")
    if not yes:
        click.confirm(f"Shred every transfer-log entry before {when.isoformat()}? "
                      "This cannot be undone", abort=True)

    async def run() -> int:
        engine = create_engine(settings.database_url_for("cockpit"))
        try:
            transfer_log = TransferLog(
                engine=engine, key=load_or_create_signing_key(settings.keys_dir, "cockpit-log"),
                origin=settings.log_origin_line)
            return await transfer_log.shred(when)
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(run())
    except (SQLAlchemyError, StoreError) as exc:
        msg = f"cannot shred: the store failed ({type(exc).__name__})"
        raise click.ClickException(msg) from exc
    click.echo(f"shredded {count} entries before {when.isoformat()}")
