"""The benchmark's floor (bench/servers.py ``floor``, variants ``f`` and ``f2``; decision 0043)
moves what a proof request moves - the Standesamt query and answer of the real size, which the
broker's own parser accepts - over real HTTP, and fails loudly rather than measure failures."""

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench.servers import FLOOR_ANSWER, FLOOR_QUERY
from connectors import xpersonenstand as messages
from connectors.birth import _parse
from tests.conftest import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
BODY = {"proof_type": "birth", "subject": "12345678901", "purpose": "namensbestimmung",
        "parameters": {"place_of_birth": "04011000", "birth_date": "2025-01-01"}}


@contextmanager
def _serve(*argv: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "bench.servers", *argv, "--port",
                                 str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"bench.servers {argv[0]} ended: {log.read().decode()[-2000:]}")
            try:
                return httpx.get(f"{base}/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout=30, what=f"bench.servers {argv[0]} ready")
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_the_floor_exchanges_a_real_standesamt_query_and_answer() -> None:
    data, concerned = _parse(FLOOR_ANSWER, "12345678901", "04011000", "2025-01-01")
    assert data["child_family_name"] == "Beispiel"
    assert len(data["parents"]) == 2
    assert len(concerned) == 3  # the child and both parents: a full-size answer
    query = messages.parse_xml(FLOOR_QUERY)
    assert query.tag == messages.tag(messages.REQUEST)


@pytest.mark.parametrize("shape", ["f2", "f"])
def test_the_floor_relays_over_http(shape: str) -> None:
    if shape == "f2":
        with _serve("floor") as base:
            answer = httpx.post(f"{base}/v1/proof-requests", json=BODY, timeout=10)
    else:
        with _serve("floor-register") as register, _serve(
                "floor", "--register-url",
                f"{register}/registers/standesamt/04011000/geburt") as base:
            answer = httpx.post(f"{base}/v1/proof-requests", json=BODY, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {**BODY, "consent_id": None}


def test_the_floor_fails_when_its_register_does_not_answer() -> None:
    refused = f"http://127.0.0.1:{free_port()}/registers/standesamt/04011000/geburt"
    with _serve("floor", "--register-url", refused) as base:
        answer = httpx.post(f"{base}/v1/proof-requests", content=json.dumps(BODY),
                            headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 500
