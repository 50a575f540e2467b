"""``einmal broker shred``: apply the broker's retention rules now (broker/retention.py).

The running broker applies them by itself (every ``EINMAL_RETENTION_SWEEP_INTERVAL_S``); this
is the operator's command for a broker whose sweeper is off, or to keep the protocol longer for
a documented reason (§ 9 (3) sentence 2 IDNrG) and shred it up to a date of one's choosing.
It may run beside a serving broker (SQLite waits for the writer; PostgreSQL locks rows).
"""

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from broker.protocol import OutboxSeal, Pseudonyms
from broker.retention import PROTOCOL_YEARS, Retention, RetentionError, retention_cutoffs
from broker.store import open_store
from einmal.keys import load_or_create_secret
from einmal.logging import configure_logging
from einmal.migrate import SchemaError
from einmal.settings import Settings, SettingsError, load_settings
from einmal.store import StoreError, create_engine, dispose

__all__ = ["broker"]


@click.group("broker")
def broker() -> None:
    """The broker's store: retention."""


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter("a date YYYY-MM-DD or an RFC 3339 time",
                                 param_hint="--before") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _lines(deleted: dict[str, int], keep_from: datetime, previews_before: datetime,
           ) -> list[str]:
    """One line per table: what was deleted, and why."""
    keep = keep_from.isoformat(timespec="seconds")
    return [
        f"broker_transfer: {deleted['broker_transfer']} protocol entries delivered before "
        f"{keep} deleted ({deleted['sealed']} rows from before migration 0004 sealed)",
        f"broker_consent: {deleted['broker_consent']} consents that ended before {keep} "
        "deleted",
        f"broker_idempotency: {deleted['broker_idempotency']} expired Idempotency-Key "
        "answers deleted",
        f"broker_assertion_jti: {deleted['broker_assertion_jti']} expired client-assertion "
        "ids deleted",
        f"broker_preview: {deleted['broker_preview']} ended previews whose time was up before "
        f"{previews_before.isoformat(timespec='seconds')} deleted",
        f"broker_bucket: {deleted['broker_bucket']} rate-limit buckets idle for an hour "
        "deleted",
    ]


@broker.command("shred")
@click.option("--before", default=None,
              help="Delete protocol entries and ended consents before this date instead of "
                   f"{PROTOCOL_YEARS} years back - only an earlier date (YYYY-MM-DD or RFC "
                   "3339, UTC).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Keys and SQLite files [default: ./.einmal].")
@click.option("--database-url", default=None,
              help="sqlite:///… or postgresql://… [default: broker.db in the data dir].")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def shred(before: str | None, data_dir: Path | None, database_url: str | None,
          yes: bool) -> None:
    """Delete what the broker's retention rules no longer allow it to keep; one line per
    table. Protocol data is kept two years (§ 9 (3) IDNrG); a record still waiting for
    delivery is never deleted."""
    when = _date(before)
    configure_logging(level="warning")  # the report is the lines below; problems on stderr
    try:
        settings = load_settings(os.environ, data_dir=data_dir, database_url=database_url)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if not (settings.keys_dir / "broker-pseudonym.key").exists():
        msg = f"no broker data in {settings.data_dir} (no broker-pseudonym key)"
        raise click.ClickException(msg)
    now = datetime.now(UTC)  # one now for the check, the question, the deletes and the report
    try:  # checked before anything is asked or opened
        cutoffs = retention_cutoffs(now, before=when)
    except RetentionError as exc:
        raise click.BadParameter(str(exc), param_hint="--before") from exc
    keep_from = cutoffs.protocol_before.isoformat(timespec="seconds")
    if not yes:
        click.confirm(f"Delete the broker's protocol entries delivered before {keep_from}, "
                      "the consents that ended before it, and every expired answer, id, "
                      "preview and rate-limit bucket? This cannot be undone", abort=True)
    try:
        deleted = asyncio.run(_shred(settings, now, when))
    except (SQLAlchemyError, StoreError, SchemaError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        msg = f"cannot shred: {type(exc).__name__}: {first}"
        raise click.ClickException(msg) from exc
    for line in _lines(deleted, cutoffs.protocol_before, cutoffs.previews_before):
        click.echo(line)


async def _shred(settings: Settings, now: datetime, before: datetime | None,
                 ) -> dict[str, int]:
    keys = settings.keys_dir
    seal = OutboxSeal(key=load_or_create_secret(keys, "broker-outbox"),
                      pseudonyms=Pseudonyms(load_or_create_secret(keys, "broker-pseudonym")))
    engine = create_engine(settings.database_url_for("broker"))
    store = open_store(engine, seal)
    try:
        await store.create_schema()  # refuses a store that is behind: `einmal db upgrade`
        return await Retention(store, clock=now.timestamp).sweep(before=before)
    finally:
        await store.aclose()
        await dispose(engine)
