"""Logging in at an identity provider nobody on the team wrote, in Chromium (issue 13, part 1).

``oidc-provider-mock`` (PyPI, built on authlib) runs as its own process; the cockpit is
configured for it through ``EINMAL_OIDC_*`` and ``EINMAL_CITIZEN_*`` (tests/e2e/
oidc_support.py). Its id_tokens carry no ``kid`` and its access tokens are opaque: the login
must work anyway, and the pages that need the broker's and the cockpit's APIs must show their
data (the web view calls them with the token the cockpit minted for the session).
"""

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.browser.conftest import axe_check
from tests.conftest import LiveServer, free_port
from tests.e2e.conftest import Demo
from tests.e2e.helpers import NAMENSDIENST, birth_request
from tests.e2e.oidc_support import IDNR_CLAIM, MOCK_SUBJECT, MockIdp, mock_idp, start_cockpit

pytestmark = pytest.mark.browser


def expect(target: Any) -> Any:
    """Playwright's auto-waiting assertions (imported late, as in test_cockpit_browser)."""
    from playwright.sync_api import expect as playwright_expect  # noqa: PLC0415 - optional: without playwright the fixtures skip

    return playwright_expect(target)


@dataclass
class MockSite:
    live: LiveServer
    idp: MockIdp
    idnr: str
    transfer_id: str
    csp: list[str] = field(default_factory=list)


@pytest.fixture(name="mock_site", scope="module")
def fx_mock_site(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[MockSite]:
    """The mock provider, a demo cockpit registered there (client_secret_basic), and one
    transfer about Anna's child. Depends on ``browser``: nothing starts when Chromium is
    missing and the tests are skipped."""
    del browser  # only for the skip
    with mock_idp(tmp_path_factory.mktemp("idp")) as idp:
        port = free_port()
        client_id, secret = idp.register(f"http://127.0.0.1:{port}/auth/callback",
                                         "client_secret_basic")
        live = start_cockpit(tmp_path_factory.mktemp("einmal-browser"), port, idp.base_url,
                             client_id=client_id, secret=secret)
        try:
            credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
            with httpx.Client(base_url=live.base_url, timeout=20) as http:
                demo = Demo(base_url=live.base_url, credentials=credentials, http=http)
                anna = demo.citizen("elfe", "parent")
                idp.set_user(MOCK_SUBJECT, **{IDNR_CLAIM: anna["idnr"]})
                legal = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
                assert legal.status_code == 200, legal.text
            yield MockSite(live=live, idp=idp, idnr=anna["idnr"],
                           transfer_id=legal.json()["transfer_id"])
        finally:
            live.stop()


@pytest.fixture(name="page")
def fx_page(browser: Any, mock_site: MockSite) -> Iterator[Any]:
    """A fresh context on the cockpit. Requests leaving loopback (the mock's pages load a
    stylesheet from a CDN) are aborted; CSP reports on the cockpit's pages fail the test."""
    context = browser.new_context(base_url=mock_site.live.base_url, locale="de-DE",
                                  viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    page = context.new_page()
    csp: list[str] = []

    def on_console(message: Any) -> None:
        own = page.url.startswith(mock_site.live.base_url)
        if own and ("Content Security Policy" in message.text or "Refused to" in message.text):
            csp.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    yield page
    context.close()
    assert not csp, "Content-Security-Policy violations:\n  " + "\n  ".join(csp)


def test_login_at_the_mock_provider_then_pages_from_both_apis(page: Any,
                                                              mock_site: MockSite) -> None:
    idnr = mock_site.idnr
    page.goto("/consents")
    assert "/login" in page.url
    axe_check(page)
    page.locator('a[href^="/login/start"]').click()
    page.wait_for_url(re.compile(re.escape(mock_site.idp.base_url) + r"/oauth2/authorize\?"))
    page.locator('input[name="sub"]').fill(MOCK_SUBJECT)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{mock_site.live.base_url}/consents")
    # the consents page: its list comes from the broker's API
    expect(page.get_by_text(f"Angemeldet mit IdNr {idnr[:2]}*******{idnr[-2:]}")).to_be_visible()
    expect(page.locator("h1")).to_contain_text("Einwilligungen")
    axe_check(page)
    # the overview in the source model: the picker, then the sources' entries
    page.goto("/")
    page.get_by_role("button", name="Abfrage starten").click()
    page.wait_for_url(f"{mock_site.live.base_url}/")
    expect(page.locator("main")).to_contain_text("Datenübermittlung am")
    axe_check(page)
    # the log's view of the transfer comes from the cockpit's API (delivered asynchronously)
    deadline = time.monotonic() + 15
    while page.goto(f"/transfers/{mock_site.transfer_id}").status != 200:
        assert time.monotonic() < deadline, "the transfer never reached the log"
    expect(page.locator("main")).to_contain_text("Standesamt")
    page.get_by_role("button", name="Abmelden").click()
    page.wait_for_url(re.compile(r"/login\?logged_out=1"))
    page.goto("/consents")
    assert "/login" in page.url  # the session is over


def test_denied_at_the_mock_provider_is_an_error_page(page: Any, mock_site: MockSite) -> None:
    """The mock's "Deny" answers ``error=access_denied`` without the ``state`` RFC 6749
    4.1.2.1 requires: an answer the cockpit cannot tie to its login, so "failed", not
    "cancelled" - and one log line saying why."""
    page.goto("/login")
    page.locator('a[href^="/login/start"]').click()
    page.wait_for_url(re.compile(re.escape(mock_site.idp.base_url) + r"/oauth2/authorize\?"))
    with capture_logs() as events:
        page.get_by_role("button", name="Deny").click()
        page.wait_for_url(re.compile(re.escape(mock_site.live.base_url) + r"/auth/callback\?"))
        expect(page.locator("h1")).to_contain_text("Anmeldung fehlgeschlagen")
    assert [e["reason"] for e in events if e["event"] == "web.login_failed"] == ["state"]
    axe_check(page)
    page.goto("/consents")
    assert "/login" in page.url
