"""Independent OpenID providers for the login tests (issue 13), and a cockpit configured for one.

- ``MockIdp``: ``oidc-provider-mock`` (PyPI; a standard provider built on authlib) as a real,
  separate process through its own CLI. It signs RS256 id_tokens without ``kid`` and hands out
  opaque access tokens. Started with ``--require-registration``: the cockpit registers as a
  client (RFC 7591) and the provider checks its client authentication for real.
- ``ScriptedIdp``: the unit tests' ``FakeIdp`` served over real HTTP on loopback, for the
  answers no real provider gives on purpose (garbage, foreign audiences, wrong nonces).
- ``start_cockpit``: a live demo server whose web login and citizen settings point at one of
  them, configured through ``EINMAL_*`` variables as an operator would.
"""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from einmal.settings import load_settings
from tests.conftest import TEST_DATABASE_URL, LiveServer, free_port, start_server
from tests.unit.cockpit.web.fake_idp import FakeIdp

#: The mock's user, as its authorization form lets a tester pick one; the IdNr travels in a
#: claim of its own (``sub`` is the provider's pseudonym), as with a real eID provider.
MOCK_SUBJECT = "buerger-4711"
IDNR_CLAIM = "bund_idnr"


@dataclass
class MockIdp:
    base_url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path

    def register(self, redirect_uri: str, method: str) -> tuple[str, str | None]:
        """Register a client (RFC 7591); returns (client_id, secret or None for ``none``)."""
        response = httpx.post(f"{self.base_url}/oauth2/clients", json={
            "redirect_uris": [redirect_uri], "token_endpoint_auth_method": method})
        assert response.status_code == 201, response.text
        body = response.json()
        return body["client_id"], body["client_secret"] if method != "none" else None

    def set_user(self, sub: str, **claims: Any) -> None:
        response = httpx.put(f"{self.base_url}/users/{sub}", json=claims)
        assert response.status_code == 204, response.text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextmanager
def mock_idp(log_dir: Path) -> Iterator[MockIdp]:
    """``python -m oidc_provider_mock`` on a free port; waits until discovery answers."""
    port = free_port()
    log_path = log_dir / "oidc-provider-mock.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1",
             "--port", str(port), "--require-registration"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    idp = MockIdp(base_url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_for_discovery(idp)
        yield idp
    finally:
        idp.stop()


def _wait_for_discovery(idp: MockIdp, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if idp.process.poll() is not None:
            msg = f"oidc-provider-mock exited ({idp.process.returncode}):\n{idp.log()[-2000:]}"
            raise RuntimeError(msg)
        try:
            if httpx.get(f"{idp.base_url}/.well-known/openid-configuration",
                         timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            msg = f"oidc-provider-mock did not answer in {timeout} s:\n{idp.log()[-2000:]}"
            raise RuntimeError(msg)
        time.sleep(0.05)


# -- a scripted provider over real HTTP --------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    idp: FakeIdp

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        host = f"127.0.0.1:{self.server.server_address[1]}"
        request = httpx.Request(self.command, f"http://{host}{self.path}",
                                headers=list(self.headers.items()), content=body)
        response = self.idp.transport().handle_request(request)
        content = response.read()
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in {"content-length", "transfer-encoding"}:
                self.send_header(name, value)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = _serve

    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def scripted_idp(**behaviour: Any) -> Iterator[FakeIdp]:
    """A ``FakeIdp`` at ``http://127.0.0.1:<port>/realms/buerger`` (its fields script it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    idp = FakeIdp(issuer=f"http://127.0.0.1:{server.server_address[1]}/realms/buerger",
                  **behaviour)
    server.RequestHandlerClass = type("Handler", (_Handler,), {"idp": idp})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- the cockpit ----------------------------------------------------------------------------------


def start_cockpit(data_dir: Path, port: int, issuer: str, *, client_id: str = "einmal-cockpit",
                  secret: str | None = None, jwks_url: str | None = None,
                  database_url: str | None = TEST_DATABASE_URL) -> LiveServer:
    """A live demo server (broker, cockpit, registers) whose citizens log in at ``issuer``.

    ``database_url`` None: SQLite files in ``data_dir`` (a second server in a module must not
    reset the shared PostgreSQL test database under the first one)."""
    environ = {
        "EINMAL_OIDC_ISSUER": issuer,
        "EINMAL_OIDC_CLIENT_ID": client_id,
        "EINMAL_CITIZEN_ISSUER": issuer,
        "EINMAL_CITIZEN_KEYS_URL": jwks_url or f"{issuer}/jwks",
        "EINMAL_CITIZEN_IDNR_CLAIM": IDNR_CLAIM,
    }
    if secret is not None:
        environ["EINMAL_OIDC_CLIENT_SECRET"] = secret
    settings = load_settings(environ, data_dir=data_dir, demo=True, simulator_families=60,
                             delivery_interval_s=0.1, database_url=database_url, port=port)
    return start_server(settings)
