"""The citizen cockpit in a real browser: what a parent does after the ELFE scenario.

Headless Chromium (Debian's), Playwright's sync API. The module's demo server has played the
ELFE story once (``cockpit`` fixture), so Anna and Ben have transfers to look at. Every page a
test visits is scanned with axe-core: no serious or critical violation (WCAG 2.1 AA / BITV 2.0).
Each test opens its own browser context (own cookies); a CSP violation in any of them fails
the test (conftest).
"""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.browser.conftest import Cockpit, ServiceSite, axe_check
from tests.e2e.conftest import bearer
from tests.e2e.helpers import ELTERNGELD, birth_request

pytestmark = pytest.mark.browser

ANNA = "81709656328"
BEN = "60478593182"


@pytest.fixture(autouse=True)
def _central_overview(cockpit: Cockpit) -> Iterator[None]:
    """This module drives the central overview (a cockpit configured without sources); the
    source model, the default since issue 15, has its own module (test_sources_browser.py)."""
    web = cockpit.live.component("cockpit").web
    desk, web.sources = web.sources, None
    yield
    web.sources = desk


# -- helpers -----------------------------------------------------------------------------------


def expect(target: Any) -> Any:
    """Playwright's auto-waiting assertions (imported late: without playwright the module
    must still be collected, and skipped by the fixtures with their message)."""
    from playwright.sync_api import expect as playwright_expect  # noqa: PLC0415 - optional dependency, see above

    return playwright_expect(target)


def login(page: Any, idnr: str = ANNA, *, start: str = "/", scan: bool = True) -> None:
    """Log in through the demo IdP, as a person would: the cockpit's login page, the
    "Online-Ausweis" button, pick the demo citizen, submit. Ends on ``start`` again.

    ``scan``: axe-check the login and IdP pages (needs JavaScript in the context)."""
    page.goto(start)
    assert "/login" in page.url
    if scan:
        axe_check(page)
    page.locator('a[href^="/login/start"]').click()
    page.wait_for_url(re.compile(r"/demo/authorize\?"))
    if scan:
        axe_check(page)
    page.locator(f'input[type=radio][name=idnr][value="{idnr}"]').check()
    page.locator('button[type=submit][value=login]').click()
    page.wait_for_url(lambda url: "/demo/" not in url and "/login" not in url
                      and "/auth/callback" not in url)


def transfer_ids(cockpit: Cockpit, idnr: str) -> list[str]:
    """The citizen's transfers as the cockpit API lists them (the truth the page must show)."""
    return [t["id"] for t in cockpit.demo.transfers(idnr)]


def consent_flow_url(cockpit: Cockpit, site: ServiceSite, state: str) -> str:
    """What Elterngeld online links to: the cockpit's consent screen with its request."""
    child = cockpit.citizen("elfe", "child")
    until = (datetime.now(UTC) + timedelta(days=60)).date().isoformat()
    return "/consents/new?" + urlencode({
        "client_id": ELTERNGELD, "proof_types": "birth,custody", "purpose": "elterngeld-antrag",
        "valid_until": until, "subject": child["idnr"],
        "redirect_uri": f"{site.base_url}/elterngeld/consent-callback", "state": state})


def api_consent(cockpit: Cockpit, idnr: str, consent_id: str) -> dict[str, Any]:
    response = cockpit.demo.http.get("/v1/consents",
                                     headers=bearer(cockpit.demo.citizen_token(idnr)))
    assert response.status_code == 200, response.text
    return next(c for c in response.json()["items"] if c["id"] == consent_id)


def fetch_birth(cockpit: Cockpit, consent_id: str) -> Any:
    """Elterngeld online asks for the child's birth proof under ``consent_id``."""
    return cockpit.demo.request_proof(ELTERNGELD, {**birth_request(cockpit.demo),
                                                   "consent_id": consent_id})


def focused(page: Any) -> dict[str, Any]:
    return page.evaluate("""() => {
        const e = document.activeElement;
        const s = getComputedStyle(e);
        return {tag: e.tagName.toLowerCase(), href: e.getAttribute('href'),
                type: e.getAttribute('type'), value: e.getAttribute('value'),
                name: e.getAttribute('name'), text: (e.innerText || '').trim(),
                id: e.id, outline: s.outlineStyle + ' ' + s.outlineWidth,
                shadow: s.boxShadow};
    }""")


def tab_to(page: Any, matches: Any, *, limit: int = 80) -> dict[str, Any]:
    """Press Tab until the focused element satisfies ``matches``; fail after ``limit`` presses.

    Also checks that every focused element shows a visible focus indicator."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        element = focused(page)
        seen.append(element)
        if element["tag"] != "body":
            assert element["outline"].split()[0] != "none" or element["shadow"] != "none", (
                f"no visible focus indicator on {element}")
        if matches(element):
            return element
    pytest.fail(f"not reachable with Tab in {limit} presses; focus went through "
                f"{[(e['tag'], e['href'] or e['text'][:30]) for e in seen]}")
    raise AssertionError  # unreachable: pytest.fail raises


# -- tests ---------------------------------------------------------------------------------------


def test_the_scenario_played(cockpit: Cockpit) -> None:
    """Precondition of this module: the ELFE story ran and left transfers for Anna."""
    assert cockpit.scenario_ok, cockpit.scenario_output
    assert len(transfer_ids(cockpit, ANNA)) >= 5


def test_login_shows_the_scenarios_transfers_and_a_detail(page: Any, cockpit: Cockpit) -> None:
    expected = transfer_ids(cockpit, ANNA)
    login(page, ANNA)
    assert page.url.rstrip("/") == cockpit.base_url
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.locator("h1").inner_text().strip()
    # the masked IdNr, never the full one, unless asked
    assert "81*******28" in page.inner_text("header")
    links = page.locator('main a[href^="/transfers/"]')
    shown = {href.rsplit("/", 1)[-1] for href in
             (links.nth(i).get_attribute("href") for i in range(links.count()))}
    assert set(expected) <= shown, f"missing on the overview: {set(expected) - shown}"
    rows = page.locator("main table tbody tr")
    assert rows.filter(has_text="Elterngeld").count() >= 3
    assert rows.filter(has_text="Kindergeld").count() >= 1
    assert rows.filter(has_text="abgelehnt").count() >= 1  # the refused fetches are listed too
    axe_check(page)

    # a delivered transfer's detail: who, what, from which register, when, why
    delivered = rows.filter(has_text="Einkommensnachweis").first
    delivered.locator('a[href^="/transfers/"]').click()
    page.wait_for_url(re.compile(r"/transfers/[^/]+$"))
    transfer_id = page.url.rsplit("/", 1)[-1]
    assert transfer_id in expected
    main = page.inner_text("main")
    assert "Elterngeld" in main
    assert "Einkommensregister" in main
    assert transfer_id in main  # the reference, for a complaint
    axe_check(page)

    # an unknown transfer is a proper 404 page, also accessible
    response = page.goto("/transfers/00000000-0000-4000-8000-000000000000")
    assert response is not None and response.status == 404
    axe_check(page)


def test_english(page: Any) -> None:
    login(page, BEN)
    page.locator("a.lang-switch").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")  # waits for the new page
    assert "Transfers" in page.inner_text("main")
    axe_check(page)
    # the choice sticks (cookie) on the next page
    page.locator('main a[href^="/transfers/"]').first.click()
    page.wait_for_url(re.compile(r"/transfers/"))
    assert page.locator("html").get_attribute("lang") == "en"
    axe_check(page)
    # log out: back on the login page, and the session is gone
    page.locator('form[action="/logout"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"/login\?logged_out=1"))
    axe_check(page)
    page.goto("/")
    assert "/login" in page.url


def test_keyboard_only(page: Any, cockpit: Cockpit) -> None:
    """Skip link first, login and a detail page reached with Tab, Space and Enter alone."""
    page.goto("/login")
    first = tab_to(page, lambda e: True, limit=1)
    assert first["tag"] == "a" and first["href"] == "#main", f"first Tab stop: {first}"
    assert page.locator(".skip-link").is_visible()
    page.keyboard.press("Enter")
    # the fragment navigation and the focus move are asynchronous in the browser: wait for
    # them (a bare assert right after the key press failed once under a loaded CI machine)
    page.wait_for_url(re.compile(r"#main$"), timeout=10_000)
    page.wait_for_function("document.activeElement && document.activeElement.id === 'main'",
                           timeout=10_000)
    assert focused(page)["id"] == "main"

    tab_to(page, lambda e: (e["href"] or "").startswith("/login/start"))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/demo/authorize\?"))
    tab_to(page, lambda e: e["name"] == "idnr")
    # arrow keys move within the radio group; pick Anna
    for _ in range(10):
        if focused(page)["value"] == ANNA:
            break
        page.keyboard.press("ArrowDown")
    assert focused(page)["value"] == ANNA
    page.keyboard.press("Space")
    tab_to(page, lambda e: e["value"] == "login")
    page.keyboard.press("Enter")
    page.wait_for_url(cockpit.base_url + "/")

    tab_to(page, lambda e: (e["href"] or "").startswith("/transfers/"), limit=120)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/transfers/"))
    assert page.locator("h1").inner_text().strip()


def test_works_without_javascript(new_context: Any, cockpit: Cockpit) -> None:
    """No page needs JavaScript: login and the overview with scripts off."""
    page = new_context(java_script_enabled=False).new_page()
    page.goto("/")
    page.locator('a[href^="/login/start"]').click()
    page.wait_for_url(re.compile(r"/demo/authorize\?"))
    page.locator(f'input[name=idnr][value="{ANNA}"]').check()
    page.locator('button[value=login]').click()
    page.wait_for_url(cockpit.base_url + "/")
    assert page.locator('main a[href^="/transfers/"]').count() >= 5
    # the filter form works without scripts too
    page.locator("#f-outcome").select_option("refused")
    page.locator("form.filters button[type=submit]").click()
    page.wait_for_url(re.compile(r"outcome=refused"))
    rows = page.locator("main table tbody tr")
    assert rows.count() >= 1
    assert rows.filter(has_text="übermittelt").count() == 0


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_consent_redirect_flow_grant_and_revoke(new_context: Any, cockpit: Cockpit,
                                                service_site: ServiceSite,
                                                javascript: bool) -> None:
    """Elterngeld online sends Anna to the consent screen; she logs in, accepts, lands back on
    the service's page with the consent id; the service can fetch; she revokes it (with a
    confirmation step) and the next fetch is refused. With and without JavaScript."""
    page = new_context(java_script_enabled=javascript).new_page()
    scan = axe_check if javascript else (lambda _page: None)
    state = f"antrag-{'js' if javascript else 'nojs'}-4711"
    login(page, ANNA, start=consent_flow_url(cockpit, service_site, state), scan=javascript)
    assert "/consents/new?" in page.url  # back on the consent screen after the login
    main = page.inner_text("main")
    assert "Elterngeld" in main and "Geburtsurkunde" in main and "Sorgerecht" in main
    assert "84*******10" in main  # about the child, masked
    scan(page)

    page.locator('button[name=decision][value=accept]').click()
    page.wait_for_url(f"{service_site.base_url}/elterngeld/consent-callback?**")
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == [state]
    [consent_id] = query["consent_id"]
    consent = api_consent(cockpit, ANNA, consent_id)
    assert consent["status"] == "active"
    assert sorted(consent["proof_types"]) == ["birth", "custody"]
    assert consent["service_id"] == ELTERNGELD
    assert fetch_birth(cockpit, consent_id).status_code == 200

    page.goto("/consents")
    row = page.locator(f"#consent-{consent_id}")
    assert row.count() == 1
    scan(page)
    row.locator('a[href$="/revoke"]').click()
    page.wait_for_url(re.compile(rf"/consents/{consent_id}/revoke$"))
    scan(page)
    assert api_consent(cockpit, ANNA, consent_id)["status"] == "active"  # not yet: confirm
    page.locator(f'form[action="/consents/{consent_id}/revoke"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"/consents$"))
    assert page.locator('main [role=status]').count() == 1  # "revoked" notice
    assert page.locator(f"#consent-{consent_id} a[href$='/revoke']").count() == 0
    scan(page)
    assert api_consent(cockpit, ANNA, consent_id)["status"] == "revoked"
    refused = fetch_birth(cockpit, consent_id)
    assert refused.status_code == 403, refused.text


def test_consent_declined_goes_back_with_access_denied(page: Any, cockpit: Cockpit,
                                                       service_site: ServiceSite) -> None:
    login(page, BEN, start=consent_flow_url(cockpit, service_site, "decline-1"))
    page.locator('button[name=decision][value=decline]').click()
    page.wait_for_url(f"{service_site.base_url}/elterngeld/consent-callback?**")
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"error": ["access_denied"], "state": ["decline-1"]}


def test_a_bad_consent_request_is_an_error_page_not_a_redirect(page: Any, cockpit: Cockpit,
                                                               ) -> None:
    url = consent_flow_url(cockpit, ServiceSite(base_url="https://evil.example"), "x")
    response = page.goto(url)
    assert response is not None and response.status == 400
    assert page.url.startswith(cockpit.base_url)
    axe_check(page)


def test_my_data_exports(page: Any, cockpit: Cockpit) -> None:
    expected = set(transfer_ids(cockpit, ANNA))
    login(page, ANNA, start="/my-data")
    axe_check(page)
    with page.expect_download() as info:
        page.locator('a[href="/my-data/transfers.json"]').click()
    download = info.value
    assert download.suggested_filename.endswith(".json")
    data = json.loads(Path(download.path()).read_bytes())
    assert expected <= {t["id"] for t in data["transfers"]}
    assert ANNA not in json.dumps(data["idnr_masked"])

    with page.expect_download() as info:
        page.locator('a[href="/my-data/report.pdf"]').click()
    download = info.value
    assert download.suggested_filename.endswith(".pdf")
    content = Path(download.path()).read_bytes()
    assert content.startswith(b"%PDF-")
    assert len(content) > 1000


def held_preview(cockpit: Cockpit, consent_id: str) -> str:
    """Elterngeld online asks for the birth proof; the broker holds it for Anna's preview."""
    response = fetch_birth(cockpit, consent_id)
    assert response.status_code == 202, response.text
    assert response.json()["code"] == "EDM:ERR:0002"
    return response.json()["request_id"]


def collect(cockpit: Cockpit, request_id: str) -> Any:
    """The service comes back for the held proof (``GET /v1/proof-requests/{id}``)."""
    return cockpit.demo.http.get(f"/v1/proof-requests/{request_id}",
                                 headers=bearer(cockpit.demo.service_token(ELTERNGELD)))


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_previews_accept_one_and_refuse_another(new_context: Any, cockpit: Cockpit,
                                                javascript: bool) -> None:
    page = new_context(java_script_enabled=javascript).new_page()
    scan = axe_check if javascript else (lambda _page: None)
    child = cockpit.citizen("elfe", "child")
    consent = cockpit.demo.grant(ANNA, ELTERNGELD, ["birth"], "elterngeld-antrag",
                                 subject=child["idnr"], preview=True)
    accepted, refused = held_preview(cockpit, consent["id"]), held_preview(cockpit, consent["id"])
    assert collect(cockpit, accepted).status_code == 202  # waiting for Anna

    login(page, ANNA, start="/previews", scan=javascript)
    assert page.locator(f"#preview-{accepted}").count() == 1
    assert page.locator(f"#preview-{refused}").count() == 1
    scan(page)

    page.locator(f'#preview-{accepted} a[href="/previews/{accepted}"]').click()
    page.wait_for_url(re.compile(rf"/previews/{accepted}$"))
    main = page.inner_text("main")
    assert child["given_names"] in main  # she sees the values the service would get
    assert "Elterngeld" in main
    scan(page)
    # the POST answers 303 to this same URL: wait for the new page, not for the URL
    page.locator("button[name=decision][value=accept]").click()
    expect(page.locator("button[name=decision]")).to_have_count(0)  # decided: no buttons
    expect(page.locator("main [role=status]")).to_have_count(1)
    scan(page)
    released = collect(cockpit, accepted)
    assert released.status_code == 200, released.text
    assert released.json()["proof"]

    page.goto(f"/previews/{refused}")
    page.locator("button[name=decision][value=refuse]").click()
    expect(page.locator("button[name=decision]")).to_have_count(0)
    expect(page.locator("main [role=status]")).to_have_count(1)
    scan(page)
    denied = collect(cockpit, refused)
    assert denied.status_code == 403, denied.text

    page.goto("/previews")
    decided = page.locator('table[aria-labelledby="decided"]')  # no longer waiting
    assert decided.locator(f"#preview-{accepted}").count() == 1
    assert decided.locator(f"#preview-{refused}").count() == 1
    assert page.locator('table[aria-labelledby="waiting"] tr[id^="preview-"]').count() == 0
    scan(page)


WIDE = """(width) => [...document.querySelectorAll('body *')]
    .filter(e => !(e.parentElement && e.parentElement.closest('.table-scroll'))
                 && e.getBoundingClientRect().right > width + 1)
    .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''))"""


OVERFLOW = """(width) => {
    const out = [];
    for (const e of document.querySelectorAll('body *')) {
        if (e.closest('table') || e.closest('.visually-hidden') || e.closest('.skip-link'))
            continue;
        const r = e.getBoundingClientRect();
        if (r.width > 0 && r.right > width + 1) out.push(e.tagName.toLowerCase() +
            (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : '') +
            ' right=' + r.right);
    }
    return out;
}"""


def test_reflow_at_320_css_pixels(new_context: Any) -> None:
    """WCAG 1.4.10: at 320 CSS px (400 % zoom of 1280) nothing needs horizontal scrolling;
    data tables scroll inside their own labelled, focusable region, never the page."""
    page = new_context(viewport={"width": 320, "height": 640}).new_page()
    login(page, ANNA, scan=False)
    page.goto("/")
    detail = page.locator('main a[href^="/transfers/"]').first.get_attribute("href")
    for path in ("/", detail, "/consents", "/previews", "/my-data"):
        page.goto(path)
        assert page.evaluate(OVERFLOW, 320) == [], f"overflows at 320 px on {path}"
        # data tables scroll inside their own region: the page itself never scrolls sideways
        assert page.evaluate("document.documentElement.scrollWidth") <= 321, (
            path, page.evaluate(WIDE, 320))
