"""No citizen data, token or key material in any log line over whole stories (issue 7).

Both demo stories run with ``einmal_app.scenario`` (the same code as ``einmal scenario ...``)
against a live demo server in this process; every structlog event (captured before rendering
and before the redaction processor, so a value that is only redacted later still fails) and
every stdlib log record at INFO and above is searched for:

- every IdNr, given name and family name of the demo families;
- anything that looks like a JWT (``eyJ...``) and every bearer token handed out;
- private key material: each ``d`` of the demo and the server's JWKs, every secret key file
  (raw, hex, base64) and the operator token;
- the values the registers answered (birth dates and places of the children).

The UVO story runs the preview flow (held proof, the citizen's release, collection).
"""

import asyncio
import base64
import io
import json
import logging
import re

import pytest
from rich.console import Console
from structlog.testing import capture_logs

from einmal.logging import quiet_libraries
from einmal_app.scenario import run_scenario

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")


def _key_material(keys_dir) -> set[str]:
    found: set[str] = set()
    for path in keys_dir.glob("*.jwk.json"):
        found.add(json.loads(path.read_text())["d"])
    for path in keys_dir.glob("*.key"):
        raw = path.read_bytes()
        found |= {raw.hex(), base64.b64encode(raw).decode(),
                  base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    for path in keys_dir.glob("*.token"):
        found.add(path.read_text().strip())
    return found


@pytest.mark.parametrize("story", ["elfe", "uvo"])
def test_a_whole_scenario_logs_no_citizen_data_token_or_key(demo, live_server, story,
                                                             caplog) -> None:
    quiet_libraries()  # as `einmal serve` does (einmal/logging.py: configure_logging)
    caplog.set_level(logging.INFO)  # an operator who turns the standard library up to INFO
    console = Console(file=io.StringIO(), width=120)  # the story's output is not looked at
    with capture_logs() as events:
        ok = asyncio.run(run_scenario(story, demo.base_url, demo.credentials, console=console))
    assert ok, f"scenario {story} failed"
    assert len(events) > 20, "expected the story to be logged"
    text = repr(events) + "\n" + caplog.text

    citizens = [c for c in demo.credentials["citizens"] if c.get("family")]
    for citizen in citizens:
        assert citizen["idnr"] not in text, (story, "IdNr")
        for name in (citizen["given_names"], citizen["family_name"]):
            assert not re.search(rf"\b{re.escape(name)}\b", text), (story, "name")
        for value in (citizen.get("birth_date"), citizen.get("place_of_birth")):
            if value:
                assert str(value) not in text, (story, "register value")
    assert not _JWT.search(text), (story, "a JWT in the logs")
    secrets = _key_material(live_server.data_dir / "keys")
    secrets |= {s["private_jwk"]["d"] for s in demo.credentials["services"]}
    secrets |= {a["private_jwk"]["d"] for a in demo.credentials["auditors"]}
    secrets.add(demo.credentials["ops_token"])
    assert len(secrets) > 10
    leaked = [s[:6] for s in secrets if s and s in text]
    assert not leaked, (story, "key material", leaked)
