"""Web view building blocks without a server: catalogs, redirects, sessions, chart, consent
request validation, redirect URI rules."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from litestar.testing import RequestFactory

from cockpit.web.consents import ConsentRequestError, parse_consent_request, with_query
from cockpit.web.core import TEMPLATES_DIR, safe_next
from cockpit.web.i18n import load_catalogs
from cockpit.web.overview import chart, filter_transfers
from cockpit.web.session import COOKIE, SessionManager
from policies import DOCUMENTS_DIR, load_policies
from policies._loader import redirect_uri_matches, redirect_uri_problem

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_catalogs_have_the_same_keys_in_both_languages() -> None:
    catalogs = load_catalogs()
    de, en = catalogs.messages["de"], catalogs.messages["en"]
    assert set(de) == set(en), sorted(set(de) ^ set(en))
    placeholders = re.compile(r"\{(\w+)\}")
    for key in de:
        assert set(placeholders.findall(de[key])) == set(placeholders.findall(en[key])), key


def test_every_literal_key_in_the_templates_exists() -> None:
    catalogs = load_catalogs()
    for path in Path(TEMPLATES_DIR).rglob("*.html"):
        for key in re.findall(r"""t\(["']([a-z_.]+[a-z_])["']\s*[,)]""", path.read_text()):
            assert catalogs.has(key), f"{path.name}: {key}"


@pytest.mark.parametrize(("value", "expected"), [
    ("/consents?x=1", "/consents?x=1"), ("//evil.example/", "/"), ("/\\evil.example", "/"),
    ("https://evil.example/", "/"), ("", "/"), (None, "/"), ("consents", "/"),
])
def test_safe_next_allows_only_local_paths(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


@pytest.mark.parametrize(("uri", "ok"), [
    ("https://svc.example/cb", True), ("http://127.0.0.1/cb", True),
    ("http://localhost:8080/cb", True), ("http://svc.example/cb", False),
    ("https://svc.example/cb#x", False), ("ftp://svc.example/cb", False),
    ("https://user@svc.example/cb", False),
])
def test_redirect_uri_rules(uri: str, ok: bool) -> None:
    assert (redirect_uri_problem(uri) is None) is ok


def test_loopback_redirect_uris_match_on_any_port_only() -> None:
    assert redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:5123/cb")
    assert not redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:5123/other")
    assert not redirect_uri_matches("http://127.0.0.1/cb", "https://127.0.0.1:5123/cb")
    assert not redirect_uri_matches("https://svc.example/cb", "https://svc.example:444/cb")
    assert not redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:99999/cb")


def test_with_query_keeps_a_registered_query() -> None:
    assert with_query("https://svc.example/cb?a=1", consent_id="c", state=None) == \
        "https://svc.example/cb?a=1&consent_id=c"


class TestConsentRequest:
    policies = load_policies(DOCUMENTS_DIR)
    base: ClassVar[dict[str, str]] = {
            "client_id": "elterngeldstelle-bremen", "proof_types": "birth,custody",
            "purpose": "elterngeld-antrag", "valid_until": "2027-01-31",
            "redirect_uri": "http://127.0.0.1:4000/elterngeld/consent-callback",
            "state": "s1", "max_uses": "2"}

    def test_valid(self) -> None:
        flow = parse_consent_request(self.base, self.policies, allow_test_idnrs=True, now=NOW)
        assert [p for p, _ in flow.proofs] == ["birth", "custody"]
        assert flow.body()["valid_until"] == "2027-01-31T22:59:59Z"  # end of day, Berlin
        assert flow.body()["max_uses"] == 2

    @pytest.mark.parametrize(("change", "field"), [
        ({"client_id": "x"}, "client_id"),
        ({"redirect_uri": "http://127.0.0.1:4000/kindergeld/consent-callback"}, "redirect_uri"),
        ({"purpose": "Werbung!"}, "purpose"), ({"proof_types": "income,passport"}, "proof_types"),
        ({"proof_types": ""}, "proof_types"), ({"valid_until": "2031-01-01"}, "valid_until"),
        ({"valid_until": "2026-12-01T00:00:00"}, "valid_until"), ({"max_uses": "0"}, "max_uses"),
        ({"subject": "1"}, "subject"), ({"state": "a b"}, "state"),
    ])
    def test_invalid(self, change: dict[str, str], field: str) -> None:
        with pytest.raises(ConsentRequestError) as caught:
            parse_consent_request({**self.base, **change}, self.policies,
                                  allow_test_idnrs=True, now=NOW)
        assert caught.value.field == field


class TestSessions:
    async def test_idle_and_absolute_timeouts(self) -> None:
        now = [1000.0]
        sessions = SessionManager(secret=b"k" * 32, idle_s=60, max_s=600, secure=False,
                                  clock=lambda: now[0])
        session = await sessions.new(idnr="81709656328", access_token="t", ends_at=1000 + 600)

        def request() -> object:
            return RequestFactory().get("/", headers={"cookie": f"{COOKIE}={session.id}"})

        now[0] += 59
        assert await sessions.load(request()) is not None  # renews the idle timer
        now[0] += 59
        assert await sessions.load(request()) is not None
        assert sessions.expires_at(session) <= 1000 + 600
        now[0] = 1000 + 600
        assert await sessions.load(request()) is None  # absolute end
        other = await sessions.new(idnr="81709656328", access_token="t", ends_at=10**9)
        now[0] += 61
        assert await sessions.load(RequestFactory().get(
            "/", headers={"cookie": f"{COOKIE}={other.id}"})) is None  # idle

    async def test_csrf_token_is_bound_to_the_session(self) -> None:
        sessions = SessionManager(secret=b"k" * 32, idle_s=60, max_s=600, secure=True)
        one, two = await sessions.new(), await sessions.new()
        assert sessions.csrf_ok(one, sessions.csrf_token(one))
        assert not sessions.csrf_ok(one, sessions.csrf_token(two))
        assert not sessions.csrf_ok(one, None)
        assert "Secure" in sessions.cookie(one.id).to_header()


def _item(days_ago: int, **extra: object) -> dict[str, object]:
    return {"occurred_at": (NOW - timedelta(days=days_ago)).isoformat(), "outcome": "delivered",
            "proof_type": "birth", "service": {"id": "s", "name": "S"}, "register": None,
            **extra}


def test_chart_counts_per_month_and_filters() -> None:
    items = [_item(0), _item(1), _item(40), _item(800)]
    drawn = chart(items, now=NOW)
    assert len(drawn["bars"]) == 24 and drawn["total"] == 3
    assert drawn["bars"][-1]["label"] == "11/2026" and drawn["bars"][-1]["count"] == 2
    assert drawn["bars"][-1]["tick"]  # the current month always has its label
    assert [b["tick"] for b in drawn["bars"]].count(True) == 8
    assert len(filter_transfers(items, period="30d", now=NOW)) == 2
    assert filter_transfers(items, outcome="refused") == []
