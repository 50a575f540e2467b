"""Nothing kept (issue 15 §4, decision 0034): a citizen's session in the source model leaves
no trace in the cockpit, on SQLite and on PostgreSQL (EINMAL_TEST_DATABASE_URL).

A demo server; the Namensdienst fetches a child's birth proof (so the log holds pseudonymous
entries about the parent and the child). Then the parent's session: the web view (login,
every source asked, the birth entry's content data fetched, the PDF saved, logout) and the
citizen API (sources asked through the relay, content fetched). Afterwards, with the server
stopped:

* no file of the data dir and no column of the database holds the citizens' IdNrs, names, or
  a content value the register sent (the birth date, in both forms);
* the cockpit's pseudonym of each citizen appears in exactly the cockpit rows that held it
  before the session (the log's entries, written when the broker delivered) - none new;
* the desk holds nothing of the session after logout.
"""

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from einmal.settings import load_settings
from einmal.store import create_engine, dispose
from einmal_client.client import CitizenClient
from tests.conftest import TEST_DATABASE_URL, LiveServer, free_port, start_server
from tests.e2e.conftest import Demo
from tests.e2e.helpers import NAMENSDIENST, birth_request
from tests.e2e.security_support import wait_for_log
from tests.e2e.web_support import Browser
from tests.integration.test_no_idnr_at_rest import (
    DEMO_FIXTURE,
    Needle,
    _needles,
    _scan_database,
    _scan_files,
)


def _cockpit_url(live: LiveServer) -> str:
    url = live.settings.database_url_for("cockpit")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _rows_with(url: str, needles: list[bytes]) -> set[str]:
    """Every row of every cockpit table (``cockpit_*`` and the shared-state tables) whose
    text holds one of ``needles``, as ``table: row``."""
    engine = create_engine(url)
    found: set[str] = set()
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            for table in tables:
                if not table.startswith("cockpit"):
                    continue
                rows = await conn.execute(text(
                    f'SELECT * FROM "{table}"'))  # noqa: S608 - names from the catalogue
                for row in rows:
                    raw = repr(tuple(row)).encode() + b"".join(
                        bytes(v) for v in row if isinstance(v, bytes | memoryview))
                    if any(n in raw or n.hex().encode() in raw for n in needles):
                        found.add(f"{table}: {row!r}")
    finally:
        await dispose(engine)
    return found


def _value_needles(child: dict[str, Any]) -> list[Needle]:
    year, month, day = child["birth_date"].split("-")
    forms = {child["birth_date"], f"{day}.{month}.{year}"}
    return [Needle(f"birth date {f}", f.encode(), re.compile(re.escape(f.encode())))
            for f in sorted(forms)]


@pytest.fixture(name="session_run", scope="module")
def fx_session_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("dsc-nothing-kept")
    # Every source must answer in time here (the entries' content is fetched): the deadline is
    # the sources' timeout, not 1.5 s, which a loaded machine running the suite in parallel
    # workers can miss (a late source is tested in test_web_sources.py).
    settings = load_settings({}, data_dir=data_dir, demo=True, simulator_families=60,
                             delivery_interval_s=0.1, database_url=TEST_DATABASE_URL,
                             port=free_port(), source_deadline_s=10.0)
    live = start_server(settings)
    stopped = False
    try:
        credentials = json.loads((live.data_dir / DEMO_FIXTURE).read_text())
        with httpx.Client(base_url=live.base_url, timeout=20) as http:
            demo = Demo(base_url=live.base_url, credentials=credentials, http=http)
            parent, child = demo.citizen("elfe", "parent"), demo.citizen("elfe", "child")
            released = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
            assert released.status_code == 200, released.text
            demo.transfers(parent["idnr"], wait_for={released.json()["transfer_id"]})
            wait_for_log(demo, 1)
            cockpit = live.component("cockpit")
            pseudonyms = [bytes.fromhex(cockpit.service.pseudonym(p["idnr"]))
                          for p in (parent, child)]
            before = asyncio.run(_rows_with(_cockpit_url(live), pseudonyms))

            # the web view: every source, the birth entry's content, the PDF, logout
            browser = Browser(live.base_url)
            page = browser.login(parent["idnr"])
            picker = re.findall(r'name="source" value="([^"]+)"', page.text)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert picker and token
            page = browser.post("/sources/query", data={
                "csrf_token": token.group(1), "source": picker, "action": "start"})
            assert page.status_code == 200, page.text[:300]
            session_id = browser.session_cookie
            assert session_id and cockpit.web.sources.answers(session_id) is not None
            entries = re.findall(r'href="(/entries/[0-9a-f]{32})"', page.text)
            fetched = 0
            for href in entries:
                detail = browser.get(href)
                if f"{href}/content" in detail.text:
                    shown = browser.submit(detail, f"{href}/content")
                    fetched += child["given_names"] in shown.text
            assert fetched >= 1, "no entry showed the child's names as sent"
            assert browser.get("/sources/report.pdf").status_code == 200
            browser.logout(browser.get("/"))
            held_after_logout = cockpit.web.sources.answers(session_id)
            browser.close()

            # the citizen API: asked through the relay, content fetched
            async def api() -> int:
                async with CitizenClient(live.base_url, demo.citizen_token(parent["idnr"]),
                                         idnr=parent["idnr"]) as citizen:
                    answers = await citizen.source_query()
                    for answer in answers:
                        for entry in answer.entries:
                            await citizen.source_content(answer.source, entry.id)
                            return 1
                return 0
            assert asyncio.run(api()) == 1
        after_rows = asyncio.run(_rows_with(_cockpit_url(live), pseudonyms))
        live.stop()
        stopped = True
        yield {"live": live, "credentials": credentials, "child": child, "before": before,
               "after": after_rows, "held_after_logout": held_after_logout}
    finally:
        if not stopped:
            live.stop()


def test_the_desk_forgets_the_session_at_logout(session_run: dict[str, Any]) -> None:
    assert session_run["held_after_logout"] is None


def test_no_new_cockpit_row_names_the_citizen_by_pseudonym(session_run: dict[str, Any],
                                                           ) -> None:
    before, after = session_run["before"], session_run["after"]
    assert before, "the log should hold the transfer's entry (the audit layer)"
    assert after == before, "rows added by the session:\n" + "\n".join(sorted(after - before))


def test_no_idnr_name_or_content_value_in_any_file_or_column(session_run: dict[str, Any],
                                                             ) -> None:
    citizens = [c for c in session_run["credentials"]["citizens"] if c.get("family")]
    needles = _needles(citizens) + _value_needles(session_run["child"])
    live: LiveServer = session_run["live"]
    hits = _scan_files(live.data_dir, needles, skip=frozenset({DEMO_FIXTURE}))
    if TEST_DATABASE_URL:
        hits += asyncio.run(_scan_database(TEST_DATABASE_URL, needles))
    assert not hits, "citizen data at rest after the session:\n" + "\n".join(hits)
