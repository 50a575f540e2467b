"""``einmal receipt verify FILE``: check a citizen's receipt of a transfer offline.

A receipt (C2SP tlog-proof, ``einmal_client.receipt``) is the transfer-log entry, its inclusion
proof and the checkpoint with the witnesses' cosignatures; the cockpit's transfer detail page
offers it. Exit 0 with a summary if everything holds; one line and exit 1 otherwise.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from einmal_client.receipt import MAX_RECEIPT_BYTES, ReceiptError, VerifiedReceipt, verify_receipt

__all__ = ["receipt"]


def _key(value: str) -> str:
    """A key given inline, or the path of a file holding it."""
    path = Path(value)
    try:
        return path.read_text().strip() if path.is_file() else value.strip()
    except OSError as exc:
        msg = f"cannot read the key file {value}: {exc.strerror}"
        raise click.ClickException(msg) from exc


def _when(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _summary(verified: VerifiedReceipt) -> list[str]:
    entry: dict[str, Any] = verified.entry
    service = entry.get("service") or {}
    register = entry.get("register") or {}
    checkpoint = verified.checkpoint
    lines = [f"OK: entry {verified.index} of the log {checkpoint.origin} "
             f"(checkpoint of size {checkpoint.size})",
             f"  transfer:   {entry.get('id', '?')}, {entry.get('occurred_at', '?')}, "
             f"{entry.get('outcome', '?')}",
             f"  proof:      {entry.get('proof_type', '?')} for {service.get('name', '?')} "
             f"({service.get('authority', '?')})",
             f"  from:       {register.get('name', '-')}",
             f"  purpose:    {entry.get('purpose', '?')}; legal basis "
             f"{entry.get('legal_basis') or 'not stated'}",
             "  log's signature: " + ("verified" if verified.log_signature_checked
                                      else "not checked (no --verifier-key)")]
    if verified.cosigned_by:
        lines += [f"  cosigned by: {name} at {_when(at)}"
                  for name, at in verified.cosigned_by.items()]
    else:
        lines.append("  cosignatures: not checked (no --witness-key)")
    lines.append("  It proves this entry is in the log's history as its witnesses saw it; "
                 "not that the transfer was lawful.")
    return lines


@click.group()
def receipt() -> None:
    """Citizens' receipts of transfers (C2SP tlog-proof files)."""


@receipt.command("verify")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--verifier-key", "verifier_keys", multiple=True,
              help="The log's verifier key (or a file holding it), obtained out of band "
                   "(GET /v1/log/verifier-key). Repeat for a log's retired keys.")
@click.option("--witness-key", "witness_keys", multiple=True,
              help="A witness's vkey (or a file holding it); repeat for each witness.")
@click.option("--witness-quorum", type=click.IntRange(min=1), default=None,
              help="How many of the given witnesses must have cosigned [default: all].")
def verify(file: Path, verifier_keys: tuple[str, ...], witness_keys: tuple[str, ...],
           witness_quorum: int | None) -> None:
    """Check a receipt offline: the log's signature, the witnesses' cosignatures, and that the
    entry is in the checkpoint's tree. Exit 0 only if all holds."""
    if witness_quorum is not None and not witness_keys:
        msg = "--witness-quorum needs --witness-key"
        raise click.UsageError(msg)
    try:
        with file.open("rb") as handle:
            content = handle.read(MAX_RECEIPT_BYTES + 1)
    except OSError as exc:
        msg = f"cannot read {file}: {exc.strerror}"
        raise click.ClickException(msg) from exc
    try:
        verified = verify_receipt(content, verifier_keys=[_key(k) for k in verifier_keys],
                                  witness_keys=[_key(k) for k in witness_keys],
                                  quorum=witness_quorum)
    except ReceiptError as exc:
        click.echo(f"FAIL {file.name}: {exc}", err=True)
        raise SystemExit(1) from exc
    click.echo("\n".join(_summary(verified)))
