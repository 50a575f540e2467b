"""``einmal keys rotate NAME``: retire a signing key (or re-wrap under a new master key)."""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from cockpit.vault import VaultError, count_citizen_keys, rewrap_citizen_keys
from einmal.keys import ROLLOVER_S, load_or_create_secret, rotate_signing_key
from einmal.settings import SettingsError, load_settings
from einmal.store import StoreError, create_engine

__all__ = ["keys_group"]


@click.group("keys")
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
