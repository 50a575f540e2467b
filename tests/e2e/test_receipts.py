"""Receipts end to end on a demo server (its checkpoints cosigned by the demo's in-process
witness): a citizen downloads the receipt of a transfer about them - through the API and the
web view - and ``einmal receipt verify`` checks it offline; nobody else gets it; a changed
receipt fails with one line. The audit bundle carries the cosignatures."""

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal_app.cli import main
from einmal_client import tlog
from einmal_client.audit import export_bundle
from einmal_client.cosignature import verify_cosignatures, witness_vkey
from einmal_client.receipt import parse_receipt, verify_receipt
from tests.e2e.conftest import Demo, bearer
from tests.e2e.helpers import NAMENSDIENST, birth_request, problem
from tests.e2e.security_support import module_server
from tests.e2e.web_support import Browser, link

#: a key nobody in the demo uses: another log's, another witness's
STRANGER = Ed25519PrivateKey.from_private_bytes(b"s" * 32)


@dataclass
class World:
    live: Any
    demo: Demo
    transfer_id: str
    log_vkey: str
    witness_vkey: str
    _browsers: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        browser = Browser(self.live.base_url)
        self._browsers.append(browser)
        return browser

    def token(self, family: str, role: str) -> str:
        return self.demo.citizen_token(self.demo.citizen(family, role)["idnr"])

    def receipt(self, token: str | None, transfer_id: str | None = None) -> httpx.Response:
        headers = bearer(token) if token else {}
        return self.demo.http.get(f"/v1/me/transfers/{transfer_id or self.transfer_id}/receipt",
                                  headers=headers)


@pytest.fixture(name="world", scope="module")
def fx_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for live, demo in module_server(tmp_path_factory.mktemp("receipts")):
        released = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert released.status_code == 200, released.text
        transfer_id = released.json()["transfer_id"]
        witnesses = demo.http.get("/v1/log/witnesses").json()["witnesses"]
        world = World(live=live, demo=demo, transfer_id=transfer_id,
                      log_vkey=demo.http.get("/v1/log/verifier-key").text.strip(),
                      witness_vkey=witnesses[0]["vkey"])
        token = world.token("elfe", "parent")
        deadline = time.monotonic() + 20
        while world.receipt(token).status_code != 200:  # integrated, then cosigned
            assert time.monotonic() < deadline, "no receipt within 20 s"
            time.sleep(0.1)
        yield world
        for browser in world._browsers:
            browser.close()


def _verify(*args: str) -> Any:
    return CliRunner().invoke(main, ["receipt", "verify", *args])


class TestWhoGetsAReceipt:
    def test_nobody_but_the_citizens_it_is_about(self, world: World) -> None:
        problem(world.receipt(None), 401, "unauthenticated")
        problem(world.receipt(world.demo.service_token(NAMENSDIENST)), 401, "unauthenticated")
        other = world.token("uvo", "parent")
        body = problem(world.receipt(other), 404, "not-found")
        assert body["detail"] == "No such transfer among yours."  # as for an unknown one
        for token in (world.token("elfe", "parent"), world.token("elfe", "child")):
            assert world.receipt(token).status_code == 200

    @pytest.mark.parametrize("transfer_id", ["0193aaaa-0000-7000-8000-000000000000",
                                             "x" * 65, "..%2F..%2Fv1"])
    def test_an_unknown_or_malformed_transfer(self, world: World, transfer_id: str) -> None:
        problem(world.receipt(world.token("elfe", "parent"), transfer_id), 404, "not-found")


class TestTheReceipt:
    def test_a_cosigned_c2sp_tlog_proof_of_the_transfer(self, world: World) -> None:
        response = world.receipt(world.token("elfe", "parent"))
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-disposition"] == (
            f'attachment; filename="einmal-receipt-{world.transfer_id}.tlog-proof"')
        receipt = parse_receipt(response.text)
        assert verify_cosignatures(receipt.note, [world.witness_vkey], 1)
        verified = verify_receipt(response.text, verifier_keys=[world.log_vkey],
                                  witness_keys=[world.witness_vkey])
        assert verified.entry["id"] == world.transfer_id
        assert verified.entry["outcome"] == "delivered"
        child = world.demo.citizen("elfe", "child")["idnr"]
        assert child not in response.text  # the leaf names the citizen by pseudonym only
        assert child not in base64.b64decode(response.text.split("\n")[1][6:]).decode()

    def test_verified_offline_with_a_summary(self, world: World, tmp_path: Path) -> None:
        path = tmp_path / "receipt.tlog-proof"
        path.write_bytes(world.receipt(world.token("elfe", "parent")).content)
        (tmp_path / "log.vkey").write_text(world.log_vkey + "\n")
        result = _verify(str(path), "--verifier-key", str(tmp_path / "log.vkey"),
                         "--witness-key", world.witness_vkey)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("OK: entry ")
        assert world.transfer_id in result.output
        assert "log's signature: verified" in result.output
        assert "cosigned by: einmal-demo.example/witness at " in result.output

    def test_a_changed_receipt_fails_with_one_line(self, world: World, tmp_path: Path) -> None:
        text = world.receipt(world.token("elfe", "parent")).text
        extra = text.split("\n")[1]
        leaf = base64.b64decode(extra[len("extra "):]).replace(b'"delivered"', b'"refused"')
        path = tmp_path / "changed.tlog-proof"
        path.write_text(text.replace(extra, "extra " + base64.b64encode(leaf).decode()))
        result = _verify(str(path), "--verifier-key", world.log_vkey,
                         "--witness-key", world.witness_vkey)
        assert result.exit_code == 1
        assert result.output.count("\n") == 1
        assert "FAIL changed.tlog-proof: the entry is not in the checkpoint's tree" in result.output

    def test_other_keys_fail(self, world: World, tmp_path: Path) -> None:
        path = tmp_path / "receipt.tlog-proof"
        path.write_text(world.receipt(world.token("elfe", "parent")).text)
        result = _verify(str(path), "--verifier-key", world.log_vkey,
                         "--witness-key", _stranger_witness())
        assert result.exit_code == 1
        assert "witnesses: 0 of the required 1" in result.output
        origin = world.log_vkey.split("+")[0]
        other_log = tlog.verifier_key(origin, STRANGER.public_key())
        result = _verify(str(path), "--verifier-key", other_log)
        assert result.exit_code == 1
        assert "the log's signature does not verify" in result.output
        result = _verify(str(path))
        assert result.exit_code == 1
        assert "without a key the receipt proves nothing" in result.output


class TestWebDownload:
    def test_the_transfer_page_offers_the_receipt(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.demo.citizen("elfe", "parent")["idnr"])
        page = browser.get(f"/transfers/{world.transfer_id}")
        assert page.status_code == 200
        href = link(page.text, f"/transfers/{world.transfer_id}/receipt")
        download = browser.get(href)
        assert download.status_code == 200
        assert download.headers["content-disposition"].startswith("attachment; filename=")
        verified = verify_receipt(download.content, verifier_keys=[world.log_vkey],
                                  witness_keys=[world.witness_vkey])
        assert verified.entry["id"] == world.transfer_id

    def test_another_citizen_gets_the_not_found_page(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.demo.citizen("uvo", "parent")["idnr"])
        page = browser.get(f"/transfers/{world.transfer_id}/receipt")
        assert page.status_code == 404
        assert "tlog-proof" not in page.text

    def test_anonymous_is_sent_to_login(self, world: World) -> None:
        response = httpx.get(f"{world.live.base_url}/transfers/{world.transfer_id}/receipt")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


class TestCosignedLog:
    def test_the_demo_lists_its_witness_and_publishes_cosigned_checkpoints(
            self, world: World) -> None:
        listed = world.demo.http.get("/v1/log/witnesses").json()
        assert listed["quorum"] == 1
        (witness,) = listed["witnesses"]
        assert witness["name"] == "einmal-demo.example/witness"
        assert witness["url"] == f"{world.live.base_url}/witness"
        assert witness["vkey"].startswith("einmal-demo.example/witness+")
        note = world.demo.http.get("/v1/log/checkpoint").text
        assert verify_cosignatures(note, [witness["vkey"]], 1) == [witness["name"]]

    def test_the_audit_bundle_carries_the_cosignatures(self, world: World,
                                                       tmp_path: Path) -> None:
        out = tmp_path / "bundle"
        export_bundle(world.live.base_url, out,
                      world.demo.credentials["auditors"][0]["private_jwk"], {})
        ok = CliRunner().invoke(main, ["audit", "verify", str(out), "--verifier-key",
                                       world.log_vkey, "--witness-key", world.witness_vkey])
        assert ok.exit_code == 0, ok.output
        assert "cosigned by einmal-demo.example/witness" in ok.output
        refused = CliRunner().invoke(main, ["audit", "verify", str(out), "--witness-key",
                                            _stranger_witness()])
        assert refused.exit_code == 1
        assert "cosignatures: 0 of the required 1" in refused.output
        two = CliRunner().invoke(main, ["audit", "verify", str(out), "--witness-key",
                                        world.witness_vkey, "--witness-key",
                                        _stranger_witness(), "--witness-quorum", "1"])
        assert two.exit_code == 0, two.output


def _stranger_witness() -> str:
    return witness_vkey("stranger.example/w", STRANGER.public_key())
