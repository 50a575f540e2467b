"""The service client is a package of its own: a fresh virtual environment holding only
``client/`` and its declared dependencies has none of the server's, and works against a running
demo server (fetch and verify a proof, verify its log inclusion and an audit bundle).

Needs pip to reach a package index (the machine's pip configuration; PyPI otherwise). Nothing is
cached outside ``tmp_path``.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("online_service.py")
SERVER_ONLY = ("litestar", "sqlalchemy", "jinja2", "sqlmodel", "einmal", "einmal_app", "broker",
               "cockpit", "connectors", "policies", "uvicorn")
CLIENT_NEEDS = ("einmal_client", "httpx", "jwt", "msgspec", "cryptography")
_FIND = ("import importlib.util, json, sys\n"
         "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))")


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(name="client_venv", scope="module")
def fx_client_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv (no system site packages) with only ``client/`` installed: (python, env)."""
    root = tmp_path_factory.mktemp("client-venv")
    # a copy: pip builds in the source tree, and the repo's client/ must stay as it is
    source = root / "client"
    shutil.copytree(REPO / "client", source,
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    (root / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}}
    env.update(TMPDIR=str(root / "tmp"), PIP_NO_CACHE_DIR="1", PYTHONNOUSERSITE="1")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=env, timeout=120)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
          "--no-cache-dir", str(source)], cwd=root, env=env, timeout=300)
    return python, env


def test_the_client_venv_holds_none_of_the_server(client_venv: tuple[Path, dict[str, str]],
                                                  tmp_path: Path) -> None:
    python, env = client_venv
    found = json.loads(_run([str(python), "-c", _FIND, *SERVER_ONLY, *CLIENT_NEEDS],
                            cwd=tmp_path, env=env, timeout=60).stdout)
    assert [m for m in SERVER_ONLY if found[m]] == []
    assert [m for m in CLIENT_NEEDS if not found[m]] == []
    no_site = _run([str(python), "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                   cwd=tmp_path, env=env, timeout=60)
    assert no_site.stdout.strip() == "True"


def test_an_online_service_uses_the_client_against_a_running_server(
        client_venv: tuple[Path, dict[str, str]], live_server: LiveServer,
        tmp_path: Path) -> None:
    python, env = client_venv
    script = tmp_path / SCRIPT.name  # run from tmp_path: nothing of the repo on sys.path
    shutil.copy(SCRIPT, script)
    done = _run([str(python), str(script), live_server.base_url, str(tmp_path / "bundle")],
                cwd=tmp_path, env=env, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    proofs = result["proofs"]
    assert len(proofs) == 3
    assert len({uuid.UUID(p["transfer_id"]) for p in proofs}) == 3
    for proof in proofs:
        assert (proof["proof_type"], proof["purpose"]) == ("birth", "namensbestimmung")
        assert proof["signature"] == proof["inclusion"] == "verified" and proof["fields"]
        assert 0 <= proof["log_index"] < proof["tree_size"]
    assert sorted(p["log_index"] for p in proofs) == [0, 1, 2]  # a fresh server's log
    bundle = result["bundle"]
    assert bundle == {"ok": True, "entries": 3, "tree_size": 3, "lines": 3, "problems": []}
    # the server knows the transfers the client verified, at the same places
    for proof in proofs:
        entry = httpx.get(f"{live_server.base_url}/v1/log/entries/{proof['transfer_id']}").json()
        assert (entry["index"], entry["integrated"]) == (proof["log_index"], True)
