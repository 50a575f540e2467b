"""Rotating the broker's proof key: new proofs use the new kid; old proofs still verify."""

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)
from sqlalchemy import select

from cockpit.http import ChannelAuth
from cockpit.service import CockpitService
from cockpit.tables import CitizenKeyRow
from cockpit.vault import CitizenVault, VaultError, rewrap_citizen_keys
from einmal.keys import (
    ROLLOVER_S,
    accepted_public_keys,
    load_or_create_secret,
    load_or_create_signing_key,
    rotate_signing_key,
)
from einmal.problems import ProblemError
from einmal.store import create_engine
from einmal.tokens import TokenIssuer
from einmal_client import tlog
from tests.conftest import TEST_DATABASE_URL, free_port
from tests.e2e.conftest import assertion
from tests.e2e.helpers import birth_request
from tests.waiting import wait_until


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
    data = tmp_path / "data"
    first = start_live_server(data_dir=data)
    creds = json.loads((data / "demo-credentials.json").read_text())
    old_proof = _proof(first.base_url, creds)
    first.stop()

    rotated = subprocess.run([sys.executable, "-m", "einmal_app", "keys", "rotate", "broker-proof",
                              "--data-dir", str(data)], capture_output=True, text=True,
                             check=False, timeout=30)
    assert rotated.returncode == 0, rotated.stderr
    assert "retired (still published)" in rotated.stdout

    second = start_live_server(data_dir=data)
    creds = json.loads((data / "demo-credentials.json").read_text())
    new_proof = _proof(second.base_url, creds)
    jwks = httpx.get(f"{second.base_url}/.well-known/jwks.json").json()
    keys = {k["kid"]: k for k in jwks["keys"]}
    old_kid = jwt.get_unverified_header(old_proof)["kid"]
    new_kid = jwt.get_unverified_header(new_proof)["kid"]
    assert old_kid != new_kid
    assert next(iter(keys)) == new_kid  # the first key signs
    for proof, kid in ((old_proof, old_kid), (new_proof, new_kid)):
        claims = jwt.decode(proof, jwt.PyJWK(keys[kid]).key, algorithms=["EdDSA"],
                            audience="standesamt-namensdienst-bremen")
        assert claims["proof_type"] == "birth"


def test_log_key_rotation_keeps_old_checkpoints_verifiable(start_live_server, tmp_path) -> None:
    data = tmp_path / "data"
    origin = "cockpit.example/einmal-transfer-log"  # the log's name must not change with the port
    first = start_live_server(data_dir=data, log_origin=origin)
    creds = json.loads((data / "demo-credentials.json").read_text())
    _proof(first.base_url, creds)
    first_name, first_key = tlog.parse_verifier_key(
        httpx.get(f"{first.base_url}/v1/log/verifier-key").text)

    def checkpointed() -> str | None:  # the proof's entry integrated and checkpointed (async)
        note = httpx.get(f"{first.base_url}/v1/log/checkpoint").text
        size = tlog.parse_checkpoint(tlog.verify_note(note, first_name, first_key)).size
        return note if size >= 1 else None

    old_note = wait_until(checkpointed, what="a checkpoint holding the proof's entry")
    first.stop()
    rotated = subprocess.run([sys.executable, "-m", "einmal_app", "keys", "rotate", "cockpit-log",
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


# -- short-lived token keys: broker-token (access tokens), broker-channel (broker -> cockpit)

def _rotate(data, name: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "einmal_app", "keys", "rotate", name,
                           "--data-dir", str(data)], capture_output=True, text=True,
                          check=False, timeout=120, env={**os.environ, **(env or {})})


def test_access_token_key_rotation_accepts_old_tokens_for_their_lifetime(
        start_live_server, tmp_path) -> None:
    data = tmp_path / "data"
    port = free_port()  # the same issuer (base URL) before and after the restart
    first = start_live_server(data_dir=data, port=port)
    creds = json.loads((data / "demo-credentials.json").read_text())
    service = next(s for s in creds["services"]
                   if s["client_id"] == "standesamt-namensdienst-bremen")
    form = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(service["client_id"], service["private_jwk"],
                                          creds["token_endpoint"])}
    old_token = httpx.post(f"{first.base_url}/v1/token", data=form).json()["access_token"]
    first.stop()

    rotated = _rotate(data, "broker-token")
    assert rotated.returncode == 0, rotated.stderr
    assert "restart every process" in rotated.stdout

    second = start_live_server(data_dir=data, port=port)
    form["client_assertion"] = assertion(service["client_id"], service["private_jwk"],
                                         creds["token_endpoint"])
    new_token = httpx.post(f"{second.base_url}/v1/token", data=form).json()["access_token"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert old_kid != jwt.get_unverified_header(new_token)["kid"]

    class Demo:  # birth_request reads the demo citizens
        credentials = creds

        @staticmethod
        def citizen(family, role, index=0):
            return [c for c in creds["citizens"] if c["family"] == family
                    and c["role"] == role][index]

    for token in (old_token, new_token):
        answer = httpx.post(f"{second.base_url}/v1/proof-requests",
                            json=birth_request(Demo, "namensbestimmung"),
                            headers={"authorization": f"Bearer {token}"}, timeout=20)
        assert answer.status_code == 200, answer.text
    # ... and once the retired key's last token could have expired, it is dropped
    service_tokens = second.component("broker").api.dependencies["service_tokens"]
    verifier = service_tokens.dependency()
    assert verifier.not_after[old_kid] <= time.time() + ROLLOVER_S + 300
    verifier.not_after[old_kid] = time.time() - 1  # as if that time had come
    verifier._cache.clear()
    with pytest.raises(ProblemError):
        verifier.verify(old_token)
    assert verifier.verify(new_token)["sub"] == service["client_id"]


def test_retired_token_keys_are_left_out_once_their_tokens_expired(tmp_path) -> None:
    old = load_or_create_signing_key(tmp_path, "broker-token")
    _, new_kid = rotate_signing_key(tmp_path, "broker-token")
    keys, not_after = accepted_public_keys(tmp_path, "broker-token", lifetime_s=300)
    assert set(keys) == {old.kid, new_kid}
    assert set(not_after) == {old.kid}
    assert not_after[old.kid] <= time.time() + ROLLOVER_S + 300
    retired = tmp_path / f"broker-token.retired.{old.kid}.json"
    jwk = json.loads(retired.read_text())
    jwk["retired_at"] = int(time.time()) - ROLLOVER_S - 301
    retired.write_text(json.dumps(jwk))
    keys, not_after = accepted_public_keys(tmp_path, "broker-token", lifetime_s=300)
    assert set(keys) == {new_kid}
    assert not not_after


def test_channel_key_rotation_is_followed_without_a_restart(tmp_path) -> None:
    def request(key) -> SimpleNamespace:
        token = TokenIssuer(key=key, issuer="https://broker", audience="ingest",
                            ttl_s=60).issue("broker")
        return SimpleNamespace(headers={"authorization": f"Bearer {token}"})

    old = load_or_create_signing_key(tmp_path, "broker-channel")
    auth = ChannelAuth(keys_file=tmp_path / "broker-channel.public.json",
                       issuer="https://broker", audience="ingest")
    auth.check(request(old))
    rotate_signing_key(tmp_path, "broker-channel")
    new = load_or_create_signing_key(tmp_path, "broker-channel")
    auth.check(request(new))   # the cockpit re-read the public key file
    auth.check(request(old))   # the retired key: still within its tokens' lifetime
    stranger = SimpleNamespace(kid="x", private_key=__import__(
        "cryptography.hazmat.primitives.asymmetric.ed25519",
        fromlist=["Ed25519PrivateKey"]).Ed25519PrivateKey.generate())
    with pytest.raises(ProblemError):
        auth.check(request(stranger))


# -- the cockpit master key: every citizen key is re-wrapped

def test_master_key_rotation_rewraps_every_citizen_key(start_live_server, tmp_path) -> None:
    data = tmp_path / "data"
    first = start_live_server(data_dir=data)
    creds = json.loads((data / "demo-credentials.json").read_text())
    _proof(first.base_url, creds)
    child = next(c for c in creds["citizens"] if c["family"] == "elfe" and c["role"] == "child")
    settings = first.settings
    keys_dir = settings.keys_dir
    old_master = (keys_dir / "cockpit-master.key").read_bytes()

    async def transfers(master: bytes) -> list:
        engine = create_engine(settings.database_url_for("cockpit"))
        try:
            service = CockpitService(engine=engine, vault=CitizenVault(master),
                                     pseudonym_key=load_or_create_secret(keys_dir,
                                                                         "cockpit-pseudonym"))
            return (await service.transfers_of(child["idnr"]))["items"]
        finally:
            await engine.dispose()

    async def wrapped_keys() -> list[bytes]:
        engine = create_engine(settings.database_url_for("cockpit"))
        try:
            async with engine.connect() as conn:
                table = CitizenKeyRow.__table__
                return list((await conn.execute(select(table.c.wrapped_key))).scalars())
        finally:
            await engine.dispose()

    def settled(views: list) -> bool:  # delivered and integrated into the log (both async)
        return bool(views) and all(v.included for v in views)

    deadline = time.monotonic() + 30
    while not settled(asyncio.run(transfers(old_master))) and time.monotonic() < deadline:
        time.sleep(0.2)
    before = asyncio.run(transfers(old_master))
    assert settled(before)
    assert before
    first.stop()

    env = {"EINMAL_DATABASE_URL": TEST_DATABASE_URL} if TEST_DATABASE_URL else {}
    rotated = _rotate(data, "cockpit-master", env)
    assert rotated.returncode == 0, rotated.stderr
    assert "citizen keys re-wrapped" in rotated.stdout
    new_master = (keys_dir / "cockpit-master.key").read_bytes()
    assert new_master != old_master
    assert not (keys_dir / "cockpit-master.next.key").exists()
    assert (keys_dir / "cockpit-master.key").stat().st_mode & 0o777 == 0o600
    assert keys_dir.stat().st_mode & 0o777 == 0o700

    rows = asyncio.run(wrapped_keys())
    assert rows
    for wrapped in rows:  # the old master key opens nothing any more
        with pytest.raises(InvalidUnwrap):
            aes_key_unwrap(old_master, wrapped)
        assert len(aes_key_unwrap(new_master, wrapped)) == 32
    assert asyncio.run(transfers(new_master)) == before  # the views stay readable

    again = _rotate(data, "cockpit-master", env)  # a second rotation works the same way
    assert again.returncode == 0, again.stderr
    assert asyncio.run(transfers((keys_dir / "cockpit-master.key").read_bytes())) == before


async def test_an_interrupted_rewrap_resumes(tmp_path) -> None:
    table = CitizenKeyRow.__table__
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'vault.db'}")
    old, new = os.urandom(32), os.urandom(32)
    citizen_keys = {f"ref-{i:03d}": os.urandom(32) for i in range(25)}
    async with engine.begin() as conn:
        await conn.run_sync(table.create)
        await conn.execute(table.insert(), [
            {"citizen_ref": ref, "wrapped_key": aes_key_wrap(old, key),
             "created_at": datetime.now(UTC)} for ref, key in citizen_keys.items()])

    class Interrupted(Exception):
        pass

    seen: list[int] = []

    def stop_after_two_batches(done: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        await rewrap_citizen_keys(engine, old, new, batch=10, progress=stop_after_two_batches)
    rewrapped, already = await rewrap_citizen_keys(engine, old, new, batch=10)
    assert (rewrapped, already) == (5, 20)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table.c.citizen_ref, table.c.wrapped_key))).all()
    assert {ref: aes_key_unwrap(new, wrapped) for ref, wrapped in rows} == citizen_keys
    with pytest.raises(VaultError):  # a third, unknown master: refused, nothing changed
        await rewrap_citizen_keys(engine, os.urandom(32), os.urandom(32))
    await engine.dispose()


def test_master_key_rotation_without_a_store_changes_nothing(tmp_path) -> None:
    keys = tmp_path / "keys"
    before = load_or_create_secret(keys, "cockpit-master")
    empty_store = f"sqlite:///{tmp_path / 'empty.db'}"  # no cockpit tables
    result = _rotate(tmp_path, "cockpit-master", {"EINMAL_DATABASE_URL": empty_store})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "nothing changed" in result.stderr
    assert (keys / "cockpit-master.key").read_bytes() == before
    assert not (keys / "cockpit-master.next.key").exists()
