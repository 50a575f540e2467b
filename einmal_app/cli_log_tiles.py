"""``einmal log publish`` and ``einmal log monitor``: the transfer log as C2SP tlog-tiles, written
to a folder any web server serves, and followed by a monitor (docs/transfer-log.md)."""

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from cockpit.errors import CockpitError
from cockpit.log import TransferLog
from cockpit.log.witnesses import WitnessConfigError, load_witness_policy
from cockpit.store import open_store
from cockpit.tiles import LogTiles, PublishError, PublishReport, publish
from einmal.keys import load_or_create_signing_key
from einmal.settings import SettingsError, load_settings
from einmal.store import StoreError, create_engine
from einmal_client.audit import MAX_PROBLEMS_SHOWN
from einmal_client.monitor import (
    LogMisbehaved,
    Monitor,
    MonitorError,
    MonitorReport,
    MonitorUnavailable,
)
from einmal_client.tiles import TileClient

__all__ = ["EXIT_MISBEHAVED", "EXIT_UNAVAILABLE", "log_monitor", "log_publish"]

#: exit statuses of ``einmal log monitor`` (2 is click's usage error)
EXIT_MISBEHAVED = 1
EXIT_UNAVAILABLE = 3


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on a terminal's stderr (nothing when stderr is not one)."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    columns = (TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@click.command("publish")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The folder to write (or bring up to date): serve it as the log's prefix.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--database-url", default=None)
def log_publish(out: Path, data_dir: Path | None, database_url: str | None) -> None:
    """Write the log as C2SP tlog-tiles to a folder: checkpoint, tile/..., tile/entries/....

    Safe to run again (full tiles are written once; an interrupted run resumes) and meant to
    be run after every checkpoint or on a timer; the checkpoint is written last."""
    try:
        settings = load_settings(os.environ, data_dir=data_dir, database_url=database_url)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if not (settings.keys_dir / "cockpit-log.jwk.json").exists():
        raise click.ClickException(f"no cockpit data in {settings.data_dir} (no log key)")

    try:
        witnesses = load_witness_policy(settings.log_witnesses, settings.log_witness_quorum)
    except WitnessConfigError as exc:
        raise click.ClickException(str(exc)) from exc

    async def run(progress: Callable[[int, int], None]) -> PublishReport:
        engine = create_engine(settings.database_url_for("cockpit"))
        try:
            store = open_store(engine)
            # The log's name as its checkpoints have it (the default origin is derived from
            # the cockpit's URL, which this command need not know); publish verifies the
            # checkpoint with this key under that name.
            latest = await store.latest_checkpoint()
            if latest is None:
                msg = "the log has no checkpoint yet"
                raise PublishError(msg)
            transfer_log = TransferLog(
                store=store, origin=latest[1].split("\n", 1)[0], witnesses=witnesses,
                key=load_or_create_signing_key(settings.keys_dir, "cockpit-log"))

            async def published() -> tuple[int, str]:
                # NOTE: settings without witnesses, a store with cosigned checkpoints (the
                # demo's in-process witness; a cockpit configured apart from this command):
                # the latest cosigned one - never publish a checkpoint no witness has seen.
                cosigned = None if witnesses.enabled else await store.published_checkpoint()
                return cosigned or await transfer_log.checkpoint()

            tiles = LogTiles(store, published, verifier_key=transfer_log.verifier_key)
            return await publish(tiles, out, progress=progress)
        finally:
            await engine.dispose()

    try:
        with _progress("publish") as progress:
            report = asyncio.run(run(progress))
    except (SQLAlchemyError, StoreError) as exc:
        msg = f"cannot publish: the store failed ({type(exc).__name__})"
        raise click.ClickException(msg) from exc
    except (PublishError, CockpitError, OSError) as exc:
        raise click.ClickException(f"cannot publish: {exc}") from exc
    withheld = (f", {report.withheld} entry bundles withheld (shredded entries)"
                if report.withheld else "")
    click.echo(f"published the log of size {report.tree_size} to {out}: {report.written} "
               f"files written, {report.kept} full tiles kept, {report.removed} removed"
               f"{withheld}")


def _summary(report: MonitorReport) -> str:
    since = ("first run" if report.previous_size is None
             else f"was {report.previous_size}")
    hashes_only = (f", {report.unavailable} shredded (hashes checked, not their form)"
                   if report.unavailable else "")
    return (f"{report.origin}: size {report.tree_size} ({since}), {report.entries} new "
            f"entries checked{hashes_only}")


@click.command("monitor")
@click.option("--url", required=True,
              help="The log's prefix: https://cockpit.example/log, or where a folder written "
                   "by 'einmal log publish' is served.")
@click.option("--state", "state_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="The monitor's own folder: what it saw, evidence.")
@click.option("--verifier-key", default=None,
              help="The log's verifier key (or a file holding it), obtained out of band "
                   "[default: fetched from <url>/verifier-key on the first run, then pinned].")
@click.option("--follow", is_flag=True, help="Keep checking, every --interval seconds.")
@click.option("--interval", type=click.FloatRange(min=1), default=30.0, show_default=True)
def log_monitor(url: str, state_dir: Path, verifier_key: str | None, follow: bool,
                interval: float) -> None:
    """Follow a log's checkpoints and tiles; check that it only grows and every new entry.

    Exit 0: all holds; 1: the log misbehaved (split view, rewrite, bad signature, tiles or
    entries not matching its checkpoint) or entries of a malformed form; 3: the log could
    not be read (without --follow)."""
    if verifier_key and Path(verifier_key).is_file():
        verifier_key = Path(verifier_key).read_text()
    with TileClient(url) as client:
        monitor = Monitor(client, state_dir, verifier_key=verifier_key)
        while True:
            try:
                with _progress("entries") as progress:
                    report = monitor.check(progress=progress)
            except LogMisbehaved as exc:
                click.echo(f"FAIL {exc}", err=True)
                raise SystemExit(EXIT_MISBEHAVED) from exc
            except MonitorUnavailable as exc:
                click.echo(f"UNAVAILABLE {exc}", err=True)
                if not follow:
                    raise SystemExit(EXIT_UNAVAILABLE) from exc
            except MonitorError as exc:
                raise click.ClickException(str(exc)) from exc
            else:
                _report(report)
            if not follow:
                return
            time.sleep(interval)


def _report(report: MonitorReport) -> None:
    if report.pinned:
        click.echo("pinned the log's verifier key fetched from the log (trust on first use: "
                   "compare it with one obtained out of band)", err=True)
    for problem in report.problems[:MAX_PROBLEMS_SHOWN]:
        click.echo(f"FAIL {problem}", err=True)
    if report.problems:
        click.echo(f"FAIL {len(report.problems)} entries of a malformed form; "
                   f"{_summary(report)}", err=True)
        raise SystemExit(EXIT_MISBEHAVED)
    click.echo(f"OK {_summary(report)}")
