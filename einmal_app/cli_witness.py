"""``einmal witness serve`` and ``einmal witness key``: a C2SP tlog-witness of its own.

Run by someone other than the log's operator (a data-protection supervisor): its own process,
key, state and database (decision 0026). The log asks it for cosignatures with
``POST <url>/add-checkpoint``; verifiers pin its vkey (``einmal witness key``).
"""

import asyncio
from pathlib import Path

import click
import uvicorn

from einmal.logging import configure_logging
from einmal.store import StoreError
from witness import WitnessComponent, WitnessConfig, WitnessConfigError, create_app
from witness.identity import load_or_create_identity

__all__ = ["witness"]

_DATA_DIR = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False),
    envvar="EINMAL_WITNESS_DATA_DIR", default=Path(".einmal-witness"), show_default=True,
    help="Key, name and SQLite file of this witness [env EINMAL_WITNESS_DATA_DIR].")
_NAME = click.option(
    "--name", default=None, envvar="EINMAL_WITNESS_NAME",
    help="Its name in cosignatures, a schema-less URL (e.g. witness.example.org/w1); kept in "
         "the data dir on first use [default: <host name>/einmal-witness].")


@click.group()
def witness() -> None:
    """A witness that cosigns a transfer log's checkpoints (C2SP tlog-witness)."""


@witness.command()
@_DATA_DIR
@_NAME
@click.option("--log-key", "log_keys", multiple=True, required=True,
              envvar="EINMAL_WITNESS_LOG_KEYS",
              help="A log to witness: its verifier key <origin>+<hex id>+<base64 key> "
                   "(the cockpit's GET /v1/log/verifier-key). Repeat for more logs or keys.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=8380, show_default=True, help="Port.")
@click.option("--database-url", default=None, envvar="EINMAL_WITNESS_DATABASE_URL",
              help="sqlite:///… or postgresql://… [default: witness.db in the data dir].")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console",
              show_default=True)
def serve(data_dir: Path, name: str | None, log_keys: tuple[str, ...], host: str, port: int,
          database_url: str | None, log_format: str) -> None:
    """Serve POST /add-checkpoint until stopped (SIGINT/SIGTERM)."""
    configure_logging(fmt=log_format)
    config = WitnessConfig(data_dir=data_dir, name=name, log_keys=log_keys,
                           database_url=database_url)
    try:
        component = WitnessComponent(config)
        asyncio.run(component.prepare())
    except (WitnessConfigError, StoreError) as exc:
        msg = f"cannot start: {exc}"
        raise click.ClickException(msg) from exc
    click.echo(f"Einmal witness on http://{host}:{port}/add-checkpoint\n"
               f"  key:  {component.vkey}\n"
               f"  logs: {', '.join(component.witness.origins)}\n"
               f"  data: {data_dir.resolve()}", err=True)
    uvicorn.run(create_app(component), host=host, port=port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=10)


@witness.command()
@_DATA_DIR
@_NAME
def key(data_dir: Path, name: str | None) -> None:
    """Print this witness's verifier key (vkey, signature type 0x04); creates the key if new."""
    try:
        identity = load_or_create_identity(data_dir, name)
    except WitnessConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(identity.vkey)
