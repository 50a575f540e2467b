"""The preview detail page renders any proof value safely and readably: nested lists and
mappings, booleans, missing values; text from the register is escaped (autoescape)."""

from cockpit.web.core import _environment
from cockpit.web.i18n import load_catalogs


def _render(item: dict, values: list, **extra: object) -> str:
    catalogs = load_catalogs()
    template = _environment(catalogs).get_template("previews/detail.html")
    context = {"t": catalogs.translator("de"), "lang": "de", "switch_lang": "en",
               "switch_url": "/previews/x?lang=en", "demo": True, "path": "/previews/x",
               "logged_in": True, "citizen_masked": "67*******44", "session_ends": "05:00",
               "csrf": "c" * 64, "notice": None, "back": None, "subfields": {"given_names"},
               "action": "/previews/x", "item": item, "values": values, **extra}
    return template.render(context)


ITEM = {"request_id": "x", "service_id": "s", "service_name": "Dienst <b>X</b>",
        "authority": "Amt", "proof_type": "custody", "purpose": "p", "purpose_text": "Zweck",
        "legal_basis": "§ 1", "retention_days": 10, "subject_masked": "54*******80",
        "fields": ["holders", "since"], "created_at": "2026-11-29T04:00:00Z",
        "expires_at": "2026-11-29T04:15:00Z", "status": "pending", "register_name": "Reg"}


def test_nested_values_booleans_and_escaping() -> None:
    html = _render(ITEM, [
        ("holders", [{"given_names": "<script>alert(1)</script>", "verified": True}]),
        ("since", None), ("custody", [])])
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Dienst &lt;b&gt;X&lt;/b&gt;" in html
    assert "<dt>Vornamen</dt>" in html  # a known sub-field gets its label
    assert "<dt>verified</dt><dd>ja</dd>" in html  # an unknown one its name; True is "ja"
    assert "keine Angabe" in html and "keine" in html
    assert 'name="decision" value="accept"' in html and 'name="decision" value="refuse"' in html
    assert 'name="csrf_token" value="' + "c" * 64 in html


def test_a_decided_preview_has_no_form() -> None:
    html = _render({**ITEM, "status": "refused"}, [])
    assert 'name="decision"' not in html
    assert "Sie haben abgelehnt." in html
