"""The tamper-evident transfer log over real HTTP: checkpoints, proofs, export, offline verify."""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from einmal_app.cli import main
from einmal_client import tlog
from einmal_client.audit import auditor_token, export_bundle, verify_bundle
from tests.e2e.conftest import bearer
from tests.e2e.helpers import ELTERNGELD, NAMENSDIENST, birth_request, problem


def _fill(demo, count: int) -> list[str]:
    ids = [demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
           .json()["transfer_id"] for _ in range(count)]
    ids.append(problem(demo.request_proof(ELTERNGELD, birth_request(demo)), 403,
                       "consent-required")["transfer_id"])
    return ids


def _wait_for_size(demo, size: int, timeout: float = 15) -> tuple[tlog.Checkpoint, str]:
    vkey = demo.http.get("/v1/log/verifier-key").text
    name, key = tlog.parse_verifier_key(vkey)
    deadline = time.monotonic() + timeout
    while True:
        note = demo.http.get("/v1/log/checkpoint").text
        checkpoint = tlog.parse_checkpoint(tlog.verify_note(note, name, key))
        if checkpoint.size >= size or time.monotonic() > deadline:
            return checkpoint, note
        time.sleep(0.1)


@pytest.fixture(name="filled")
def fx_filled(demo):
    ids = _fill(demo, 6)
    checkpoint, note = _wait_for_size(demo, len(ids))
    assert checkpoint.size == len(ids)
    return demo, ids, checkpoint, note


def _auditor(demo) -> dict:
    return demo.credentials["auditors"][0]["private_jwk"]


class TestLogEndpoints:
    def test_checkpoint_is_a_signed_c2sp_note(self, filled) -> None:
        _, _, checkpoint, note = filled
        lines = note.split("\n")
        assert lines[0] == checkpoint.origin
        assert lines[3] == ""
        assert lines[4].startswith(f"\u2014 {checkpoint.origin} ")

    def test_every_entry_has_an_inclusion_proof(self, filled) -> None:
        demo, _, checkpoint, _ = filled
        for index in range(checkpoint.size):
            proof = demo.http.get("/v1/log/proof/inclusion",
                                  params={"index": index, "tree_size": checkpoint.size}).json()
            assert proof["index"] == index
            tlog.verify_inclusion(index, checkpoint.size, base64.b64decode(proof["leaf_hash"]),
                                  [base64.b64decode(h) for h in proof["hashes"]], checkpoint.root)

    def test_a_service_finds_its_transfer_in_the_log(self, filled) -> None:
        demo, ids, checkpoint, _ = filled
        entry = demo.http.get(f"/v1/log/entries/{ids[0]}").json()
        assert entry["integrated"] is True
        proof = demo.http.get("/v1/log/proof/inclusion",
                              params={"index": entry["index"], "tree_size": checkpoint.size}).json()
        assert proof["leaf_hash"] == entry["leaf_hash"]
        tlog.verify_inclusion(entry["index"], checkpoint.size,
                              base64.b64decode(entry["leaf_hash"]),
                              [base64.b64decode(h) for h in proof["hashes"]], checkpoint.root)
        problem(demo.http.get("/v1/log/entries/00000000-0000-7000-8000-000000000000"), 404,
                "not-found")

    def test_consistency_between_checkpoints(self, filled) -> None:
        demo, _, old, _ = filled
        _fill(demo, 3)
        new, _ = _wait_for_size(demo, old.size + 4)
        proof = demo.http.get("/v1/log/proof/consistency",
                              params={"from": old.size, "to": new.size}).json()
        assert (proof["from"], proof["to"]) == (old.size, new.size)
        tlog.verify_consistency(old.size, new.size, old.root, new.root,
                                [base64.b64decode(h) for h in proof["hashes"]])

    @pytest.mark.parametrize(("path", "params", "status"), [
        ("/v1/log/proof/inclusion", {"index": 0, "tree_size": 10_000}, 404),
        ("/v1/log/proof/inclusion", {"index": 7, "tree_size": 7}, 400),
        ("/v1/log/proof/inclusion", {"index": -1, "tree_size": 3}, 400),
        ("/v1/log/proof/inclusion", {"index": "x", "tree_size": 3}, 400),
        ("/v1/log/proof/consistency", {"from": 0, "to": 3}, 400),
        ("/v1/log/proof/consistency", {"from": 5, "to": 3}, 400),
        ("/v1/log/proof/consistency", {"from": 1, "to": 10_000}, 404),
    ])
    def test_out_of_range_is_a_4xx_problem(self, filled, path, params, status) -> None:
        demo = filled[0]
        response = demo.http.get(path, params=params)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")

    def test_citizen_view_shows_the_log_index(self, filled) -> None:
        demo, ids, _, _ = filled
        child = demo.citizen("elfe", "child")
        log = demo.transfers(child["idnr"], wait_for=set(ids))
        mine = [e for e in log if e["id"] in ids]
        assert all(e["included"] and isinstance(e["log_index"], int) for e in mine)
        assert len({e["log_index"] for e in mine}) == len(mine)

    def test_export_needs_an_auditor(self, filled) -> None:
        demo = filled[0]
        problem(demo.http.get("/v1/audit/export"), 401, "unauthenticated")
        anna = demo.citizen("elfe", "parent")
        problem(demo.http.get("/v1/audit/export",
                              headers=bearer(demo.citizen_token(anna["idnr"]))),
                401, "unauthenticated")
        problem(demo.http.get("/v1/audit/export",
                              headers=bearer(demo.service_token(NAMENSDIENST))),
                401, "unauthenticated")
        ok = demo.http.get("/v1/audit/export", headers=bearer(auditor_token(_auditor(demo))))
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("application/x-ndjson")

    def test_export_lines_carry_no_idnr(self, filled) -> None:
        demo = filled[0]
        body = demo.http.get("/v1/audit/export",
                             headers=bearer(auditor_token(_auditor(demo)))).text
        child = demo.citizen("elfe", "child")
        assert child["idnr"] not in body
        assert child["idnr"] not in base64.b64decode(
            json.loads(body.splitlines()[0])["leaf"]).decode()


@pytest.fixture(name="bundle")
def fx_bundle(filled, tmp_path: Path):
    demo, _, checkpoint, _ = filled
    out = tmp_path / "bundle"
    result = export_bundle(demo.base_url, out, _auditor(demo), {})
    assert result["lines"] == checkpoint.size
    return demo, out


def _lines(bundle: Path) -> list[str]:
    return (bundle / "entries.ndjson").read_text().splitlines()


def _write(bundle: Path, lines: list[str]) -> None:
    (bundle / "entries.ndjson").write_text("".join(line + "\n" for line in lines))


def _flip_leaf_byte(line: str) -> str:
    record = json.loads(line)
    leaf = bytearray(base64.b64decode(record["leaf"]))
    leaf[len(leaf) // 2] ^= 0x01
    record["leaf"] = base64.b64encode(bytes(leaf)).decode()
    return json.dumps(record)


class TestOfflineVerification:
    def test_an_untouched_bundle_verifies(self, bundle) -> None:
        _, out = bundle
        report = verify_bundle(out)
        assert report.ok, report.problems
        assert report.entries == report.tree_size == 7

    def test_the_cli_says_ok_in_one_line(self, bundle) -> None:
        _, out = bundle
        result = CliRunner().invoke(main, ["audit", "verify", str(out)])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("OK: 7 entries verified")

    @pytest.mark.parametrize(("tamper", "needle"), [
        (lambda lines: [lines[0], _flip_leaf_byte(lines[1]), *lines[2:]], "index 1"),
        (lambda lines: [*lines[:2], *lines[3:]], "index 2: missing"),
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], "index 1: missing"),
        (lambda lines: [*lines, json.dumps({**json.loads(lines[-1]), "index": 7})],
         "index 7: beyond the checkpoint"),
    ], ids=["flipped-byte", "dropped-entry", "swapped-entries", "appended-forged-entry"])
    def test_tampering_is_caught(self, bundle, tamper, needle) -> None:
        _, out = bundle
        _write(out, tamper(_lines(out)))
        result = CliRunner().invoke(main, ["audit", "verify", str(out)])
        assert result.exit_code == 1
        assert needle in result.output

    def test_swapped_contents_keep_indexes_but_break_the_root(self, bundle) -> None:
        _, out = bundle
        lines = [json.loads(line) for line in _lines(out)]
        lines[1]["leaf"], lines[2]["leaf"] = lines[2]["leaf"], lines[1]["leaf"]
        lines[1]["entry"], lines[2]["entry"] = lines[2]["entry"], lines[1]["entry"]
        _write(out, [json.dumps(line) for line in lines])
        report = verify_bundle(out)
        assert any(p.startswith("root:") for p in report.problems)

    def test_checkpoint_signed_by_another_key(self, bundle) -> None:
        _, out = bundle
        genuine_key = (out / "verifier-key").read_text()
        checkpoint = tlog.parse_checkpoint((out / "checkpoint").read_text().split("\n\n")[0] + "\n")
        forged = tlog.sign_note(tlog.format_checkpoint(checkpoint), checkpoint.origin,
                                Ed25519PrivateKey.generate())
        (out / "checkpoint").write_text(forged)
        report = verify_bundle(out, verifier_key=genuine_key)
        assert report.problems and report.problems[0].startswith("checkpoint:")

    def test_rolled_back_log(self, bundle, tmp_path: Path) -> None:
        demo, out = bundle
        _fill(demo, 2)
        _wait_for_size(demo, 10)
        later = tmp_path / "later-checkpoint"
        later.write_text(demo.http.get("/v1/log/checkpoint").text)
        report = verify_bundle(out, previous_checkpoint=later)
        assert any(p.startswith("rolled back") for p in report.problems)

    def test_a_newer_export_extends_the_previous_checkpoint(self, bundle, tmp_path: Path) -> None:
        demo, out = bundle
        _fill(demo, 2)
        _wait_for_size(demo, 10)
        newer = tmp_path / "newer"
        export_bundle(demo.base_url, newer, _auditor(demo), {})
        report = verify_bundle(newer, previous_checkpoint=out / "checkpoint")
        assert report.ok, report.problems

    def test_interrupted_export_resumes(self, bundle, tmp_path: Path) -> None:
        demo, out = bundle
        resumed = tmp_path / "resumed"
        shutil.copytree(out, resumed)
        data = (resumed / "entries.ndjson").read_bytes()
        cut = data.index(b"\n", len(data) // 2) + 10  # a torn line in the middle
        (resumed / "entries.ndjson").write_bytes(data[:cut])
        (resumed / "COMPLETE").unlink()
        result = export_bundle(demo.base_url, resumed, _auditor(demo), {})
        assert result["resumed_after"] >= 0
        assert (resumed / "entries.ndjson").read_bytes() == data
        assert verify_bundle(resumed).ok


class TestFilteredExport:
    def test_a_service_filter_verifies_by_inclusion_proofs(self, filled, tmp_path: Path) -> None:
        demo = filled[0]
        out = tmp_path / "filtered"
        result = export_bundle(demo.base_url, out, _auditor(demo), {"service": ELTERNGELD})
        assert result["lines"] == 1  # the one refusal
        report = verify_bundle(out)
        assert report.ok, report.problems
        lines = _lines(out)
        _write(out, [_flip_leaf_byte(lines[0])])
        assert any("inclusion proof fails" in p for p in verify_bundle(out).problems)


class TestShredding:
    def test_shredded_entries_still_verify(self, filled, live_server, tmp_path: Path) -> None:
        demo, ids, checkpoint, _ = filled
        cockpit = live_server.component("cockpit")
        future = datetime.now(UTC) + timedelta(days=1)
        count = asyncio.run_coroutine_threadsafe(cockpit.log.shred(future),
                                                 live_server.loop).result(10)
        assert count == checkpoint.size
        out = tmp_path / "after-shred"
        export_bundle(demo.base_url, out, _auditor(demo), {})
        lines = [json.loads(line) for line in _lines(out)]
        assert all("leaf" not in line and line["leaf_hash"] for line in lines)
        assert verify_bundle(out).ok
        proof = demo.http.get("/v1/log/proof/inclusion",
                              params={"index": 0, "tree_size": checkpoint.size}).json()
        tlog.verify_inclusion(0, checkpoint.size, base64.b64decode(proof["leaf_hash"]),
                              [base64.b64decode(h) for h in proof["hashes"]], checkpoint.root)
        child = demo.citizen("elfe", "child")
        assert not set(ids) & {e["id"] for e in demo.transfers(child["idnr"])}

    def test_the_shred_command(self, filled, live_server) -> None:
        _, _, checkpoint, _ = filled
        env = dict(os.environ)
        if live_server.settings.database_url:
            env["EINMAL_DATABASE_URL"] = live_server.settings.database_url
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        result = subprocess.run(
            [sys.executable, "-m", "einmal_app", "log", "shred", "--before", tomorrow,
             "--data-dir", str(live_server.data_dir), "--yes"],
            capture_output=True, text=True, env=env, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert f"shredded {checkpoint.size} entries" in result.stdout


class TestStoredViewsAreSealed:
    def test_the_citizen_view_is_not_stored_in_the_clear(self, filled, live_server) -> None:
        demo = filled[0]
        engine = live_server.component("cockpit").engine

        async def bodies() -> list[bytes]:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT body FROM cockpit_entry"))
                return [bytes(row[0]) for row in rows]

        stored = asyncio.run_coroutine_threadsafe(bodies(), live_server.loop).result(10)
        assert stored
        assert not any(b"amensbestimmung" in body for body in stored)
        child = demo.citizen("elfe", "child")
        assert demo.transfers(child["idnr"])  # and yet the citizen reads them
