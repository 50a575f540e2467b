"""The source model in a real browser (issue 15): after the ELFE scenario Anna picks the
sources, starts the query, reads the merged overview, opens an entry and requests its
personal data, and saves the PDF - with JavaScript and without, every page axe-checked
(no serious or critical violation), and reflowing at 320 CSS px.
"""

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Cockpit, axe_check
from tests.browser.test_cockpit_browser import ANNA, OVERFLOW, WIDE, login, tab_to

pytestmark = pytest.mark.browser


def start_query(page: Any) -> None:
    """On the picker (every source ticked): "Abfrage starten", back on the overview."""
    page.locator('button[name=action][value=start]').click()
    page.wait_for_selector('main a[href^="/entries/"]')


def test_picker_overview_entry_and_content(page: Any, cockpit: Cockpit) -> None:
    assert cockpit.scenario_ok, cockpit.scenario_output
    login(page, ANNA)
    boxes = page.locator('input[type=checkbox][name=source]')
    assert boxes.count() >= 3
    assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))
    assert page.locator("fieldset legend").count() >= 2  # grouped
    axe_check(page)

    start_query(page)
    main = page.inner_text("main")
    assert "Datenübermittlung am" in main
    assert "Elterngeld" in main
    assert "Quellen erneut abfragen" in main
    axe_check(page)

    # an entry from a Standesamt: its facts, then its personal data on request
    row = page.locator("main table tbody tr").filter(has_text="Standesamt").first
    row.locator('a[href^="/entries/"]').click()
    page.wait_for_url(re.compile(r"/entries/[0-9a-f]{32}$"))
    assert page.locator("h1").inner_text().startswith("Datenübermittlung am")
    axe_check(page)
    page.locator('form[action$="/content"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"/entries/[0-9a-f]{32}#content$"))
    content = page.inner_text("main")
    assert "Lebensdaten" in content and "Vornamen" in content
    child = cockpit.citizen("elfe", "child")
    assert child["given_names"] in content
    axe_check(page)

    with page.expect_download() as info:
        page.locator('main a[href^="/sources/report.pdf"]').click()
    saved = Path(info.value.path()).read_bytes()
    assert info.value.suggested_filename.endswith(".pdf") and saved.startswith(b"%PDF-")

    # the picker again, and in English
    page.goto("/sources")
    axe_check(page)
    page.goto("/?lang=en")
    assert "Ask the sources again" in page.inner_text("main")
    axe_check(page)


def test_a_late_source_is_named_and_the_page_stays_accessible(page: Any,
                                                               cockpit: Cockpit) -> None:
    """Standesamt Bremen answers after the desk's deadline (the simulators' latency knob):
    the overview names it in its status box, and that box passes axe too."""
    knob = {"source": "standesamt:04011000", "source_latency_ms": 3000}
    assert cockpit.demo.http.put("/registers/_knobs", json=knob).status_code == 200
    try:
        login(page, ANNA, scan=False)
        start_query(page)
        assert "Standesamt Bremen: keine Antwort" in page.inner_text("main")
        axe_check(page)
    finally:
        cockpit.demo.http.put("/registers/_knobs", json={**knob, "source_latency_ms": 0})


def test_works_without_javascript(new_context: Any, cockpit: Cockpit) -> None:
    """The picker's "Keine auswählen", ticking one group, the query and the personal data:
    plain forms, no script."""
    page = new_context(java_script_enabled=False).new_page()
    page.goto("/")
    page.locator('a[href^="/login/start"]').click()
    page.wait_for_url(re.compile(r"/demo/authorize\?"))
    page.locator(f'input[name=idnr][value="{ANNA}"]').check()
    page.locator('button[value=login]').click()
    page.wait_for_url(cockpit.base_url + "/")
    page.locator('button[name=action][value=none]').click()
    page.wait_for_load_state()
    boxes = page.locator('input[type=checkbox][name=source]')
    assert not any(boxes.nth(i).is_checked() for i in range(boxes.count()))
    page.locator('button[name=action][value=all]').click()
    page.wait_for_load_state()
    assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))
    start_query(page)
    row = page.locator("main table tbody tr").filter(has_text="Standesamt").first
    row.locator('a[href^="/entries/"]').click()
    page.wait_for_url(re.compile(r"/entries/"))
    page.locator('form[action$="/content"] button[type=submit]').click()
    page.wait_for_url(re.compile(r"#content$"))
    assert "Lebensdaten" in page.inner_text("main")


def test_keyboard_reaches_the_query_and_an_entry(page: Any, cockpit: Cockpit) -> None:
    login(page, ANNA, scan=False)
    tab_to(page, lambda e: e["tag"] == "button" and e["value"] == "start", limit=200)
    page.keyboard.press("Enter")
    page.wait_for_selector('main a[href^="/entries/"]')
    tab_to(page, lambda e: (e["href"] or "").startswith("/entries/"), limit=200)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/entries/"))
    assert page.locator("h1").inner_text().strip()


def test_reflow_at_320_css_pixels(new_context: Any) -> None:
    page = new_context(viewport={"width": 320, "height": 640}).new_page()
    login(page, ANNA, scan=False)
    for path in ("/", "/sources"):
        page.goto(path)
        assert page.evaluate(OVERFLOW, 320) == [], f"overflows at 320 px on {path}"
    start_query(page)
    entry = page.locator('main a[href^="/entries/"]').first.get_attribute("href")
    for path in ("/", entry):
        page.goto(path)
        assert page.evaluate(OVERFLOW, 320) == [], f"overflows at 320 px on {path}"
        assert page.evaluate("document.documentElement.scrollWidth") <= 321, (
            path, page.evaluate(WIDE, 320))
