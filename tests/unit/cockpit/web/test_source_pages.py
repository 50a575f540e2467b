"""The web view in the source model (issue 15, item 3), page by page, against a fake desk:
the picker after login, the query, the merged overview with the late and failed sources and
the log's flags, an entry's content data, the PDF, and that logout drops the answers."""

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from cockpit.sources.model import SourceInfo, SourceOutcome
from cockpit.web import merged
from cockpit.web import sources as source_pages
from cockpit.web.core import WebView
from cockpit.web.routes import create_web_router
from cockpit.web.session import COOKIE, WebSession
from einmal.settings import load_settings
from einmal_client.sources import (
    InvalidSourceAnswerError,
    SourceRefusedError,
    SourceUnavailableError,
)
from tests.unit.cockpit.web.fake_desk import (
    BIRTH_CONTENT,
    BROKER,
    NOW,
    SORGEREGISTER,
    SOURCES,
    STANDESAMT,
    FakeDesk,
    entry,
)
from tests.unit.cockpit.web.pdf_text import pdf_text

IDNR = "81709656328"
BIRTH = entry(STANDESAMT, 1, days_ago=3, categories=("child_given_names", "child_birth_date"),
              log="logged", transfer_id="tr-1", log_index=7, consent_id="c-1")
FLAGGED = entry(BROKER, 2, days_ago=40, service="kindergeld", service_name="Kindergeld online",
                categories=("income",), log="missing", transfer_id="tr-2",
                purpose="kindergeld-antrag")
PENDING = entry(BROKER, 3, days_ago=2, service="uvo", service_name="Unterhaltsvorschuss",
                log="pending", transfer_id="tr-3")
OUTCOMES = (SourceOutcome(source=STANDESAMT, status="ok", count=1),
            SourceOutcome(source=SORGEREGISTER, status="late"),
            SourceOutcome(source=BROKER, status="error", detail="refused the cockpit's request",
                          reason="refused"))


@dataclass
class Site:
    client: AsyncTestClient[Litestar]
    desk: FakeDesk
    view: WebView
    session: WebSession

    @property
    def csrf(self) -> str:
        return self.view.sessions.csrf_token(self.session)

    async def query(self, *ids: str) -> httpx.Response:
        return await self.client.post("/sources/query", data={
            "csrf_token": self.csrf, "source": list(ids or [s.id for s in SOURCES]),
            "action": "start"})


def desk_with_result() -> FakeDesk:
    return FakeDesk(entries=(PENDING, BIRTH, FLAGGED), outcomes=OUTCOMES,
                    unreported=(("tr-9", NOW, "einkommensregister"),),
                    contents={BIRTH.key: BIRTH_CONTENT,
                              FLAGGED.key: InvalidSourceAnswerError("RAW <garbage> 4711"),
                              PENDING.key: SourceUnavailableError("uvo down")})


@pytest.fixture(name="desk")
def fx_desk() -> FakeDesk:
    return desk_with_result()


@pytest.fixture(name="site")
async def fx_site(tmp_path: Path, desk: FakeDesk) -> AsyncIterator[Site]:
    settings = load_settings({}, data_dir=tmp_path, demo=True)
    view = WebView(settings, policies=None, sources=desk)
    app = Litestar(route_handlers=[create_web_router(view)], template_config=view.templates)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        client.follow_redirects = False
        session = await view.sessions.login(IDNR)
        client.cookies.set(COOKIE, session.id)
        yield Site(client=client, desk=desk, view=view, session=session)
    await view.close()


def text(response: httpx.Response) -> str:
    """The page's text without tags (entities decoded), spaces collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", response.text)))


def checked(response: httpx.Response) -> set[str]:
    return set(re.findall(r'name="source" value="([^"]+)" checked', response.text))


# -- the picker and the query -----------------------------------------------------------------

async def test_after_login_the_picker_shows_every_source_preselected(site: Site) -> None:
    page = await site.client.get("/")
    assert page.status_code == 200
    assert checked(page) == {s.id for s in SOURCES}
    shown = text(page)
    for group in ("Standesämter", "Sorgeregister", "Vermittlungsstellen"):
        assert f"Stellen: {group}" in shown  # one fieldset per group
    assert "Abfrage starten" in shown
    assert len(re.findall(r"<fieldset>", page.text)) == 3
    assert site.desk.queried == []


async def test_select_none_and_all_redraw_the_picker_without_asking(site: Site) -> None:
    none = await site.client.post("/sources/query", data={
        "csrf_token": site.csrf, "source": [STANDESAMT.id], "action": "none"})
    assert none.status_code == 200 and checked(none) == set()
    every = await site.client.post("/sources/query", data={
        "csrf_token": site.csrf, "action": "all"})
    assert every.status_code == 200 and checked(every) == {s.id for s in SOURCES}
    assert site.desk.queried == [] and site.desk.opened == []


async def test_start_asks_the_chosen_known_sources_and_redirects(site: Site) -> None:
    answer = await site.client.post("/sources/query", data={
        "csrf_token": site.csrf, "source": [BROKER.id, "evil:elsewhere", STANDESAMT.id],
        "action": "start"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    # the session's end goes to the desk (its idle end: sooner than the absolute one here):
    # the desk drops the answers then
    [(opened_for, expires_at)] = site.desk.opened
    assert opened_for == site.session.id
    assert abs(expires_at - (time.time() + site.view.sessions.idle_s)) < 5
    assert expires_at < site.session.ends_at
    assert site.desk.queried == [(site.session.id, IDNR, (STANDESAMT.id, BROKER.id))]


async def test_each_page_moves_the_answers_end_with_the_sessions_idle_end(site: Site,
                                                                         ) -> None:
    await site.query()
    held = site.desk.answers(site.session.id)
    assert held is not None
    held.expires_at = 0.0  # as if it were about to go
    assert (await site.client.get("/")).status_code == 200
    assert time.time() < held.expires_at <= site.session.ends_at


async def test_start_with_nothing_chosen_is_refused(site: Site) -> None:
    answer = await site.client.post("/sources/query", data={"csrf_token": site.csrf,
                                                            "action": "start"})
    assert answer.status_code == 400
    assert "mindestens eine Stelle" in text(answer)
    assert site.desk.queried == []


async def test_start_without_csrf_token_is_refused(site: Site) -> None:
    answer = await site.client.post("/sources/query", data={"source": [STANDESAMT.id],
                                                            "action": "start"})
    assert answer.status_code == 403
    assert site.desk.queried == [] and site.desk.opened == []


# -- the overview -------------------------------------------------------------------------------

async def test_overview_lists_the_merged_entries_and_names_who_did_not_answer(site: Site,
                                                                             ) -> None:
    await site.query()
    page = await site.client.get("/")
    assert page.status_code == 200
    shown = text(page)
    assert shown.count("Datenübermittlung am") == 3
    for name in ("Elterngeld online", "Kindergeld online", "Unterhaltsvorschuss",
                 "Elterngeldstelle Bremen", "Standesamt Bremen", "elterngeld-antrag",
                 "§ 9 IDNrG", "mit Ihrer Einwilligung"):
        assert name in shown, name
    assert "Sorgeregister Bremen: keine Antwort" in shown
    assert "Vermittlungsstelle Einmal: Fehler" in shown
    # the reason in the page's language, never the desk's English words
    assert "Die Stelle hat die Anfrage des Datenschutzcockpits abgelehnt." in shown
    assert "refused the cockpit" not in shown
    assert "Quellen erneut abfragen" in shown and 'href="/sources"' in page.text
    # newest first, as the desk merged them
    table = shown[shown.index("Übermittlungen werden angezeigt"):]
    assert table.index("Unterhaltsvorschuss") < table.index("Elterngeld online") < table.index(
        "Kindergeld online")


async def test_overview_shows_the_log_check_of_every_entry(site: Site) -> None:
    await site.query()
    shown = text(await site.client.get("/"))
    assert "im signierten Protokoll" in shown
    assert "noch nicht im Protokoll" in shown
    assert "fehlt im Protokoll" in shown
    assert ("Das Transparenzprotokoll verzeichnet eine Übermittlung, die keine Quelle gemeldet"
            " hat.") in shown
    assert "einkommensregister" in shown and "tr-9" in shown


async def test_overview_filters_by_source_recipient_category_and_period(site: Site) -> None:
    await site.query()

    async def rows(**params: str) -> int:
        return text(await site.client.get("/", params=params)).count("Datenübermittlung am")

    assert await rows(source=BROKER.id) == 2
    assert await rows(recipient="elterngeld") == 1
    assert await rows(category="income") == 1
    assert await rows(period="30d") == 2
    assert await rows(source="nobody:known") == 3  # an unknown value filters nothing
    # a category the catalog knows is shown by its name
    assert "Vornamen des Kindes" in text(await site.client.get("/"))


async def test_overview_pages_and_charts_the_entries(site: Site) -> None:
    site.desk.entries = tuple(entry(STANDESAMT, n, days_ago=n) for n in range(1, 26))
    await site.query(STANDESAMT.id)
    first = await site.client.get("/")
    assert text(first).count("Datenübermittlung am") == 20
    assert "Seite 1 von 2" in text(first)
    second = await site.client.get("/", params={"page": "2"})
    assert text(second).count("Datenübermittlung am") == 5
    assert "insgesamt 25 Übermittlungen" in text(first)  # the chart's description


async def test_english(site: Site) -> None:
    picker = await site.client.get("/", params={"lang": "en"})
    assert "Start the query" in text(picker)
    await site.query()
    page = await site.client.get("/")
    assert "Sorgeregister Bremen: no answer" in text(page)
    assert "in the signed log" in text(page)


# -- an entry and its content data --------------------------------------------------------------

async def test_an_entry_shows_its_facts_and_fetches_its_content_on_request(site: Site) -> None:
    await site.query()
    handle = merged.entry_handle(BIRTH.key)
    detail = await site.client.get(f"/entries/{handle}")
    assert detail.status_code == 200
    shown = text(detail)
    for fact in ("Elterngeld online", "Elterngeldstelle Bremen", "Standesamt Bremen",
                 "elterngeld-antrag", "§ 9 IDNrG", "Vornamen des Kindes", "tr-1",
                 "im signierten Protokoll", "an Stelle 7"):
        assert fact in shown, fact
    assert 'href="/transfers/tr-1/receipt"' in detail.text  # a logged transfer: its receipt
    assert 'href="/consents#consent-c-1"' in detail.text
    assert "Persönliche Daten anfragen" in shown
    assert site.desk.fetched == []  # nothing asked before the citizen asks

    fetched = await site.client.post(f"/entries/{handle}/content",
                                     data={"csrf_token": site.csrf})
    assert fetched.status_code == 303
    assert fetched.headers["location"] == f"/entries/{handle}#content"
    assert site.desk.fetched == [(site.session.id, IDNR, BIRTH.key)]
    page = await site.client.get(f"/entries/{handle}")
    assert "Persönliche Daten anfragen" not in text(page)
    # the tree: nested groups as nested headings, pairs as definition lists
    assert re.search(r"<h3>Kind</h3>.*<dt>Vornamen</dt><dd>Émile Dvořák</dd>.*"
                     r"<h4>Lebensdaten</h4>.*<dt>Geburtsdatum</dt><dd>2024-03-01</dd>.*"
                     r"<h5>Eltern</h5>.*<dt>Mutter</dt><dd>Anna Müller</dd>", page.text, re.S)
    assert "&lt;b&gt;nicht fett&lt;/b&gt;" in page.text and "<b>nicht fett" not in page.text


@pytest.mark.parametrize(("key", "says"), [
    ("flagged", "nicht in Ordnung"), ("pending", "nicht erreichbar")])
async def test_a_source_error_is_shown_as_such_never_raw(site: Site, key: str,
                                                         says: str) -> None:
    await site.query()
    row = FLAGGED if key == "flagged" else PENDING
    handle = merged.entry_handle(row.key)
    answer = await site.client.post(f"/entries/{handle}/content",
                                    data={"csrf_token": site.csrf})
    assert answer.status_code == 502
    shown = text(answer)
    assert f"{row.source.name} hat die persönlichen Daten nicht geliefert." in shown
    assert says in shown
    assert "RAW" not in answer.text and "garbage" not in answer.text
    assert "uvo down" not in answer.text
    assert "Persönliche Daten anfragen" in shown  # the citizen may try again


def test_error_kinds() -> None:
    assert source_pages.error_kind(SourceRefusedError("x", status=403)) == "refused"
    assert source_pages.error_kind(SourceUnavailableError("x")) == "unavailable"
    assert source_pages.error_kind(InvalidSourceAnswerError("x")) == "invalid"


async def test_a_flagged_entry_warns_and_offers_no_receipt(site: Site) -> None:
    await site.query()
    page = await site.client.get(f"/entries/{merged.entry_handle(FLAGGED.key)}")
    assert "das Transparenzprotokoll enthält sie nicht" in text(page)
    assert "/receipt" not in page.text


async def test_unknown_entries_and_content_without_csrf(site: Site) -> None:
    await site.query()
    assert (await site.client.get("/entries/" + "0" * 32)).status_code == 404
    handle = merged.entry_handle(BIRTH.key)
    refused = await site.client.post(f"/entries/{handle}/content", data={})
    assert refused.status_code == 403
    assert site.desk.fetched == []


async def test_entries_of_a_session_that_never_asked_are_not_found(site: Site) -> None:
    assert (await site.client.get(f"/entries/{merged.entry_handle(BIRTH.key)}")
            ).status_code == 404


# -- the PDF ----------------------------------------------------------------------------------

@pytest.fixture(name="font", params=["unicode", "latin-1"])
def fx_font(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            ) -> Iterator[str]:
    if request.param == "latin-1":
        monkeypatch.setattr(source_pages, "_FONT_DIR", None)
    elif source_pages._FONT_DIR is None:
        pytest.skip("no DejaVu Sans on this machine (Debian: fonts-dejavu-core)")
    yield request.param


async def test_the_pdf_holds_the_list_and_the_content_fetched(site: Site, font: str) -> None:
    await site.query()
    handle = merged.entry_handle(BIRTH.key)
    await site.client.post(f"/entries/{handle}/content", data={"csrf_token": site.csrf})
    answer = await site.client.get("/sources/report.pdf")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.content.startswith(b"%PDF")
    drawn = pdf_text(answer.content)
    for expected in ("Datenschutzcockpit: Auskunft der gefragten Stellen", "81*******28",
                     "Elterngeld online", "Kindergeld online", "Standesamt Bremen",
                     "Sorgeregister Bremen: keine Antwort", "Geburtsdatum: 2024-03-01",
                     "Mutter: Anna Müller", "Persönliche Daten, die in dieser Sitzung"):
        assert expected in drawn, (expected, drawn[:2000])
    assert IDNR not in drawn
    # beyond Latin-1: as sent with the embedded font, a "?" with the core one
    assert ("Vornamen: Émile Dvořák" if font == "unicode" else "Vornamen: Émile Dvo?ák") in drawn


async def test_the_pdf_follows_the_overviews_filters(site: Site) -> None:
    await site.query()
    page = await site.client.get("/", params={"source": BROKER.id})
    assert 'href="/sources/report.pdf?source=broker%3Aeinmal"' in page.text
    drawn = pdf_text((await site.client.get("/sources/report.pdf",
                                            params={"source": BROKER.id})).content)
    assert "Kindergeld online" in drawn and "Elterngeld online" not in drawn


async def test_the_pdf_before_any_query_goes_back_to_the_picker(site: Site) -> None:
    answer = await site.client.get("/sources/report.pdf")
    assert answer.status_code == 303 and answer.headers["location"] == "/"


# -- the session's end ------------------------------------------------------------------------

async def test_logout_drops_the_answers(site: Site) -> None:
    await site.query()
    answer = await site.client.post("/logout", data={"csrf_token": site.csrf})
    assert answer.status_code == 303
    assert site.desk.dropped == [site.session.id]
    assert site.desk.answers(site.session.id) is None


async def test_an_ended_session_drops_its_answers_at_the_next_request(site: Site) -> None:
    await site.query()
    await site.view.sessions.delete(site.session.id)  # as the store does after the idle time
    answer = await site.client.get("/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert site.desk.dropped == [site.session.id]


async def test_without_a_desk_the_source_pages_do_not_exist(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=tmp_path, demo=True)
    view = WebView(settings, policies=None)
    app = Litestar(route_handlers=[create_web_router(view)], template_config=view.templates)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        session = await view.sessions.login(IDNR)
        client.cookies.set(COOKIE, session.id)
        for path in ("/sources", "/sources/report.pdf", "/entries/" + "0" * 32):
            assert (await client.get(path)).status_code == 404, path
        csrf = view.sessions.csrf_token(session)
        assert (await client.post("/sources/query", data={"csrf_token": csrf})
                ).status_code == 404
    await view.close()


def test_picker_groups_keep_the_desks_order_and_sort_their_sources_by_name() -> None:
    named = [SourceInfo(id=f"standesamt:{n}", name=name, kind="register", group="Standesämter")
             for n, name in enumerate(["Standesamt Köln", "Standesamt Bad Essen",
                                       "standesamt Aurich"])]
    [(group, members)] = merged.picker_groups(named, [])
    assert group == "Standesämter"
    assert [s.name for s, _ in members] == ["standesamt Aurich", "Standesamt Bad Essen",
                                            "Standesamt Köln"]
    groups = merged.picker_groups(SOURCES, [BROKER.id])
    assert [g for g, _ in groups] == ["Standesämter", "Sorgeregister", "Vermittlungsstellen"]
    assert [(s.id, ticked) for _, members in groups for s, ticked in members] == [
        (STANDESAMT.id, False), (SORGEREGISTER.id, False), (BROKER.id, True)]


def test_entry_handles_are_stable_and_plain() -> None:
    handle = merged.entry_handle(BIRTH.key)
    assert handle == merged.entry_handle(BIRTH.key) and re.fullmatch(r"[0-9a-f]{32}", handle)
    assert merged.entry_handle(FLAGGED.key) != handle


