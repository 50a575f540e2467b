"""Rotating the broker's proof key: new proofs use the new kid; old proofs still verify."""

import subprocess
import sys

import httpx
import pytest
import jwt

from tests.e2e.conftest import assertion


def _proof(base_url: str, creds: dict) -> str:
    service = next(s for s in creds["services"]
                   if s["client_id"] == "standesamt-namensdienst-bremen")
    child = next(c for c in creds["citizens"] if c["family"] == "elfe" and c["role"] == "child")
    with httpx.Client(base_url=base_url, timeout=10) as http:
        form = {"grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion(service["client_id"], service["private_jwk"],
                                              creds["token_endpoint"])}
        token = http.post("/v1/token", data=form).json()["access_token"]
        body = {"proof_type": "birth", "subject": child["idnr"], "purpose": "namensbestimmung",
                "parameters": {"place_of_birth": child["place_of_birth"],
                               "birth_date": child["birth_date"]}}
        response = http.post("/v1/proof-requests", json=body,
                             headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return response.json()["proof"]


def test_rotation_keeps_old_proofs_verifiable(start_live_server, tmp_path) -> None:
    import json  # noqa: PLC0415

    data = tmp_path / "data"
    first = start_live_server(data_dir=data)
    creds = json.loads((data / "demo-credentials.json").read_text())
    old_proof = _proof(first.base_url, creds)
    first.stop()

    rotated = subprocess.run([sys.executable, "-m", "einmal", "keys", "rotate", "broker-proof",
                              "--data-dir", str(data)], capture_output=True, text=True,
                             check=False, timeout=30)
    assert rotated.returncode == 0, rotated.stderr
    assert "retired (still published)" in rotated.stdout

    second = start_live_server(data_dir=data)
    creds = json.loads((data / "demo-credentials.json").read_text())
    new_proof = _proof(second.base_url, creds)
    keys = {k["kid"]: k for k in httpx.get(f"{second.base_url}/.well-known/jwks.json").json()["keys"]}
    old_kid = jwt.get_unverified_header(old_proof)["kid"]
    new_kid = jwt.get_unverified_header(new_proof)["kid"]
    assert old_kid != new_kid
    assert list(keys)[0] == new_kid  # the first key signs
    for proof, kid in ((old_proof, old_kid), (new_proof, new_kid)):
        claims = jwt.decode(proof, jwt.PyJWK(keys[kid]).key, algorithms=["EdDSA"],
                            audience="standesamt-namensdienst-bremen")
        assert claims["proof_type"] == "birth"


def test_log_key_rotation_keeps_old_checkpoints_verifiable(start_live_server, tmp_path) -> None:
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from einmal import tlog  # noqa: PLC0415

    data = tmp_path / "data"
    origin = "cockpit.example/einmal-transfer-log"  # the log's name must not change with the port
    first = start_live_server(data_dir=data, log_origin=origin)
    creds = json.loads((data / "demo-credentials.json").read_text())
    _proof(first.base_url, creds)
    time.sleep(1.5)  # integrated and checkpointed
    old_note = httpx.get(f"{first.base_url}/v1/log/checkpoint").text
    first.stop()
    rotated = subprocess.run([sys.executable, "-m", "einmal", "keys", "rotate", "cockpit-log",
                              "--data-dir", str(data)], capture_output=True, text=True,
                             check=False, timeout=30)
    assert rotated.returncode == 0, rotated.stderr
    second = start_live_server(data_dir=data, log_origin=origin)
    keys = httpx.get(f"{second.base_url}/v1/log/verifier-keys").text.split()
    assert len(keys) == 2
    assert keys[0] == httpx.get(f"{second.base_url}/v1/log/verifier-key").text.strip()
    old_name, old_key = tlog.parse_verifier_key(keys[1])
    assert tlog.parse_checkpoint(tlog.verify_note(old_note, old_name, old_key)).size >= 1
    new_name, new_key = tlog.parse_verifier_key(keys[0])
    with pytest.raises(tlog.NoteError):
        tlog.verify_note(old_note, new_name, new_key)
