"""``einmal serve``: broker, cockpit and register simulators (decision 0029: the server)."""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from einmal.logging import configure_logging
from einmal.settings import SettingsError, load_settings
from einmal_app.run import DEFAULT_SERVER, SERVERS, before_workers, check_workers, default_workers
from einmal_app.run import serve as serve_with
from einmal_app.server import build_components, create_app, prepare_stores

__all__ = ["serve"]


@click.command()
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
