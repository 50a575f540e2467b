"""The ``einmal`` command line: serve, scenario, policies check."""

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from cockpit.log import TransferLog
from cockpit.vault import VaultError, count_citizen_keys, rewrap_citizen_keys
from einmal.keys import (
    ROLLOVER_S,
    load_or_create_secret,
    load_or_create_signing_key,
    rotate_signing_key,
)
from einmal.logging import configure_logging
from einmal.migrate import upgrade
from einmal.settings import SettingsError, load_settings
from einmal.store import StoreError, create_engine
from einmal_app.cli_log_tiles import log_monitor, log_publish
from einmal_app.cli_policies import check
from einmal_app.cli_receipt import receipt
from einmal_app.cli_retention import broker
from einmal_app.cli_witness import witness
from einmal_app.run import DEFAULT_SERVER, SERVERS, before_workers, check_workers, default_workers
from einmal_app.run import serve as serve_with
from einmal_app.scenario import run_scenario
from einmal_app.server import build_components, create_app, prepare_stores
from einmal_client.audit import MAX_PROBLEMS_SHOWN, AuditError, export_bundle, verify_bundle

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="einmal")
def main() -> None:
    """Einmal: once-only proofs for family services, with a citizen privacy cockpit."""

@main.command()
@click.option("--host", default=None, help="Interface to bind [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 8000].")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Keys and SQLite files [default: ./.einmal].")
@click.option("--database-url", default=None,
              help="SQLAlchemy URL (sqlite:///… or postgresql://…) [default: SQLite files "
                   "in the data dir].")
@click.option("--components", default=None,
              help="Comma-separated: broker,cockpit,registers [default: all].")
@click.option("--demo/--no-demo", default=None,
              help="Synthetic registers data, demo keys, demo login and credentials.")
@click.option("--public-url", default=None, help="Base URL clients use [default: http://host:port].")
@click.option("--broker-url", default=None, help="Broker base URL (when run separately).")
@click.option("--cockpit-url", default=None, help="Cockpit base URL (when run separately).")
@click.option("--registers-url", default=None,
              help="Registers base URL [default: <public>/registers].")
@click.option("--policies-dir", type=click.Path(path_type=Path), default=None,
              help="Policy documents [default: the shipped policies/documents].")
@click.option("--families", "simulator_families", type=int, default=None,
              help="Synthetic families in the register simulators [default: 300].")
@click.option("--log-format", type=click.Choice(["console", "json"]), default=None)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes sharing the port [default: the number of cores on "
                   "PostgreSQL; 1 on SQLite, where one process is the rule and more are "
                   "refused].")
@click.option("--server", type=click.Choice(SERVERS), default=DEFAULT_SERVER,
              show_default=True, help="The HTTP server (decision 0029).")
def serve(workers: int | None, server: str, **options: Any) -> None:
    """Start broker, cockpit and register simulators (all in one process by default).

    Every option can also be set as an environment variable EINMAL_<OPTION>, e.g.
    EINMAL_DATABASE_URL.
    """
    try:
        settings = load_settings(os.environ, **options)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    workers = workers if workers is not None else default_workers(settings)
    warnings = check_workers(settings, workers)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        components = build_components(settings)
        asyncio.run(prepare_stores(components))
        if workers > 1:
            asyncio.run(before_workers(components))
    except Exception as exc:  # policy, key, store or schema problems: one line, no traceback
        raise click.ClickException(f"cannot start: {exc}") from exc
    # uvicorn with one worker serves this very app; otherwise every worker builds its own
    app = create_app(settings, components) if server == "uvicorn" and workers == 1 else None
    _print_welcome(settings, server, workers)
    for warning in warnings:
        click.echo(warning, err=True)
    serve_with(settings, options, server=server, workers=workers, app=app)


def _print_welcome(settings: Any, server: str, workers: int) -> None:
    base = settings.base_url
    token_at = "EINMAL_OPS_TOKEN" if settings.ops_token else settings.keys_dir / "ops.token"
    lines = [f"Einmal {', '.join(sorted(settings.components))} on {base}"
             f"{'  (DEMO MODE: synthetic data, public demo keys)' if settings.demo else ''}",
             f"  server:   {server}, {workers} worker process{'es' if workers > 1 else ''}",
             f"  data:     {settings.data_dir.resolve()}"
             f"  store: {settings.database_url or 'SQLite'}",
             f"  API docs: {base}/schema   health: {base}/health/live",
             "  operator: /health/ready and /metrics need 'Authorization: Bearer <token>', "
             f"token in {token_at}"]
    if "broker" in settings.components:
        lines.append(f"  broker:   {settings.broker_base_url}/v1/proof-requests  "
                     f"JWKS {settings.broker_base_url}/.well-known/jwks.json")
    if "cockpit" in settings.components:
        lines.append(f"  cockpit:  {settings.cockpit_base_url}/v1/me/transfers  "
                     f"web: {settings.cockpit_base_url}/ (Datenschutzcockpit)")
    if "registers" in settings.components:
        lines.append(f"  registers: {settings.registers_base_url}")
    if settings.demo:
        me = sys.argv[0] if sys.argv[0].endswith("einmal") else "einmal"
        lines += [f"  demo credentials: {settings.data_dir / 'demo-credentials.json'}",
                  "Try next, in another terminal:",
                  f"  {me} scenario elfe --base-url {base}",
                  f"  {me} scenario uvo --base-url {base}",
                  f"  {me} scenario dsc --base-url {base}",
                  f"  {me} audit export --base-url {base} --out bundle && "
                  f"{me} audit verify bundle"]
    click.echo("\n".join(lines), err=True)


@main.command()
@click.argument("name", type=click.Choice(["elfe", "uvo", "dsc"]))
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="A running `einmal serve --demo`.")
@click.option("--credentials", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="demo-credentials.json [default: fetched from the server's /demo/credentials].")
def scenario(name: str, base_url: str, credentials: Path | None) -> None:
    """Play a story (elfe, uvo, dsc) against a running demo server; exit 0 only if every check
    held."""
    base_url = base_url.rstrip("/")
    if credentials is not None:
        try:
            creds = json.loads(credentials.read_text())
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"cannot read {credentials}: {exc}") from exc
    else:
        try:
            response = httpx.get(f"{base_url}/demo/credentials", timeout=10)
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"no Einmal server at {base_url} - start one with `einmal serve --demo`") from exc
        if response.status_code != 200:
            raise click.ClickException(
                f"{base_url} is not in demo mode (GET /demo/credentials answered "
                f"{response.status_code}); start it with `einmal serve --demo`")
        creds = response.json()
    ok = asyncio.run(run_scenario(name, base_url, creds, console=Console()))
    sys.exit(0 if ok else 1)


@main.group()
def policies() -> None:
    """Policy documents: which online service may fetch what, why, on which basis."""

policies.add_command(check)
main.add_command(witness)
main.add_command(receipt)
main.add_command(broker)


@main.group()
def audit() -> None:
    """Auditors: export the transfer log and verify it offline."""

@audit.command("export")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True)
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Bundle folder (an interrupted export resumes there).")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The auditor's private JWK [default: the demo auditor from /demo/credentials].")
@click.option("--since", default=None, help="Only entries from this time (RFC 3339).")
@click.option("--until", default=None, help="Only entries before this time (RFC 3339).")
@click.option("--service", default=None, help="Only this online service (id).")
@click.option("--register", default=None, help="Only this register (id).")
def audit_export(base_url: str, out: Path, key_file: Path | None, **filters: str | None) -> None:
    """Write a verifiable bundle: entries.ndjson, checkpoint, verifier-key."""
    base_url = base_url.rstrip("/")
    if key_file is not None:
        try:
            private_jwk = json.loads(key_file.read_text())
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"cannot read the auditor key {key_file}: {exc}") from exc
    else:
        try:
            creds = httpx.get(f"{base_url}/demo/credentials", timeout=10)
            private_jwk = creds.json()["auditors"][0]["private_jwk"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            raise click.ClickException(
                f"give --key (no demo auditor at {base_url})") from exc
    chosen = {k: v for k, v in filters.items() if v is not None}
    with Progress(TextColumn("export"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task("export", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            result = export_bundle(base_url, out, private_jwk, chosen, progress=progress)
        except AuditError as exc:
            raise click.ClickException(str(exc)) from exc
    resumed = (f", resumed after index {result['resumed_after']}"
               if result["resumed_after"] >= 0 else "")
    click.echo(f"exported {result['lines']} entries of a tree of size {result['tree_size']} "
               f"to {out}{resumed}")


@audit.command("verify")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--previous-checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="An earlier checkpoint: the log must extend it.")
@click.option("--verifier-key", default=None,
              help="The log's verifier key, obtained out of band [default: the bundle's copy].")
@click.option("--witness-key", "witness_keys", multiple=True,
              help="A witness's vkey (or a file holding it): the checkpoint must carry its "
                   "cosignature. Repeat for each witness.")
@click.option("--witness-quorum", type=click.IntRange(min=1), default=None,
              help="How many of the given witnesses must have cosigned [default: all].")
def audit_verify(folder: Path, previous_checkpoint: Path | None, verifier_key: str | None,
                 witness_keys: tuple[str, ...], witness_quorum: int | None) -> None:
    """Verify a bundle offline; one line per problem; exit 0 only if everything holds."""
    if verifier_key and Path(verifier_key).is_file():
        verifier_key = Path(verifier_key).read_text()
    if witness_quorum is not None and not witness_keys:
        raise click.UsageError("--witness-quorum needs --witness-key")
    keys = [Path(k).read_text().strip() if Path(k).is_file() else k for k in witness_keys]
    report = verify_bundle(folder, verifier_key=verifier_key,
                           previous_checkpoint=previous_checkpoint, witness_keys=keys,
                           witness_quorum=witness_quorum)
    for problem in report.problems[:MAX_PROBLEMS_SHOWN]:
        click.echo(f"FAIL {problem}", err=True)
    if len(report.problems) > MAX_PROBLEMS_SHOWN:
        click.echo(f"FAIL … and {len(report.problems) - MAX_PROBLEMS_SHOWN} more problems",
                   err=True)
    if not report.ok:
        raise SystemExit(1)
    rate = report.entries / report.seconds if report.seconds else 0
    cosigned = f", cosigned by {', '.join(report.cosigned_by)}" if report.cosigned_by else ""
    click.echo(f"OK: {report.entries} entries verified against the signed checkpoint of size "
               f"{report.tree_size}{cosigned} ({report.seconds:.2f} s, {rate:,.0f} entries/s)")


@main.group("log")
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


@main.group("db")
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


@main.group("keys")
def keys_group() -> None:
    """Signing keys."""

_SIGNING_KEYS = ["broker-proof", "cockpit-log", "broker-token", "broker-channel"]


@keys_group.command("rotate")
@click.argument("name", type=click.Choice([*_SIGNING_KEYS, "cockpit-master"]))
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True,
              help="cockpit-master: citizen keys re-wrapped per transaction.")
def keys_rotate(name: str, data_dir: Path | None, batch: int) -> None:
    """Retire the current key and create a new one; restart the processes to use it.

    The retired public key stays published (JWKS for broker-proof, /v1/log/verifier-keys for
    cockpit-log), so proofs and checkpoints signed before still verify. broker-token and
    broker-channel sign short-lived tokens: their verifiers accept the retired key until its
    last token has expired (restart every process within 10 minutes). cockpit-master:
    stop the cockpit first; every citizen key is re-wrapped with a new master key (resumable:
    run it again after an interruption), then the old master key file is replaced.
    """
    try:
        settings = load_settings(os.environ, data_dir=data_dir)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if name == "cockpit-master":
        _rotate_master(settings, batch)
        return
    if not (settings.keys_dir / f"{name}.jwk.json").exists():
        raise click.ClickException(f"no key {name} in {settings.keys_dir}")
    old, new = rotate_signing_key(settings.keys_dir, name)
    if name in {"broker-token", "broker-channel"}:
        click.echo(f"{name}: {old} retired, {new} signs from the next start; restart every "
                   f"process within {ROLLOVER_S // 60} minutes (the retired key is accepted "
                   "until its last token has expired, then dropped)")
    else:
        click.echo(f"{name}: {old} retired (still published), {new} signs from the next start")


def _rotate_master(settings: Any, batch: int) -> None:
    """Re-wrap every citizen key with a new cockpit master key; then replace the old one."""
    current = settings.keys_dir / "cockpit-master.key"
    if not current.exists():
        raise click.ClickException(f"no key cockpit-master in {settings.keys_dir}")
    old = current.read_bytes()

    def failed(exc: Exception, during: str) -> click.ClickException:
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return click.ClickException(f"cannot rotate cockpit-master: {type(exc).__name__}: "
                                    f"{first} ({during})")

    async def count() -> int:
        engine = create_engine(settings.database_url_for("cockpit"))
        try:
            return await count_citizen_keys(engine)
        finally:
            await engine.dispose()

    try:  # the store must be reachable before anything changes
        total = asyncio.run(count())
    except (SQLAlchemyError, StoreError, OSError) as exc:
        raise failed(exc, "nothing changed; is the cockpit store migrated and reachable?") from exc
    # A run that was interrupted left its new key here: continue with it.
    new = load_or_create_secret(settings.keys_dir, "cockpit-master.next")
    engine = create_engine(settings.database_url_for("cockpit"))

    async def run() -> tuple[int, int]:
        try:
            if not sys.stderr.isatty():
                return await rewrap_citizen_keys(engine, old, new, batch=batch)
            with click.progressbar(length=total, label="re-wrapping citizen keys",
                                   file=sys.stderr) as bar:
                return await rewrap_citizen_keys(engine, old, new, batch=batch,
                                                 progress=bar.update)
        finally:
            await engine.dispose()

    try:
        rewrapped, already = asyncio.run(run())
    except (SQLAlchemyError, StoreError, OSError, VaultError) as exc:
        raise failed(exc, "nothing swapped; the old master key still opens every key not yet "
                     "re-wrapped: run the command again") from exc
    os.replace(settings.keys_dir / "cockpit-master.next.key", current)
    click.echo(f"cockpit-master: {rewrapped} citizen keys re-wrapped ({already} were already); "
               "the old master key is destroyed (its file was replaced). Start the cockpit.")
