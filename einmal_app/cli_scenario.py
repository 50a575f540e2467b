"""``einmal scenario elfe|uvo|dsc``: a story played against a running demo server."""

import asyncio
import json
import sys
from pathlib import Path

import click
import httpx
from rich.console import Console

from einmal_app.scenario import run_scenario

__all__ = ["scenario"]


@click.command()
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
