"""Texts from policy documents are escaped in the web view (XSS).

Its own module on purpose: it starts its own demo server with a hostile policy document, and
on PostgreSQL two demo servers must not run on one database at the same time (the other's
outbox delivery would take this one's transfer records), so the module server of
test_web_cockpit.py must be stopped first."""

import re
import shutil
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from policies import DOCUMENTS_DIR
from tests.e2e.conftest import in_days
from tests.e2e.helpers import ELTERNGELD, NAMENSDIENST, birth_request
from tests.e2e.web_support import Browser, form

CALLBACK = "/elterngeld/consent-callback"  # registered in the demo policy document


def test_texts_from_policy_documents_are_escaped(make_demo: Any, tmp_path: Any) -> None:
    """Service names and purposes come from documents: a hostile one is shown as text."""
    directory = tmp_path / "policies"
    shutil.copytree(DOCUMENTS_DIR, directory)
    document = directory / "elterngeldstelle-bremen.toml"
    text = document.read_text().replace('name = "Elterngeld online (ELFE)"',
                                        'name = "Elterngeld <script>alert(1)</script>"')
    text = text.replace("Wann ist Ihr Kind geboren", "Wann <img src=x onerror='alert(2)'>")
    document.write_text(text)
    demo = make_demo(policies_dir=directory)
    anna, child = demo.citizen("elfe", "parent"), demo.citizen("elfe", "child")
    named = demo.request_proof(NAMENSDIENST, birth_request(demo, "namensbestimmung"))
    seen = demo.transfers(anna["idnr"], wait_for={named.json()["transfer_id"]}, timeout=60)
    assert named.json()["transfer_id"] in {i["id"] for i in seen}  # Anna is a parent
    # delivered, not refused: only a transfer that happened is in the sources' protocols
    consent = demo.grant(anna["idnr"], ELTERNGELD, ["birth"], "elterngeld-antrag",
                         subject=child["idnr"])
    delivered = demo.request_proof(ELTERNGELD, {**birth_request(demo),
                                                "consent_id": consent["id"]})
    assert delivered.status_code == 200, delivered.text
    # generous: delivery is asynchronous (retried with backoff) and CI machines are loaded
    deadline = time.monotonic() + 60
    while not any(i["service"]["id"] == ELTERNGELD for i in demo.transfers(anna["idnr"])):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    browser = Browser(demo.base_url)
    try:
        port = urlsplit(demo.base_url).port
        consent = "/consents/new?" + urlencode({
            "client_id": ELTERNGELD, "proof_types": "birth", "purpose": "elterngeld-antrag",
            "valid_until": in_days(5), "subject": child["idnr"],
            "redirect_uri": f"http://127.0.0.1:{port}{CALLBACK}"})
        screen = browser.login(anna["idnr"], start=consent)
        picker = browser.get("/")  # the source model: the overview after a query (issue 15)
        browser.post("/sources/query", data={
            "csrf_token": form(picker.text, "/sources/query").fields["csrf_token"],
            "source": re.findall(r'name="source" value="([^"]+)"', picker.text),
            "action": "start"})
        overview = browser.get("/")
        for page in (screen, overview):
            assert page.status_code == 200
            assert "<script>alert(1)" not in page.text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<img src=x" not in screen.text
        assert "&lt;img src=x onerror=&#39;alert(2)&#39;&gt;" in screen.text
    finally:
        browser.close()
