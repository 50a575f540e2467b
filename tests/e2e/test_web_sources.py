"""The citizen web view in the source model, end to end (issue 15, items 3, 6 and 8): a real
OIDC login through the demo IdP, the picker, the cockpit's desk asking the demo's sources
(the broker and the simulated registers) over real HTTP, the merged overview, an entry's
content data from its register, the PDF, and logout dropping it all."""

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from cockpit.web.merged import entry_handle
from tests.e2e.conftest import Demo
from tests.e2e.helpers import ELTERNGELD, NAMENSDIENST, birth_request
from tests.e2e.security_support import module_server, wait_for_log
from tests.e2e.web_support import Browser, form, visible_text
from tests.unit.cockpit.web.pdf_text import pdf_text


@dataclass
class World:
    live: Any
    demo: Demo
    anna: dict[str, Any]
    clara: dict[str, Any]
    child: dict[str, Any]
    delivered_id: str
    _browsers: list[Browser] = field(default_factory=list, init=False)

    def browser(self) -> Browser:
        browser = Browser(self.live.base_url)
        self._browsers.append(browser)
        return browser

    @property
    def desk(self) -> Any:
        return self.live.component("cockpit").web.sources

    @property
    def broker_name(self) -> str:
        return str(next(s.name for s in self.desk.sources if s.kind == "broker"))


@pytest.fixture(name="world", scope="module")
def fx_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for live, demo in module_server(tmp_path_factory.mktemp("web-sources")):
        anna, clara = demo.citizen("elfe", "parent"), demo.citizen("uvo", "parent")
        child = demo.citizen("elfe", "child")
        consent = demo.grant(anna["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                             subject=child["idnr"])
        delivered = demo.request_proof(ELTERNGELD, {**birth_request(demo),
                                                    "consent_id": consent["id"]})
        assert delivered.status_code == 200, delivered.text
        legal = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
        assert legal.status_code == 200, legal.text
        demo.transfers(anna["idnr"], wait_for={delivered.json()["transfer_id"],
                                               legal.json()["transfer_id"]})
        wait_for_log(demo, 2)
        world = World(live=live, demo=demo, anna=anna, clara=clara, child=child,
                      delivered_id=delivered.json()["transfer_id"])
        yield world
        for browser in world._browsers:
            browser.close()


def ask(browser: Browser, page: httpx.Response, *ids: str) -> httpx.Response:
    """Tick ``ids`` (all that the picker offers if none) and start the query."""
    offered = re.findall(r'name="source" value="([^"]+)"', page.text)
    picker = form(page.text, "/sources/query")
    return browser.post("/sources/query", data={
        "csrf_token": picker.fields["csrf_token"], "source": list(ids or offered),
        "action": "start"})


def rows(page: httpx.Response) -> list[str]:
    """The overview's entry links, in order."""
    return re.findall(r'href="/entries/([0-9a-f]{32})"', page.text)


def test_the_demo_cockpit_has_a_desk(world: World) -> None:
    assert world.desk is not None
    assert any(s.kind == "broker" for s in world.desk.sources)
    assert any(s.id.startswith("standesamt") for s in world.desk.sources)


def test_after_login_the_picker_offers_every_source_ticked(world: World) -> None:
    page = world.browser().login(world.anna["idnr"])
    assert page.url.path == "/"
    offered = re.findall(r'name="source" value="([^"]+)"( checked)?', page.text)
    assert {source for source, _ in offered} == {s.id for s in world.desk.sources}
    assert all(ticked for _, ticked in offered)
    assert "Abfrage starten" in visible_text(page.text)
    # the long lists fold away (their boxes are sent all the same), the short ones show
    standesaemter = sum(1 for s in world.desk.sources if s.group == "Standesämter")
    assert f"{standesaemter} von {standesaemter} ausgewählt" in visible_text(page.text)
    assert page.text.count("<details>") == sum(
        1 for group in {s.group for s in world.desk.sources}
        if sum(1 for s in world.desk.sources if s.group == group) > 5)


def test_the_query_merges_the_sources_answers_into_the_overview(world: World) -> None:
    browser = world.browser()
    page = ask(browser, browser.login(world.anna["idnr"]))
    assert page.url.path == "/" and page.status_code == 200
    shown = visible_text(page.text)
    assert "Datenübermittlung am" in shown
    assert "Elterngeld online (ELFE)" in shown
    assert world.broker_name in shown  # the broker's own protocol
    assert "Standesamt" in shown  # the register's protocol
    assert "Quellen erneut abfragen" in shown
    assert len(rows(page)) >= 2
    # the broker's entries were checked against the signed log
    assert "im signierten Protokoll" in shown or "noch nicht im Protokoll" in shown


def test_an_entry_fetches_its_content_from_the_register(world: World) -> None:
    browser = world.browser()
    page = ask(browser, browser.login(world.anna["idnr"]))
    answers = world.desk.answers(browser.session_cookie)
    assert answers is not None and answers.result is not None
    birth = next(e for e in answers.result.entries
                 if e.source.id.startswith("standesamt") and e.entry.recipient is not None
                 and e.entry.recipient.service_id == ELTERNGELD)
    handle = entry_handle(birth.key)
    assert handle in rows(page)
    detail = browser.get(f"/entries/{handle}")
    assert detail.status_code == 200
    assert world.child["given_names"] not in detail.text  # nothing before the citizen asks
    content = browser.submit(detail, f"/entries/{handle}/content")
    assert content.status_code == 200 and content.url.path == f"/entries/{handle}"
    shown = visible_text(content.text)
    assert "Lebensdaten" in shown and "Vornamen" in shown
    assert world.child["given_names"] in shown  # the child's names as they were sent

    report = browser.get("/sources/report.pdf")
    assert report.status_code == 200
    assert report.headers["content-type"] == "application/pdf"
    assert report.headers["content-disposition"].startswith("attachment;")
    assert report.headers["cache-control"] == "no-store"
    drawn = pdf_text(report.content)
    assert "Elterngeld online (ELFE)" in drawn
    assert world.child["given_names"] in drawn
    masked = f"{world.anna['idnr'][:2]}*******{world.anna['idnr'][-2:]}"
    assert f"Identifikationsnummer (gekürzt): {masked}" in drawn


def test_a_logged_broker_entry_links_a_receipt_that_verifies_as_a_download(world: World,
                                                                           ) -> None:
    browser = world.browser()
    ask(browser, browser.login(world.anna["idnr"]))
    deadline = time.monotonic() + 10
    while True:  # the log publishes a checkpoint within about a second
        answers = world.desk.answers(browser.session_cookie)
        logged = [e for e in answers.result.entries
                  if e.entry.transfer_id == world.delivered_id and e.log == "logged"]
        if logged or time.monotonic() > deadline:
            break
        time.sleep(0.5)
        ask(browser, browser.get("/sources"))
    assert logged, [(e.key, e.log) for e in answers.result.entries]
    detail = browser.get(f"/entries/{entry_handle(logged[0].key)}")
    assert "im signierten Protokoll" in visible_text(detail.text)
    receipt = f"/transfers/{world.delivered_id}/receipt"
    assert f'href="{receipt}"' in detail.text
    download = browser.get(receipt)
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")


def test_another_citizen_sees_neither_the_entries_nor_their_pages(world: World) -> None:
    anna = world.browser()
    ask(anna, anna.login(world.anna["idnr"]))
    answers = world.desk.answers(anna.session_cookie)
    handles = [entry_handle(e.key) for e in answers.result.entries]
    clara = world.browser()
    page = ask(clara, clara.login(world.clara["idnr"]))
    assert "Elterngeld online (ELFE)" not in visible_text(page.text)
    assert not set(rows(page)) & set(handles)
    assert clara.get(f"/entries/{handles[0]}").status_code == 404


def test_logout_drops_the_sessions_answers(world: World) -> None:
    browser = world.browser()
    page = ask(browser, browser.login(world.anna["idnr"]))
    session_id = browser.session_cookie
    assert world.desk.answers(session_id) is not None
    browser.logout(page)
    assert world.desk.answers(session_id) is None


def test_in_english(world: World) -> None:
    browser = world.browser()
    browser.login(world.anna["idnr"])
    english = browser.get("/?lang=en")
    assert "Start the query" in visible_text(english.text)
    page = ask(browser, english)  # the language is remembered (cookie)
    assert "Ask the sources again" in visible_text(page.text)


def test_a_late_source_is_named_while_the_others_show(world: World) -> None:
    """Standesamt Bremen answers after 3 s (the simulators' knob), the desk's deadline is
    1.5 s: the overview comes by the deadline with the others and names the late one."""
    knob = {"source": "standesamt:04011000", "source_latency_ms": 3000}
    assert world.demo.http.put("/registers/_knobs", json=knob).status_code == 200
    try:
        browser = world.browser()
        picker = browser.login(world.anna["idnr"])
        started = time.monotonic()
        page = ask(browser, picker)
        took = time.monotonic() - started
        shown = visible_text(page.text)
        assert "Standesamt Bremen: keine Antwort" in shown
        assert world.broker_name in shown and "Datenübermittlung am" in shown
        assert took < 3.0, took
        # the late answer is folded in when it comes: a later page shows it
        deadline = time.monotonic() + 10
        while "Standesamt Bremen: keine Antwort" in shown and time.monotonic() < deadline:
            time.sleep(0.5)
            shown = visible_text(browser.get("/").text)
        assert "Standesamt Bremen: keine Antwort" not in shown
    finally:
        world.demo.http.put("/registers/_knobs", json={**knob, "source_latency_ms": 0})
