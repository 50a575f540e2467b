"""An online service that has nothing but ``einmal_client`` installed (run by test_fresh_venv in
a fresh virtual environment, never imported by the suite).

Against a running demo server it fetches three proofs (each verified against the broker's JWKS
by the client), finds each transfer in the transfer log and verifies its inclusion in the signed
checkpoint, then exports an audit bundle and verifies it offline. It prints one JSON line.

    python online_service.py <base url> <bundle folder>
"""

import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from einmal_client import tlog
from einmal_client.audit import export_bundle, verify_bundle
from einmal_client.client import ServiceClient

NAMENSDIENST = "standesamt-namensdienst-bremen"
PROOFS = 3  # a tree of three: the inclusion paths are not empty
LOG_WAIT_S = 30.0


def log_entry(cockpit: httpx.Client, transfer_id: str) -> dict[str, Any]:
    """The transfer's place in the log, once delivered and integrated (both asynchronous)."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        response = cockpit.get(f"/v1/log/entries/{transfer_id}")
        if response.status_code == 200 and response.json()["integrated"]:
            return dict(response.json())
        if time.monotonic() > deadline:
            msg = f"transfer {transfer_id} not integrated after {LOG_WAIT_S} s: {response.text}"
            raise SystemExit(msg)
        time.sleep(0.1)


def check_inclusion(cockpit: httpx.Client, verifier_key: str, transfer_id: str,
                    ) -> tuple[int, int]:
    """Verify the transfer's inclusion in the latest signed checkpoint: (index, tree size)."""
    name, key = tlog.parse_verifier_key(verifier_key)
    entry = log_entry(cockpit, transfer_id)
    note = cockpit.get("/v1/log/checkpoint").raise_for_status().text
    checkpoint = tlog.parse_checkpoint(tlog.verify_note(note, name, key))
    proof = cockpit.get("/v1/log/proof/inclusion", params={
        "index": entry["index"], "tree_size": checkpoint.size}).raise_for_status().json()
    leaf_hash = base64.b64decode(entry["leaf_hash"])
    tlog.verify_inclusion(entry["index"], checkpoint.size, leaf_hash,
                          [base64.b64decode(h) for h in proof["hashes"]], checkpoint.root)
    return entry["index"], checkpoint.size


async def main(base_url: str, bundle: Path) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=20) as http:
        credentials = (await http.get(f"{base_url}/demo/credentials")).raise_for_status().json()
        entry = next(s for s in credentials["services"] if s["client_id"] == NAMENSDIENST)
        child = next(c for c in credentials["citizens"]
                     if c["family"] == "elfe" and c["role"] == "child")
        async with ServiceClient(credentials["broker_url"], NAMENSDIENST, entry["private_jwk"],
                                 http=http, token_endpoint=credentials["token_endpoint"],
                                 ) as service:
            proofs = [await service.fetch_proof(
                "birth", child["idnr"], "namensbestimmung",
                parameters={"place_of_birth": child["place_of_birth"],
                            "birth_date": child["birth_date"]}) for _ in range(PROOFS)]
    cockpit_url = credentials["cockpit_url"]
    with httpx.Client(base_url=cockpit_url, timeout=20) as cockpit:
        verifier_key = cockpit.get("/v1/log/verifier-key").raise_for_status().text
        included = [check_inclusion(cockpit, verifier_key, p.transfer_id) for p in proofs]
        auditor = credentials["auditors"][0]["private_jwk"]
        exported = export_bundle(cockpit_url, bundle, auditor, {}, http=cockpit)
    report = verify_bundle(bundle, verifier_key=verifier_key)
    return {"proofs": [{"transfer_id": p.transfer_id, "proof_type": p.proof_type,
                        "purpose": p.purpose, "register_id": p.register_id,
                        "fields": sorted(p.data), "signature": "verified",
                        "log_index": index, "tree_size": size, "inclusion": "verified"}
                       for p, (index, size) in zip(proofs, included, strict=True)],
            "bundle": {"ok": report.ok, "entries": report.entries,
                       "tree_size": report.tree_size, "lines": exported["lines"],
                       "problems": report.problems}}


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1].rstrip("/"), Path(sys.argv[2])))
    sys.stdout.write(json.dumps(result) + "\n")
