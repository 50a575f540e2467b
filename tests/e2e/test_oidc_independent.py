"""Login with an identity provider nobody on the team wrote (issue 13, part 1), over real HTTP.

``oidc-provider-mock`` runs as its own process (tests/e2e/oidc_support.py): RS256 id_tokens
without ``kid``, opaque access tokens, client authentication checked. A citizen logs in at the
cockpit through it as a browser without JavaScript would (httpx following redirects, reading
forms), lands on the overview, and uses pages whose data comes from the broker's and the
cockpit's APIs: those calls carry the token the cockpit minted for the web session.

Then a scripted provider (the unit tests' FakeIdp over loopback HTTP) answers what no
provider should: each ends on the "Anmeldung fehlgeschlagen" page with one log line naming
the reason, never a 500.
"""

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import msgspec
import pytest
from structlog.testing import capture_logs

from einmal.citizen import WEB_ISSUER, WEB_TOKEN_TTL_S, session_binding
from tests.conftest import LiveServer, free_port
from tests.e2e.conftest import Demo, bearer, in_days
from tests.e2e.helpers import ELTERNGELD, NAMENSDIENST, birth_request
from tests.e2e.oidc_support import (
    IDNR_CLAIM,
    MOCK_SUBJECT,
    MockIdp,
    mock_idp,
    scripted_idp,
    start_cockpit,
)
from tests.e2e.web_support import Browser, form, link
from tests.unit.cockpit.web.fake_idp import IDNR, FakeIdp, private_key, public_jwk

CALLBACK = "/elterngeld/consent-callback"


@dataclass
class Site:
    """A cockpit whose citizens log in at the mock provider."""

    live: LiveServer
    demo: Demo
    idp: MockIdp
    method: str
    anna: dict[str, Any]
    legal_id: str
    opened: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        browser = Browser(self.live.base_url)
        self.opened.append(browser)
        return browser

    def session(self, cookie: str) -> dict[str, Any] | None:
        """The web session of ``cookie`` as stored (sealed, decision 0032): read on the
        server's loop and opened with the cookie, as the cockpit does."""
        sessions = self.live.component("cockpit").web.sessions
        raw = asyncio.run_coroutine_threadsafe(sessions.store.get(sessions._key(cookie)),
                                               self.live.loop).result(timeout=10)
        opened = sessions._open(cookie, raw) if raw is not None else None
        return msgspec.to_builtins(opened) if opened is not None else None


def login_at_mock(browser: Browser, start: str = "/") -> tuple[httpx.Response, httpx.Response]:
    """Open ``start``, log in at the mock as its user; returns (the mock's form, where we land)."""
    page = browser.get(start)
    assert page.url.path == "/login", page.url
    idp_page = browser.get(link(page.text, "/login/start"))
    assert idp_page.status_code == 200, idp_page.text[:500]
    assert idp_page.url.path == "/oauth2/authorize", idp_page.url
    assert 'name="sub"' in idp_page.text
    landed = browser.post(str(idp_page.url), data={"sub": MOCK_SUBJECT})
    return idp_page, landed


@pytest.fixture(name="site", scope="module")
def fx_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The mock provider (a real process), the cockpit registered there as a confidential
    client, and a transfer about Anna's child to look at. The mock's discovery announces no
    client authentication methods, so the default holds: client_secret_basic (its token
    endpoint accepts no public clients; ``none`` and ``client_secret_post`` are tested
    against the scripted provider in tests/unit/cockpit/web/test_oidc.py)."""
    method = "client_secret_basic"
    with mock_idp(tmp_path_factory.mktemp("idp")) as idp:
        port = free_port()
        client_id, secret = idp.register(f"http://127.0.0.1:{port}/auth/callback", method)
        live = start_cockpit(tmp_path_factory.mktemp("einmal"), port, idp.base_url,
                             client_id=client_id, secret=secret)
        opened: list[Browser] = []
        try:
            credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
            with httpx.Client(base_url=live.base_url, timeout=20) as http:
                demo = Demo(base_url=live.base_url, credentials=credentials, http=http)
                anna = demo.citizen("elfe", "parent")
                idp.set_user(MOCK_SUBJECT, **{IDNR_CLAIM: anna["idnr"]})
                legal = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
                assert legal.status_code == 200, legal.text
                yield Site(live=live, demo=demo, idp=idp, method=method, anna=anna,
                           legal_id=legal.json()["transfer_id"], opened=opened)
        finally:
            for browser in opened:
                browser.close()
            live.stop()


class TestLoginThroughTheMockProvider:
    def test_login_lands_on_the_overview_with_the_transfer(self, site: Site) -> None:
        browser = site.browser()
        with capture_logs() as events:
            _, page = login_at_mock(browser)
        assert page.status_code == 200, [e for e in events if e["event"] == "web.login_failed"]
        assert page.url.path == "/"
        idnr = site.anna["idnr"]
        assert f"Angemeldet mit IdNr {idnr[:2]}*******{idnr[-2:]}" in page.text
        hops = [str(r.url.path) for r in page.history]
        assert hops == ["/oauth2/authorize", "/auth/callback"], hops
        assert [e["event"] for e in events if e["event"].startswith("web.login")] == \
            ["web.login"]
        # the source model: the picker first; the query asks the sources with the session
        assert "Abfrage starten" in page.text
        picker = form(page.text, "/sources/query")
        page = browser.post("/sources/query", data={
            "csrf_token": picker.fields["csrf_token"], "action": "start",
            "source": re.findall(r'name="source" value="([^"]+)"', page.text)})
        assert page.status_code == 200 and page.url.path == "/"
        assert "Datenübermittlung am" in page.text  # the register's and the broker's entries
        # the log's view of the transfer, read from the cockpit API with the session's token;
        # it reaches the cockpit asynchronously: wait for it
        deadline = time.monotonic() + 15
        detail = browser.get(f"/transfers/{site.legal_id}")
        while detail.status_code != 200:
            assert time.monotonic() < deadline, "the transfer never reached the log"
            detail = browser.get(f"/transfers/{site.legal_id}")
        assert "Standesamt" in detail.text

    def test_the_mock_saw_the_client_authentication_it_registered(self, site: Site) -> None:
        browser = site.browser()
        _, page = login_at_mock(browser)
        assert page.url.path == "/"
        log = site.idp.log()
        assert "invalid_client" not in log
        assert "token endpoint error" not in log

    def test_consent_granted_through_the_apis_with_the_cockpits_own_token(self,
                                                                          site: Site) -> None:
        port = urlsplit(site.live.base_url).port
        child = site.demo.citizen("elfe", "child")
        start = "/consents/new?" + urlencode({
            "client_id": ELTERNGELD, "proof_types": "birth,custody",
            "purpose": "elterngeld-antrag", "valid_until": in_days(30),
            "subject": child["idnr"], "redirect_uri": f"http://127.0.0.1:{port}{CALLBACK}",
            "state": "s-1"})
        browser = site.browser()
        _, screen = login_at_mock(browser, start)
        assert screen.url.path == "/consents/new", screen.url  # the flow survived the login
        done = browser.submit(screen, "/consents/new", button=("decision", "accept"),
                              follow=False)
        assert done.status_code == 303, done.text[:500]
        consent_id = parse_qs(urlsplit(done.headers["location"]).query)["consent_id"][0]
        listed = browser.get("/consents")
        assert f'id="consent-{consent_id}"' in listed.text

    def test_the_session_holds_the_cockpits_token_never_the_providers(self, site: Site,
                                                                      ) -> None:
        browser = site.browser()
        login_at_mock(browser)
        cookie = browser.session_cookie
        assert cookie
        stored = site.session(cookie)
        assert stored is not None
        token = stored["access_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["iss"] == WEB_ISSUER
        assert claims["sub"] == site.anna["idnr"]
        assert claims["sid"] == session_binding(cookie)
        assert claims["exp"] - claims["iat"] <= WEB_TOKEN_TTL_S
        assert jwt.get_unverified_header(token)["kid"].startswith("cockpit-web-citizen-")
        # the APIs accept it ...
        answer = site.demo.http.get("/v1/consents", headers=bearer(token))
        assert answer.status_code == 200, answer.text

    def test_logout_ends_the_session_and_drops_its_token(self, site: Site) -> None:
        browser = site.browser()
        _, page = login_at_mock(browser)
        cookie = browser.session_cookie
        stored = site.session(cookie)
        assert stored is not None and stored["access_token"]
        out = browser.logout(page)
        assert out.url.path == "/login"
        assert site.session(cookie) is None  # the session and its token are gone
        assert browser.get("/consents").url.path == "/login"

    def test_a_replayed_code_is_refused_by_the_provider(self, site: Site) -> None:
        """The code of a finished login, presented again in a new login: the mock answers
        invalid_grant, the citizen sees the error page, the log says why."""
        first = site.browser()
        page = first.get("/login")
        idp_page = first.get(link(page.text, "/login/start"))
        answer = first.http.post(str(idp_page.url), data={"sub": MOCK_SUBJECT},
                                 follow_redirects=False)
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        assert first.get(answer.headers["location"]).url.path == "/"  # used once
        second = site.browser()
        page = second.get("/login")
        started = second.get(link(page.text, "/login/start"))
        state = parse_qs(urlsplit(str(started.url)).query)["state"][0]
        with capture_logs() as events:
            replay = second.get("/auth/callback", params={"code": code, "state": state,
                                                          "iss": site.idp.base_url})
        assert replay.status_code == 400
        assert "Anmeldung fehlgeschlagen" in replay.text
        failed = [e for e in events if e["event"] == "web.login_failed"]
        assert [(e["reason"], e["error"]) for e in failed] == [("token_refused",
                                                                "invalid_grant")]


def test_no_token_code_secret_or_idnr_in_the_logs(site: Site) -> None:
    browser = site.browser()
    with capture_logs() as events:
        _, page = login_at_mock(browser)
        browser.get("/consents")
        browser.logout(page)
    assert page.url.path == "/"
    text = repr(events)
    assert "eyJ" not in text  # no JWT (id_token, our token)
    assert site.anna["idnr"] not in text
    assert MOCK_SUBJECT not in text
    code = parse_qs(urlsplit(str(page.history[-1].url)).query)["code"][0]
    assert code not in text
    secret = site.live.settings.oidc_client_secret
    assert secret and secret not in text
    browser.close()


# -- a provider answering garbage ------------------------------------------------------------------


@dataclass
class Scripted:
    live: LiveServer
    idp: FakeIdp

    def attempt(self) -> tuple[httpx.Response, list[dict[str, Any]]]:
        """A login from start to callback; returns the last page and the log events."""
        browser = Browser(self.live.base_url)
        try:
            with capture_logs() as events:
                page = browser.get("/login")
                answer = browser.get(link(page.text, "/login/start"))
        finally:
            browser.close()
        return answer, events


#: The scripted provider's JWK set: two keys, its tokens name the first. (The cockpit keeps a
#: provider's set for a minute, so it stays the same for the whole module.)
TWO_KEYS = [public_jwk(private_key("RS256"), kid="k1"),
            public_jwk(private_key("RS256", 1), kid="k2")]


@pytest.fixture(name="scripted", scope="module")
def fx_scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scripted]:
    with scripted_idp(claims={IDNR_CLAIM: IDNR}, jwks=TWO_KEYS) as idp:
        live = start_cockpit(tmp_path_factory.mktemp("einmal"), free_port(), idp.issuer,
                             jwks_url=f"{idp.issuer}/certs", database_url=None)
        try:
            yield Scripted(live=live, idp=idp)
        finally:
            live.stop()


def assert_login_failed(answer: httpx.Response, events: list[dict[str, Any]], reason: str,
                        status: int = 400) -> None:
    assert answer.status_code == status, answer.text[:300]
    assert "Anmeldung fehlgeschlagen" in answer.text
    failed = [e for e in events if e["event"] == "web.login_failed"]
    assert [e["reason"] for e in failed] == [reason]
    assert not [e for e in events if e["log_level"] in {"error", "critical"}]


@pytest.fixture(name="script")
def fx_script(scripted: Scripted) -> Iterator[FakeIdp]:
    """The scripted provider, back to well-behaved after each test."""
    yield scripted.idp
    scripted.idp.answers.clear()
    scripted.idp.claims = {IDNR_CLAIM: IDNR}
    scripted.idp.kid = "k1"


class TestGarbageFromTheProvider:
    def test_html_discovery(self, tmp_path: Path) -> None:
        page = httpx.Response(200, text="<html><body>Wartungsarbeiten</body></html>",
                              headers={"content-type": "text/html"})
        with scripted_idp(answers={"/.well-known/openid-configuration": page}) as idp:
            live = start_cockpit(tmp_path, free_port(), idp.issuer, database_url=None)
            try:
                answer, events = Scripted(live=live, idp=idp).attempt()
            finally:
                live.stop()
        assert_login_failed(answer, events, "idp_discovery_invalid", status=502)

    def test_a_well_behaved_script_logs_in(self, scripted: Scripted, script: FakeIdp) -> None:
        answer, events = scripted.attempt()
        assert answer.status_code == 200 and answer.url.path == "/", answer.text[:300]
        assert [e["event"] for e in events if e["event"].startswith("web.login")] == \
            ["web.login"]

    def test_non_json_token_response(self, scripted: Scripted, script: FakeIdp) -> None:
        script.answers["/token"] = httpx.Response(200, text="<html>Fehler</html>")
        assert_login_failed(*scripted.attempt(), "idp_token_invalid", status=502)

    def test_expired_code(self, scripted: Scripted, script: FakeIdp) -> None:
        script.answers["/token"] = httpx.Response(400, json={
            "error": "invalid_grant", "error_description": "Code not valid"})
        assert_login_failed(*scripted.attempt(), "token_refused")

    def test_id_token_for_another_audience(self, scripted: Scripted, script: FakeIdp) -> None:
        script.claims["aud"] = "another-client"
        assert_login_failed(*scripted.attempt(), "id_token_audience")

    def test_wrong_nonce(self, scripted: Scripted, script: FakeIdp) -> None:
        script.claims["nonce"] = "from-another-login"
        assert_login_failed(*scripted.attempt(), "id_token_nonce")

    def test_unknown_kid_with_several_keys(self, scripted: Scripted, script: FakeIdp) -> None:
        script.kid = "k9"
        assert_login_failed(*scripted.attempt(), "id_token_unknown_key")

    def test_no_kid_with_several_keys(self, scripted: Scripted, script: FakeIdp) -> None:
        script.kid = None
        assert_login_failed(*scripted.attempt(), "id_token_key_ambiguous")

    def test_no_idnr_claim(self, scripted: Scripted, script: FakeIdp) -> None:
        script.claims[IDNR_CLAIM] = None
        script.answers["/userinfo"] = httpx.Response(200, json={"sub": "pairwise-4711"})
        assert_login_failed(*scripted.attempt(), "claim_missing")

    def test_an_idnr_that_is_none(self, scripted: Scripted, script: FakeIdp) -> None:
        script.claims[IDNR_CLAIM] = "12345678901"
        assert_login_failed(*scripted.attempt(), "idnr_invalid")

    def test_a_replayed_callback(self, scripted: Scripted, script: FakeIdp) -> None:
        browser = Browser(scripted.live.base_url)
        page = browser.get("/login")
        answer = browser.get(link(page.text, "/login/start"))
        assert answer.url.path == "/"
        callback = next(r for r in answer.history if r.url.path == "/auth/callback")
        with capture_logs() as events:
            replay = browser.get(str(callback.url))
        browser.close()
        assert_login_failed(replay, events, "no_pending_login")
