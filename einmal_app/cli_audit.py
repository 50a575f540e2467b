"""``einmal audit export|verify``: auditors export the transfer log and verify it offline."""

import json
from pathlib import Path

import click
import httpx
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from einmal_client.audit import MAX_PROBLEMS_SHOWN, AuditError, export_bundle, verify_bundle

__all__ = ["audit"]


@click.group()
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
