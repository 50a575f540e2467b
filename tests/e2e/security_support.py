"""Shared by the security tests: one demo server per test module, and the actors' credentials.

Security tests make many small requests; a fresh server per test would cost more than the
requests. Tests in one module share the server, so they never assume an empty log.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from einmal.keys import load_or_create_signing_key
from einmal.settings import load_settings
from einmal.tokens import TokenIssuer
from einmal_client.audit import auditor_token
from tests.conftest import TEST_DATABASE_URL, LiveServer, free_port, start_server
from tests.e2e.conftest import Demo, bearer
from tests.e2e.helpers import NAMENSDIENST, birth_request

CHANNEL_AUDIENCE = "einmal-cockpit-ingest"


def module_server(data_dir: Path) -> Iterator[tuple[LiveServer, Demo]]:
    settings = load_settings({}, data_dir=data_dir, demo=True, simulator_families=60,
                             delivery_interval_s=0.1, database_url=TEST_DATABASE_URL,
                             port=free_port())
    live = start_server(settings)
    try:
        credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
        with httpx.Client(base_url=live.base_url, timeout=20) as http:
            yield live, Demo(base_url=live.base_url, credentials=credentials, http=http)
    finally:
        live.stop()


def channel_token(live: LiveServer) -> str:
    key = load_or_create_signing_key(live.settings.keys_dir, "broker-channel")
    issuer = TokenIssuer(key=key, issuer=live.settings.broker_base_url,
                         audience=CHANNEL_AUDIENCE, ttl_s=60)
    return issuer.issue("broker")


def auditor(demo: Demo) -> str:
    return auditor_token(demo.credentials["auditors"][0]["private_jwk"])


@dataclass
class Recorded:
    """What the broker recorded about one subject, seen through the cockpit log."""

    demo: Demo
    idnr: str
    before: set[str]

    def nothing_new(self) -> None:
        """Ordered delivery: once a fresh sentinel transfer is in the log, any record made
        before it would be too. Only the sentinel may be new."""
        child = self.demo.citizen("elfe", "child")
        assert self.idnr == child["idnr"], "the sentinel is a transfer about the elfe child"
        sentinel = self.demo.request_proof(NAMENSDIENST, birth_request(self.demo,
                                                                       "namensbestimmung"))
        assert sentinel.status_code == 200, sentinel.text
        sentinel_id = sentinel.json()["transfer_id"]
        items = self.demo.transfers(self.idnr, wait_for={sentinel_id})
        assert {i["id"] for i in items} - self.before == {sentinel_id}, [
            (i["id"], i["outcome"], i["error_type"]) for i in items if i["id"] not in self.before]


def recorded(demo: Demo, idnr: str) -> Recorded:
    return Recorded(demo=demo, idnr=idnr, before={i["id"] for i in demo.transfers(idnr)})


def wait_for_log(demo: Demo, size: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        text = demo.http.get("/v1/log/checkpoint").text
        if int(text.splitlines()[1]) >= size or time.monotonic() > deadline:
            return
        time.sleep(0.05)


__all__ = ["auditor", "bearer", "channel_token", "module_server", "recorded", "wait_for_log"]
