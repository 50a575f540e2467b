"""Auditors: export a verifiable bundle of the transfer log, and verify it offline.

A bundle is a folder: ``checkpoint`` (the signed note, with the witnesses' cosignatures when
the log has witnesses), ``verifier-key``, ``export.json`` (what was asked for) and
``entries.ndjson`` (one line per entry, index order). ``verify_bundle`` needs nothing but the
folder (and, better, the verifier key and the witnesses' keys obtained out of band).
"""

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal_client import tlog
from einmal_client.cosignature import WitnessKey, parse_witness_vkey, verify_cosignatures

__all__ = ["AuditError", "VerifyReport", "auditor_token", "export_bundle", "verify_bundle"]

AUDIT_AUDIENCE = "einmal-audit"
MAX_PROBLEMS_SHOWN = 20
_decode_json = msgspec.json.Decoder().decode


class _Line(msgspec.Struct):
    index: int
    leaf: str | None = None
    leaf_hash: str | None = None
    entry: msgspec.Raw = msgspec.Raw(b"null")
    inclusion: list[str] = []


_decode_line = msgspec.json.Decoder(_Line).decode


class AuditError(Exception):
    """Export could not run (one clear line for the CLI)."""


def auditor_token(private_jwk: dict[str, Any]) -> str:
    d = private_jwk["d"]
    key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(d + "=" * (-len(d) % 4)))
    now = int(time.time())
    claims = {"iss": private_jwk["kid"], "sub": private_jwk["kid"], "aud": AUDIT_AUDIENCE,
              "iat": now, "exp": now + 120, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": private_jwk["kid"]})


def _last_index(path: Path) -> int:
    """Index of the last complete line; a torn last line (interrupted write) is cut off."""
    if not path.exists():
        return -1
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut != len(data):
        with path.open("r+b") as handle:
            handle.truncate(cut)
        data = data[:cut]
    if not data:
        return -1
    last = data[data.rfind(b"\n", 0, len(data) - 1) + 1:]
    return int(json.loads(last)["index"])


def export_bundle(base_url: str, out: Path, private_jwk: dict[str, Any],
                  filters: dict[str, str], *,
                  progress: Callable[[int, int], None] = lambda done, total: None,
                  http: httpx.Client | None = None) -> dict[str, Any]:
    """Write or resume a bundle. Returns {"tree_size", "lines", "resumed_after"}."""
    client = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=60)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "export.json"
    try:
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta["filters"] != filters or meta["base_url"] != base_url.rstrip("/"):
                msg = (f"{out} holds an export with other filters or from another server; "
                       "use a new --out folder")
                raise AuditError(msg)
        else:
            checkpoint = client.get("/v1/log/checkpoint")
            vkey = client.get("/v1/log/verifier-key")
            if checkpoint.status_code != 200 or vkey.status_code != 200:
                msg = f"{base_url} serves no transfer log (HTTP {checkpoint.status_code})"
                raise AuditError(msg)
            (out / "checkpoint").write_text(checkpoint.text)
            (out / "verifier-key").write_text(vkey.text)
            size = int(checkpoint.text.split("\n")[1])
            meta = {"base_url": base_url.rstrip("/"), "filters": filters, "tree_size": size}
            meta_path.write_text(json.dumps(meta, indent=2))
        size = int(meta["tree_size"])
        entries = out / "entries.ndjson"
        after = _last_index(entries)
        resumed_after = after
        params = {**filters, "tree_size": str(size), "after": str(after)}
        progress(after + 1, size)
        lines = 0
        with entries.open("ab") as sink, client.stream(
                "GET", "/v1/audit/export", params=params,
                headers={"authorization": f"Bearer {auditor_token(private_jwk)}"}) as response:
            if response.status_code != 200:
                response.read()
                detail = response.json().get("detail", "") if response.content else ""
                msg = f"export refused: HTTP {response.status_code} {detail}".strip()
                raise AuditError(msg)
            for line in response.iter_lines():
                if not line:
                    continue
                sink.write(line.encode() + b"\n")
                lines += 1
                if lines % 1000 == 0:
                    sink.flush()
                    progress(int(json.loads(line)["index"]) + 1, size)
        progress(size, size)
        (out / "COMPLETE").write_text("export finished\n")
    except httpx.HTTPError as exc:
        msg = f"cannot reach {base_url}: {type(exc).__name__} (run the command again to resume)"
        raise AuditError(msg) from exc
    finally:
        if http is None:
            client.close()
    return {"tree_size": size, "lines": lines, "resumed_after": resumed_after}


@dataclass
class VerifyReport:
    entries: int = 0
    tree_size: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: the witnesses whose cosignatures on the checkpoint verified (when keys were given)
    cosigned_by: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        self.problems.append(text)


def _read_lines(path: Path, report: VerifyReport) -> Iterator[tuple[int, _Line]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = _decode_line(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                report.problem(f"line {number}: not a valid export line")
                continue
            yield line.index, line


def _leaf_hash_of(index: int, line: _Line, report: VerifyReport) -> bytes | None:
    try:
        if line.leaf is not None:
            leaf = base64.b64decode(line.leaf, validate=True)
            entry = bytes(line.entry)
            if entry != leaf and entry != b"null":  # not byte-identical: compare as JSON
                try:
                    if _decode_json(leaf) != _decode_json(entry):
                        report.problem(
                            f"index {index}: the decoded entry differs from its leaf bytes")
                except msgspec.DecodeError:
                    report.problem(f"index {index}: the leaf bytes are not valid JSON")
            return tlog.leaf_hash(leaf)
        if line.leaf_hash is not None:
            value = base64.b64decode(line.leaf_hash, validate=True)
            if len(value) != 32:
                raise ValueError
            return value
    except (binascii.Error, ValueError):
        report.problem(f"index {index}: the leaf is not valid base64")
        return None
    report.problem(f"index {index}: neither leaf nor leaf_hash")
    return None


def _check_cosignatures(note: str, witness_keys: Sequence[str], quorum: int | None,
                        report: VerifyReport) -> None:
    """At least ``quorum`` (None: all) of the witnesses cosigned the checkpoint."""
    try:
        keys = [WitnessKey(*parse_witness_vkey(vkey)) for vkey in witness_keys]
        wanted = len({key.name for key in keys}) if quorum is None else quorum
        report.cosigned_by = verify_cosignatures(note, keys, wanted)
    except ValueError as exc:  # a malformed key or note, too few cosignatures, a bad quorum
        report.problem(f"cosignatures: {exc}")


def verify_bundle(folder: Path, *, verifier_key: str | None = None,
                  previous_checkpoint: Path | None = None,
                  witness_keys: Sequence[str] = (),
                  witness_quorum: int | None = None) -> VerifyReport:
    """Verify a bundle offline. ``witness_keys`` (cosignature/v1 vkeys): the checkpoint must
    carry valid cosignatures of ``witness_quorum`` of them (None: of all)."""
    started = time.perf_counter()
    report = VerifyReport()
    try:
        vkey = verifier_key or (folder / "verifier-key").read_text()
        name, key = tlog.parse_verifier_key(vkey)
        note = (folder / "checkpoint").read_text()
        checkpoint = tlog.parse_checkpoint(tlog.verify_note(note, name, key))
    except OSError as exc:
        report.problem(f"bundle incomplete: {exc.strerror}: {exc.filename}")
        return report
    except tlog.NoteError as exc:
        report.problem(f"checkpoint: {exc}")
        return report
    if checkpoint.origin != name:
        report.problem(f"checkpoint: origin {checkpoint.origin!r} is not the key's log {name!r}")
    report.tree_size = checkpoint.size
    if witness_keys:
        _check_cosignatures(note, witness_keys, witness_quorum, report)
    previous: tlog.Checkpoint | None = None
    if previous_checkpoint is not None:
        try:
            previous = tlog.parse_checkpoint(tlog.verify_note(previous_checkpoint.read_text(),
                                                              name, key))
        except (OSError, tlog.NoteError) as exc:
            report.problem(f"previous checkpoint: {exc}")
        if previous is not None and previous.size > checkpoint.size:
            report.problem(f"rolled back: an earlier checkpoint committed to {previous.size} "
                           f"entries, this one only to {checkpoint.size}")
            previous = None
    try:
        meta = json.loads((folder / "export.json").read_text())
    except (OSError, ValueError):
        meta = {"filters": {}}
    entries = folder / "entries.ndjson"
    if not entries.exists():
        report.problem("bundle incomplete: entries.ndjson is missing")
        return report
    if meta.get("filters"):
        _verify_filtered(entries, checkpoint, report)
    else:
        _verify_full(entries, checkpoint, previous, report)
    report.seconds = time.perf_counter() - started
    return report


def _verify_full(entries: Path, checkpoint: tlog.Checkpoint, previous: tlog.Checkpoint | None,
                 report: VerifyReport) -> None:
    compact = tlog.CompactRange()
    expected = 0
    for index, line in _read_lines(entries, report):
        if index >= checkpoint.size:
            report.problem(f"index {index}: beyond the checkpoint's tree size {checkpoint.size} "
                           "(an appended entry the log never signed)")
            continue
        if index < expected:
            report.problem(f"index {index}: out of order or repeated after index {expected - 1} "
                           "(entries swapped or duplicated)")
            continue
        if index > expected:
            report.problem(f"index {expected}" + (f"..{index - 1}" if index - 1 > expected else "")
                           + ": missing (entries dropped)")
            report.problem("the root cannot be recomputed without every entry")
            return
        leaf = _leaf_hash_of(index, line, report)
        if leaf is None:
            return
        compact.append(leaf)
        expected += 1
        report.entries += 1
        if previous is not None and compact.size == previous.size and \
                compact.root() != previous.root:
            report.problem(f"index 0..{previous.size - 1}: the log is not an append-only "
                           f"extension of the previous checkpoint (size {previous.size})")
    if expected != checkpoint.size:
        report.problem(f"index {expected}..{checkpoint.size - 1}: missing (the checkpoint "
                       f"commits to {checkpoint.size} entries, the bundle has {expected})")
        return
    if compact.root() != checkpoint.root:
        report.problem(f"root: the entries do not hash to the signed root of size "
                       f"{checkpoint.size} (an entry was changed, swapped or replaced)")


def _verify_filtered(entries: Path, checkpoint: tlog.Checkpoint, report: VerifyReport) -> None:
    last = -1
    for index, line in _read_lines(entries, report):
        if index <= last:
            report.problem(f"index {index}: out of order or repeated")
        last = index
        leaf = _leaf_hash_of(index, line, report)
        if leaf is None:
            continue
        try:
            path = [base64.b64decode(h, validate=True) for h in line.inclusion]
            tlog.verify_inclusion(index, checkpoint.size, leaf, path, checkpoint.root)
        except (binascii.Error, ValueError, tlog.ProofError) as exc:
            report.problem(f"index {index}: inclusion proof fails ({exc})")
            continue
        report.entries += 1
