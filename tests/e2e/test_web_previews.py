"""The preview pages of the citizen web view, end to end: login through the demo IdP, the
list, the detail with the values, release / refuse with a CSRF-protected form, the result,
and what the online service gets afterwards (real HTTP, no JavaScript)."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import Demo, bearer
from tests.e2e.helpers import UVO
from tests.e2e.security_support import module_server
from tests.e2e.web_support import Browser, form, link, parse, visible_text

RETURN = "https://uvo.example.invalid/einwilligung/zurueck"  # registered in the UVO policy


@dataclass
class World:
    live: Any
    demo: Demo
    clara: dict[str, Any]
    anna: dict[str, Any]
    browsers: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        browser = Browser(self.live.base_url)
        self.browsers.append(browser)
        return browser

    def held(self) -> dict[str, Any]:
        """A custody proof held for Clara's release (the UVO policy asks for a preview)."""
        leon = self.demo.citizen("uvo", "child")
        consent = self.demo.grant(self.clara["idnr"], UVO, ["custody"],
                                  "unterhaltsvorschuss-antrag", subject=leon["idnr"])
        response = self.demo.request_proof(UVO, {
            "proof_type": "custody", "subject": leon["idnr"],
            "purpose": "unterhaltsvorschuss-antrag", "consent_id": consent["id"],
            "parameters": {"land": self.clara["home_land"],
                           "as_of": datetime.now(UTC).date().isoformat()}})
        assert response.status_code == 202, response.text
        return response.json()

    def collect(self, request_id: str) -> Any:
        return self.demo.http.get(f"/v1/proof-requests/{request_id}",
                                  headers=bearer(self.demo.service_token(UVO)))


@pytest.fixture(name="world", scope="module")
def fx_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for live, demo in module_server(tmp_path_factory.mktemp("web-previews")):
        world = World(live=live, demo=demo, clara=demo.citizen("uvo", "parent"),
                      anna=demo.citizen("elfe", "parent"))
        yield world
        for browser in world.browsers:
            browser.close()


def _clara(world: World, start: str) -> tuple[Browser, Any]:
    browser = world.browser()
    page = browser.login(world.clara["idnr"], start=start)
    assert page.status_code == 200, page.text[:500]
    return browser, page


class TestPreviewPages:
    def test_list_shows_what_waits(self, world: World) -> None:
        held = world.held()
        browser, page = _clara(world, "/previews")
        assert page.url.path == "/previews"
        text = visible_text(page.text)
        assert "Warten auf Ihre Entscheidung" in text
        assert "Unterhaltsvorschuss online" in text
        assert "Nachweis des Sorgerechts" in text
        assert link(page.text, f"/previews/{held['request_id']}")
        english = browser.get("/previews?lang=en")
        assert "Waiting for your decision" in visible_text(english.text)

    def test_detail_shows_the_values_and_accept_releases_them(self, world: World) -> None:
        held = world.held()
        request_id = held["request_id"]
        # the service's preview_url leads here (after login)
        path = held["preview_url"].removeprefix(world.live.base_url)
        browser, page = _clara(world, path)
        assert page.url.path == f"/previews/{request_id}"
        text = visible_text(page.text)
        for expected in ("Vorschau für Unterhaltsvorschuss online",
                         "Wir prüfen, ob Sie das alleinige Sorgerecht",  # purpose
                         "§ 1 UVG",  # legal basis
                         "Art des Sorgerechts", "sole",  # the value, labelled
                         "Wer das Sorgerecht hat", world.clara["given_names"],
                         "2190 Tage", "Freigabe möglich bis"):
            assert expected in text, expected
        decision = form(page.text, f"/previews/{request_id}")
        assert decision.method == "post"
        assert decision.fields["csrf_token"]
        assert ("decision", "accept") in decision.buttons
        assert ("decision", "refuse") in decision.buttons
        # nothing went to the service yet
        assert world.collect(request_id).status_code == 202
        done = browser.submit(page, f"/previews/{request_id}", button=("decision", "accept"))
        assert done.url.path == f"/previews/{request_id}"
        text = visible_text(done.text)
        assert "Freigegeben. Der Dienst kann den Nachweis jetzt abholen." in text
        assert "Wie geht es weiter?" in text
        assert not [f for f in done.text.split("<form") if 'value="accept"' in f]
        answer = world.collect(request_id)
        assert answer.status_code == 200, answer.text
        after = visible_text(browser.get(f"/previews/{request_id}").text)
        assert "vom Dienst abgeholt" in after
        assert "sole" not in after  # the held values are gone

    def test_refuse(self, world: World) -> None:
        request_id = world.held()["request_id"]
        browser, page = _clara(world, f"/previews/{request_id}")
        done = browser.submit(page, f"/previews/{request_id}", button=("decision", "refuse"))
        text = visible_text(done.text)
        assert "Abgelehnt. Der Dienst erhält nichts." in text
        assert "Der Dienst erhält nichts und wird darüber informiert" in text
        refusal = world.collect(request_id)
        assert refusal.status_code == 403
        assert refusal.json()["type"] == "urn:einmal:problem:preview-refused"
        listed = visible_text(browser.get("/previews").text)
        assert "Zuletzt entschieden" in listed and "abgelehnt" in listed

    def test_a_stale_form_says_it_was_decided(self, world: World) -> None:
        request_id = world.held()["request_id"]
        browser, page = _clara(world, f"/previews/{request_id}")
        browser.submit(page, f"/previews/{request_id}", button=("decision", "refuse"))
        again = browser.submit(page, f"/previews/{request_id}", button=("decision", "accept"))
        assert "Über diese Vorschau war schon entschieden." in visible_text(again.text)
        assert world.collect(request_id).status_code == 403

    def test_back_to_the_service_only_to_a_registered_address(self, world: World) -> None:
        request_id = world.held()["request_id"]
        browser, page = _clara(world, f"/previews/{request_id}?return={RETURN}")
        assert link(page.text, RETURN)
        done = browser.submit(page, form(page.text, f"/previews/{request_id}?return="
                                         f"{RETURN.replace(':', '%3A').replace('/', '%2F')}")
                              .action, button=("decision", "accept"))
        assert "Zurück zu Unterhaltsvorschuss online" in visible_text(done.text)
        assert link(done.text, RETURN)
        evil = browser.get(f"/previews/{request_id}?return=https://evil.example/")
        assert not [h for h in parse(evil.text).links if "evil.example" in h.split("?")[0]]
        assert "Zurück zu" not in visible_text(evil.text)


class TestPreviewPagesRefuse:
    def test_another_citizen_gets_not_found(self, world: World) -> None:
        request_id = world.held()["request_id"]
        browser = world.browser()
        page = browser.login(world.anna["idnr"], start=f"/previews/{request_id}")
        assert page.status_code == 404
        assert "Unterhaltsvorschuss" not in visible_text(page.text)
        csrf = form(browser.get("/previews").text, "/logout").fields["csrf_token"]
        forged = browser.post(f"/previews/{request_id}",
                              data={"csrf_token": csrf, "decision": "accept"})
        assert forged.status_code == 404
        assert world.collect(request_id).status_code == 202  # still pending

    def test_post_without_csrf_token_is_refused(self, world: World) -> None:
        request_id = world.held()["request_id"]
        browser, _ = _clara(world, f"/previews/{request_id}")
        forged = browser.post(f"/previews/{request_id}", data={"decision": "accept"})
        assert forged.status_code == 403
        wrong = browser.post(f"/previews/{request_id}",
                             data={"decision": "accept", "csrf_token": "0" * 64})
        assert wrong.status_code == 403
        assert world.collect(request_id).status_code == 202

    def test_an_unknown_decision_is_a_bad_request(self, world: World) -> None:
        request_id = world.held()["request_id"]
        browser, page = _clara(world, f"/previews/{request_id}")
        csrf = form(page.text, f"/previews/{request_id}").fields["csrf_token"]
        bad = browser.post(f"/previews/{request_id}", data={"csrf_token": csrf,
                                                            "decision": "maybe"})
        assert bad.status_code == 400
        assert world.collect(request_id).status_code == 202

    @pytest.mark.parametrize("path", ["/previews/not-an-id", "/previews/" + "0" * 36])
    def test_malformed_or_unknown_id(self, world: World, path: str) -> None:
        browser, _ = _clara(world, "/previews")
        assert browser.get(path).status_code == 404

    def test_anonymous_is_sent_to_login(self, world: World) -> None:
        browser = world.browser()
        response = browser.http.get("/previews", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=%2Fpreviews")
