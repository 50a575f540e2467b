"""The citizen web view end to end: real OIDC login through the demo IdP over real HTTP,
then the pages as a browser without JavaScript sees them (forms, links, redirects)."""

import asyncio
import base64
import hashlib
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from cockpit.web.core import WebView
from policies import DOCUMENTS_DIR, load_policies
from tests.e2e.conftest import Demo, in_days
from tests.e2e.helpers import ELTERNGELD, FAMILIENKASSE, NAMENSDIENST, birth_request
from tests.e2e.security_support import module_server
from tests.e2e.web_support import Browser, form, link, parse, visible_text

CALLBACK = "/elterngeld/consent-callback"


@dataclass
class World:
    live: Any
    demo: Demo
    anna: dict[str, Any]
    clara: dict[str, Any]
    child: dict[str, Any]
    delivered_id: str
    refused_id: str
    legal_id: str
    _browsers: list[Browser] = field(default_factory=list, init=False)  # closed at the end

    def browser(self) -> Browser:
        browser = Browser(self.live.base_url)
        self._browsers.append(browser)
        return browser

    def consent_url(self, **changes: Any) -> str:
        port = urlsplit(self.live.base_url).port
        params = {"client_id": ELTERNGELD, "proof_types": "birth,custody",
                  "purpose": "elterngeld-antrag", "valid_until": in_days(30), "max_uses": "3",
                  "subject": self.child["idnr"],
                  "redirect_uri": f"http://127.0.0.1:{port}{CALLBACK}", "state": "xyz-123"}
        params.update(changes)
        return "/consents/new?" + urlencode({k: v for k, v in params.items() if v is not None})


@pytest.fixture(name="world", scope="module")
def fx_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for live, demo in module_server(tmp_path_factory.mktemp("web")):
        anna, clara = demo.citizen("elfe", "parent"), demo.citizen("uvo", "parent")
        child = demo.citizen("elfe", "child")
        consent = demo.grant(anna["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                             subject=child["idnr"])
        delivered = demo.request_proof(ELTERNGELD, {**birth_request(demo),
                                                    "consent_id": consent["id"]})
        assert delivered.status_code == 200, delivered.text
        refused = demo.request_proof(FAMILIENKASSE, birth_request(demo, "kindergeld-antrag"))
        assert refused.status_code == 403, refused.text
        legal = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert legal.status_code == 200, legal.text
        ids = {delivered.json()["transfer_id"], legal.json()["transfer_id"]}
        items = demo.transfers(anna["idnr"], wait_for=ids)
        refused_id = next(i["id"] for i in items if i["outcome"] == "refused")
        world = World(live=live, demo=demo, anna=anna, clara=clara, child=child,
                      delivered_id=delivered.json()["transfer_id"], refused_id=refused_id,
                      legal_id=legal.json()["transfer_id"])
        yield world
        for browser in world._browsers:
            browser.close()


@pytest.fixture(name="central")
def fx_central(world: World) -> Iterator[None]:
    """The overview of a cockpit configured without sources (the central store's transfers):
    the source model is the default since issue 15 (tests/e2e/test_web_sources.py)."""
    web = world.live.component("cockpit").web
    desk, web.sources = web.sources, None
    try:
        yield
    finally:
        web.sources = desk


def pdf_text(pdf: bytes) -> str:
    """The text drawn on a PDF's pages (fpdf2 writes Latin-1 strings in deflated streams)."""
    chunks = []
    # The end-of-line before ``endstream`` is left to zlib (a decompressor stops at the end of
    # its stream): matching it here ate a compressed stream's last byte when that was a CR, and
    # a page went missing from the text now and then.
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            chunks.append(zlib.decompressobj().decompress(stream).decode("latin-1"))
        except zlib.error:
            continue
    return "".join(re.findall(r"\((.*?)\) ?Tj", "".join(chunks)))


def masked(idnr: str) -> str:
    return f"{idnr[:2]}*******{idnr[-2:]}"


# -- login, session, logout ----------------------------------------------------------------------

class TestLogin:
    def test_anonymous_is_sent_to_login_with_the_page_to_return_to(self, world: World) -> None:
        response = httpx.get(f"{world.live.base_url}/transfers/abc?x=1")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Ftransfers%2Fabc%3Fx%3D1"

    def test_real_oidc_login_lands_on_the_overview(self, world: World) -> None:
        browser = world.browser()
        page = browser.login(world.anna["idnr"])
        assert page.status_code == 200
        assert page.url.path == "/"
        assert f"Angemeldet mit IdNr {masked(world.anna['idnr'])}" in page.text
        assert world.anna["idnr"] not in page.text  # masked by default
        assert re.search(r"Sitzung endet um \d\d:\d\d Uhr", page.text)
        hops = [str(r.url.path) for r in page.history]
        assert hops == ["/demo/authorize", "/auth/callback"], hops

    def test_session_cookie_is_httponly_lax_and_opaque(self, world: World) -> None:
        browser = world.browser()
        page = browser.login(world.anna["idnr"])
        callback = next(r for r in page.history if r.url.path == "/auth/callback")
        cookie = next(v for k, v in callback.headers.multi_items()
                      if k == "set-cookie" and v.startswith("einmal_session="))
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert "httponly" in attributes
        assert "samesite=lax" in attributes
        assert "secure" not in attributes  # http://127.0.0.1: a browser would drop it
        value = cookie.split(";")[0].split("=", 1)[1]
        assert len(value) == 43 and world.anna["idnr"] not in value
        # the id changes at login (no session fixation): the pending-login cookie is gone
        assert browser.pre_login_cookie and browser.pre_login_cookie != value

    def test_secure_cookie_outside_localhost(self, make_settings: Any) -> None:
        policies = load_policies(DOCUMENTS_DIR)
        remote = WebView(make_settings(public_url="https://cockpit.example.org"),
                         policies=policies)
        local = WebView(make_settings(public_url="http://localhost:8000"), policies=policies)
        assert remote.sessions.secure is True
        assert local.sessions.secure is False
        assert "secure" in str(remote.sessions.cookie("x").to_header()).lower()

    def test_callback_with_a_forged_state_is_refused(self, world: World) -> None:
        browser = world.browser()
        page = browser.get("/login")
        idp = browser.get(link(page.text, "/login/start"))
        params = parse_qs(urlsplit(str(idp.url)).query)
        response = browser.get("/auth/callback", params={"state": "forged", "code": "x",
                                                         "iss": params["redirect_uri"][0]})
        assert response.status_code == 400
        assert "Anmeldung fehlgeschlagen" in response.text
        assert browser.get("/").url.path == "/login"

    def test_cancel_at_the_idp_is_explained(self, world: World) -> None:
        browser = world.browser()
        page = browser.get("/login")
        idp = browser.get(link(page.text, "/login/start"))
        response = browser.submit(idp, "/demo/authorize", button=("action", "cancel"))
        assert response.status_code == 400
        assert "Anmeldung abgebrochen" in response.text

    def test_logout_clears_and_a_replayed_cookie_is_dead(self, world: World) -> None:
        browser = world.browser()
        page = browser.login(world.anna["idnr"])
        old = browser.session_cookie
        assert old
        out = browser.logout(page)
        assert out.url.path == "/login"
        assert "Sie sind abgemeldet" in out.text
        logout = next(r for r in out.history if r.url.path == "/logout")
        assert 'einmal_session=""' in logout.headers["set-cookie"] or \
            "Max-Age=0" in logout.headers["set-cookie"]
        replay = httpx.get(f"{world.live.base_url}/", cookies={"einmal_session": old})
        assert replay.status_code == 303
        assert replay.headers["location"].startswith("/login?")

    def test_logout_without_csrf_token_is_refused(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        response = browser.post("/logout", data={})
        assert response.status_code == 403
        assert "Formular abgelaufen" in response.text
        wrong = browser.post("/logout", data={"csrf_token": "0" * 64})
        assert wrong.status_code == 403
        assert browser.get("/").url.path == "/"  # still logged in

    def test_idle_timeout_ends_the_session(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        sessions = world.live.component("cockpit").web.sessions
        try:
            sessions.clock = lambda: time.time() + sessions.idle_s + 1
            page = browser.get("/consents")
        finally:
            sessions.clock = time.time
        assert page.url.path == "/login"
        assert "Ihre Sitzung ist abgelaufen" in page.text
        assert parse_qs(page.url.query.decode())["next"] == ["/consents"]

    def test_idle_timeout_setting(self, make_settings: Any) -> None:
        view = WebView(make_settings(web_session_idle_s=60, web_session_max_s=600),
                       policies=load_policies(DOCUMENTS_DIR))
        assert (view.sessions.idle_s, view.sessions.max_s) == (60, 600)


# -- overview and detail --------------------------------------------------------------------------

@pytest.mark.usefixtures("central")
class TestOverview:
    def test_lists_the_transfers_about_me_and_my_child(self, world: World) -> None:
        page = world.browser().login(world.anna["idnr"])
        for name in ("Elterngeld online (ELFE)", "Familienkasse", "Namensbestimmung online"):
            assert name in page.text, name
        for transfer_id in (world.delivered_id, world.refused_id, world.legal_id):
            assert f'href="/transfers/{transfer_id}"' in page.text
        # newest first
        order = [m for m in re.findall(r'href="/transfers/([0-9a-f-]+)"', page.text)]
        assert order.index(world.legal_id) < order.index(world.delivered_id)
        assert "Ihr Kind" in page.text or "Sie werden darin genannt" in page.text
        assert "<svg" in page.text and "Übermittlungen pro Monat" in page.text

    def test_filters(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        refused = browser.get("/", params={"outcome": "refused"})
        assert f"/transfers/{world.refused_id}" in refused.text
        assert f"/transfers/{world.delivered_id}" not in refused.text
        by_service = browser.get("/", params={"service": NAMENSDIENST, "period": "30d"})
        assert f"/transfers/{world.legal_id}" in by_service.text
        assert f"/transfers/{world.refused_id}" not in by_service.text
        none = browser.get("/", params={"proof_type": "income"})
        assert "Keine Übermittlungen gefunden" in none.text

    def test_idnr_show_toggle(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        shown = browser.get("/", params={"idnr": "show"})
        assert world.anna["idnr"] in shown.text

    def test_detail_shows_categories_never_values(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        deadline = time.monotonic() + 10
        while True:  # the log integrates within about a second
            page = browser.get(f"/transfers/{world.delivered_id}")
            if "an Stelle" in page.text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert page.status_code == 200
        text = page.text
        for label in ("Geburtsdatum", "Vornamen des Kindes", "Eltern (Namen und"):
            assert label in text
        for value in (world.child["given_names"], world.child["birth_date"],
                      world.child["idnr"], world.anna["idnr"]):
            assert value not in text, value
        assert "Wir prüfen Ihren Antrag auf Elterngeld" in text  # purpose in plain words
        assert "§ 25 BEEG" in text and "Mit Ihrer Einwilligung" in text
        assert "aufbewahren" in text
        assert "Die Landesbeauftragte für Datenschutz und Informationsfreiheit Bremen" in text
        assert re.search(r"signierten Protokoll an Stelle \d+", text)
        assert f"/v1/log/entries/{world.delivered_id}" in text

    def test_federal_service_names_the_bfdi(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        page = browser.get(f"/transfers/{world.refused_id}")
        assert "Bundesbeauftragte für den Datenschutz" in page.text
        assert "abgelehnt" in page.text

    def test_another_citizen_cannot_open_my_transfer(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.clara["idnr"])
        page = browser.get(f"/transfers/{world.delivered_id}")
        assert page.status_code == 404
        assert "Seite nicht gefunden" in page.text
        assert "Elterngeld" not in page.text
        assert browser.get("/transfers/..%2F..%2Fv1").status_code == 404


# -- consents ------------------------------------------------------------------------------------

class TestConsentFlow:
    def test_accept_redirects_back_with_consent_id_and_state(self, world: World) -> None:
        browser = world.browser()
        screen = browser.login(world.anna["idnr"], start=world.consent_url())
        assert screen.url.path == "/consents/new"  # the flow survived the login
        text = screen.text
        for needle in ("Elterngeld online (ELFE)", "Elterngeldstelle Bremen",
                       "Geburtsurkunde", "Nachweis des Sorgerechts",
                       "Wer hat das Sorgerecht für Ihr Kind?", "höchstens 3-mal",
                       masked(world.child["idnr"])):
            assert needle in text, needle
        assert world.child["idnr"] not in visible_text(text)
        csp = screen.headers["content-security-policy"]
        assert f"form-action 'self' http://127.0.0.1:{urlsplit(world.live.base_url).port}" in csp
        done = browser.submit(screen, "/consents/new", button=("decision", "accept"),
                              follow=False)
        assert done.status_code == 303
        target = urlsplit(done.headers["location"])
        assert target.path == CALLBACK
        query = parse_qs(target.query)
        assert query["state"] == ["xyz-123"]
        consent_id = query["consent_id"][0]
        listed = browser.get("/consents")
        assert f'id="consent-{consent_id}"' in listed.text

    def test_decline_redirects_back_with_access_denied(self, world: World) -> None:
        browser = world.browser()
        screen = browser.login(world.anna["idnr"], start=world.consent_url(state="s-2"))
        done = browser.submit(screen, "/consents/new", button=("decision", "decline"),
                              follow=False)
        query = parse_qs(urlsplit(done.headers["location"]).query)
        assert query == {"error": ["access_denied"], "state": ["s-2"]}

    @pytest.mark.parametrize("change", [
        {"redirect_uri": "https://evil.example/cb"},
        {"redirect_uri": "http://127.0.0.1.evil.example/elterngeld/consent-callback"},
        {"redirect_uri": None},
        {"client_id": "nobody"},
        {"purpose": "werbung"},
        {"proof_types": "birth,income,custody,birth"},
        {"proof_types": "passport"},
        {"valid_until": "2020-01-01T00:00:00Z"},
        {"subject": "12345678901"},
    ])
    def test_bad_requests_get_an_error_page_never_a_redirect(self, world: World,
                                                             change: dict[str, Any]) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        response = browser.http.get(world.consent_url(**change), follow_redirects=False)
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "Diese Anfrage können wir nicht anzeigen" in response.text
        assert "evil.example" not in visible_text(response.text)

    def test_bad_redirect_uri_refused_before_login(self, world: World) -> None:
        response = httpx.get(world.live.base_url + world.consent_url(
            redirect_uri="https://evil.example/cb"))
        assert response.status_code == 400

    def test_forged_post_without_csrf_is_refused(self, world: World) -> None:
        browser = world.browser()
        screen = browser.login(world.anna["idnr"], start=world.consent_url())
        fields = form(screen.text, "/consents/new").fields
        fields.pop("csrf_token")
        response = browser.post("/consents/new", data={**fields, "decision": "accept"},
                                follow_redirects=False)
        assert response.status_code == 403
        assert "location" not in response.headers

    def test_revoke_with_confirmation(self, world: World) -> None:
        consent = world.demo.grant(world.anna["idnr"], ELTERNGELD, ["income"],
                                   "elterngeld-antrag")
        browser = world.browser()
        listed = browser.login(world.anna["idnr"], start="/consents")
        confirm = browser.get(f"/consents/{consent['id']}/revoke")
        assert link(listed.text, f"/consents/{consent['id']}/revoke")
        assert "wirklich widerrufen" in confirm.text
        assert "aktiv" in browser.get("/consents").text  # nothing happened by looking
        wrong = browser.submit(confirm, f"/consents/{consent['id']}/revoke",
                               csrf_token="f" * 64)
        assert wrong.status_code == 403
        done = browser.submit(confirm, f"/consents/{consent['id']}/revoke")
        assert done.url.path == "/consents"
        assert "Ihre Einwilligung wurde widerrufen" in done.text
        row = done.text.split(f'id="consent-{consent["id"]}"')[1].split("</tr>")[0]
        assert "widerrufen" in row
        assert f"/consents/{consent['id']}/revoke" not in row

    def test_cannot_revoke_another_citizens_consent(self, world: World) -> None:
        consent = world.demo.grant(world.anna["idnr"], ELTERNGELD, ["income"],
                                   "elterngeld-antrag")
        browser = world.browser()
        page = browser.login(world.clara["idnr"], start="/consents")
        assert browser.get(f"/consents/{consent['id']}/revoke").status_code == 404
        csrf = form(page.text, "/logout").fields["csrf_token"]
        response = browser.post(f"/consents/{consent['id']}/revoke",
                                data={"csrf_token": csrf})
        assert response.status_code == 404
        mine = world.demo.http.get("/v1/consents", headers={
            "authorization": f"Bearer {world.demo.citizen_token(world.anna['idnr'])}"})
        assert next(c for c in mine.json()["items"] if c["id"] == consent["id"])[
            "status"] == "active"


# -- my data, languages, headers -----------------------------------------------------------------

class TestMyData:
    def test_json_export(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"], start="/my-data")
        response = browser.get("/my-data/transfers.json")
        assert response.status_code == 200
        assert response.headers["content-disposition"].startswith("attachment;")
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["idnr_masked"] == masked(world.anna["idnr"])
        ids = {t["id"] for t in body["transfers"]}
        assert {world.delivered_id, world.refused_id, world.legal_id} <= ids
        assert world.child["given_names"] not in response.text

    def test_pdf_report(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"], start="/my-data")
        response = browser.get("/my-data/report.pdf")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"].startswith("attachment;")
        assert response.content.startswith(b"%PDF")
        text = pdf_text(response.content)
        assert masked(world.anna["idnr"]) in text
        assert world.anna["idnr"] not in text
        assert "Namensbestimmung online" in text


class TestLanguageAndHeaders:
    @pytest.mark.usefixtures("central")
    def test_language_switch_is_remembered(self, world: World) -> None:
        browser = world.browser()
        page = browser.login(world.anna["idnr"])
        assert '<html lang="de">' in page.text
        english = browser.get(link(page.text, "/?lang=en"))
        assert '<html lang="en">' in english.text
        assert "Overview: who fetched data about you?" in english.text
        again = browser.get("/consents")
        assert "Your consents" in again.text
        assert "Session ends at" in again.text

    def test_error_pages_in_both_languages(self, world: World) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        assert "Seite nicht gefunden" in browser.get("/transfers/nope").text
        assert "Page not found" in browser.get("/transfers/nope?lang=en").text

    @pytest.mark.parametrize("path", ["/login", "/", "/consents", "/my-data",
                                      "/transfers/nope", "/static/cockpit.css"])
    def test_security_headers(self, world: World, path: str) -> None:
        browser = world.browser()
        browser.login(world.anna["idnr"])
        response = browser.get(path)
        csp = response.headers["content-security-policy"]
        for part in ("default-src 'none'", "style-src 'self'", "frame-ancestors 'none'",
                     "base-uri 'none'", "form-action 'self'"):
            assert part in csp
        assert "unsafe-inline" not in csp and "script-src" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        if path != "/static/cockpit.css":
            assert response.headers["cache-control"] == "no-store"
            assert "<script" not in response.text and "style=" not in response.text
            assert 'href="#main"' in response.text and '<main id="main"' in response.text
            assert "DEMO" in response.text  # demo mode is labelled on every page

    def test_every_post_form_has_a_csrf_token(self, world: World) -> None:
        browser = world.browser()
        consent = world.demo.grant(world.anna["idnr"], ELTERNGELD, ["income"],
                                   "elterngeld-antrag")
        browser.login(world.anna["idnr"])
        for path in ("/", "/consents", "/my-data", f"/consents/{consent['id']}/revoke",
                     world.consent_url()):
            for f in parse(browser.get(path).text).forms:
                if f.method == "post":
                    assert len(f.fields.get("csrf_token", "")) == 64, (path, f.action)


# -- the demo IdP's OIDC endpoints ---------------------------------------------------------------

class TestDemoIdp:
    def _code(self, world: World, verifier: str) -> tuple[str, str]:
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        redirect = f"{world.live.base_url}/auth/callback"
        with httpx.Client(base_url=world.live.base_url) as http:
            page = http.get("/demo/authorize", params={
                "response_type": "code", "client_id": "einmal-cockpit", "scope": "openid",
                "redirect_uri": redirect, "state": "st", "nonce": "n",
                "code_challenge": challenge, "code_challenge_method": "S256"})
            assert page.status_code == 200
            fields = {**form(page.text, "/demo/authorize").fields, "action": "login",
                      "idnr": world.anna["idnr"]}
            answer = http.post("/demo/authorize", data=fields)
        assert answer.status_code == 303
        return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0], redirect

    def test_discovery(self, world: World) -> None:
        metadata = httpx.get(f"{world.live.base_url}/demo/.well-known/openid-configuration")
        body = metadata.json()
        assert body["issuer"] == f"{world.live.base_url}/demo"
        assert body["code_challenge_methods_supported"] == ["S256"]
        assert httpx.get(body["jwks_uri"]).json()["keys"][0]["kty"] == "OKP"

    def test_pkce_and_one_time_codes(self, world: World) -> None:
        verifier = "v" * 50
        code, redirect = self._code(world, verifier)
        form_ = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                 "client_id": "einmal-cockpit"}
        token = f"{world.live.base_url}/demo/token"
        wrong = httpx.post(token, data={**form_, "code_verifier": "w" * 50})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        code, redirect = self._code(world, verifier)
        form_["code"] = code
        good = httpx.post(token, data={**form_, "code_verifier": verifier})
        assert good.status_code == 200, good.text
        assert {"access_token", "id_token"} <= set(good.json())
        again = httpx.post(token, data={**form_, "code_verifier": verifier})
        assert again.status_code == 400  # one-time

    def test_unregistered_redirect_uri_is_refused(self, world: World) -> None:
        page = httpx.get(f"{world.live.base_url}/demo/authorize", params={
            "response_type": "code", "client_id": "einmal-cockpit", "scope": "openid",
            "redirect_uri": "https://evil.example/cb", "state": "s", "nonce": "n",
            "code_challenge": "x" * 43, "code_challenge_method": "S256"})
        assert page.status_code == 400
        assert "<form" not in page.text

    def test_authorize_page_headers(self, world: World) -> None:
        page = httpx.get(f"{world.live.base_url}/demo/authorize")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "DEMO" in page.text


def test_citizen_token_from_oidc_works_with_the_apis(world: World) -> None:
    """The access token the web view holds for a session is what the broker and cockpit APIs
    accept; the store holds it sealed (decision 0032): read back with the browser's cookie."""
    sessions = world.live.component("cockpit").web.sessions
    browser = world.browser()
    browser.login(world.anna["idnr"])
    cookie = browser.session_cookie
    assert cookie
    future = asyncio.run_coroutine_threadsafe(sessions.store.get(sessions._key(cookie)),
                                              world.live.loop)
    raw = future.result(timeout=10)
    assert raw is not None
    assert world.anna["idnr"].encode() not in raw  # sealed at rest
    session = sessions._open(cookie, raw)
    assert session is not None and session.idnr == world.anna["idnr"]
    assert sessions._open("another-session-id", raw) is None  # only this cookie opens it
    response = world.demo.http.get("/v1/me/transfers",
                                   headers={"authorization": f"Bearer {session.access_token}"})
    assert response.status_code == 200
