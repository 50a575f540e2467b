"""Screenshots of the citizen cockpit for the docs: ``python -m tests.browser.screenshots``.

Starts a demo server on a free port (throw-away data dir), plays the ELFE scenario, holds one
proof for Anna's preview, then logs in as Anna in headless Chromium (Debian's, as the browser
tests) and saves PNGs of the main pages to docs/img/cockpit-*.png (German; the overview also
in English). Run it from the repository root after changing a page; docs/cockpit.md shows them.

Options: ``--out DIR`` (default docs/img), ``--width PX`` (default 1024).
"""

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from playwright.sync_api import sync_playwright

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, run_elfe, start_demo
from tests.e2e.conftest import Demo

ELTERNGELD = "elterngeldstelle-bremen"
ANNA = "81709656328"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def hold_a_preview(http: httpx.Client, credentials: dict[str, Any]) -> str:
    """A consent with preview for Anna, then Elterngeld asks: the broker holds the proof."""
    demo = Demo(base_url=str(http.base_url), credentials=credentials, http=http)
    child = demo.citizen("elfe", "child")
    consent = demo.grant(ANNA, ELTERNGELD, ["birth"], "elterngeld-antrag",
                         subject=child["idnr"], preview=True)
    response = demo.request_proof(ELTERNGELD, {
        "proof_type": "birth", "subject": child["idnr"], "purpose": "elterngeld-antrag",
        "consent_id": consent["id"],
        "parameters": {"place_of_birth": child["place_of_birth"],
                       "birth_date": child["birth_date"]}})
    if response.status_code != 202:
        msg = f"expected the broker to hold the proof (202), got {response.status_code}"
        raise SystemExit(msg)
    return response.json()["request_id"]


def consent_request(credentials: dict[str, Any]) -> str:
    child = next(c for c in credentials["citizens"]
                 if c["family"] == "elfe" and c["role"] == "child")
    until = (datetime.now(UTC) + timedelta(days=60)).date().isoformat()
    return "/consents/new?" + urlencode({
        "client_id": ELTERNGELD, "proof_types": "birth,custody", "purpose": "elterngeld-antrag",
        "valid_until": until, "subject": child["idnr"],
        "redirect_uri": "http://127.0.0.1:8999/elterngeld/consent-callback",
        "state": "screenshot"})


def shoot(out: Path, width: int) -> list[Path]:
    saved: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="einmal-shots-") as data_dir:
        live = start_demo(Path(data_dir))
        try:
            credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
            ok, output = run_elfe(live.base_url, credentials)
            if not ok:
                print(output, file=sys.stderr)
                raise SystemExit("the ELFE scenario failed; no screenshots taken")
            with httpx.Client(base_url=live.base_url, timeout=20) as http:
                request_id = hold_a_preview(http, credentials)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                     args=CHROMIUM_ARGS)
                context = browser.new_context(base_url=live.base_url, locale="de-DE",
                                              viewport={"width": width, "height": 800})
                page = context.new_page()

                def save(name: str, *, full_page: bool = True) -> None:
                    path = out / f"cockpit-{name}.png"
                    page.screenshot(path=str(path), full_page=full_page)
                    saved.append(path)
                    print(f"saved {path} ({page.url.replace(live.base_url, '')})")

                page.goto("/login")
                save("login")
                page.locator('a[href^="/login/start"]').click()
                page.wait_for_url("**/demo/authorize?**")
                save("idp")
                page.locator(f'input[name=idnr][value="{ANNA}"]').check()
                page.locator("button[value=login]").click()
                page.wait_for_url(live.base_url + "/")
                save("overview")
                delivered = page.locator("main table tbody tr").filter(
                    has_text="Einkommensnachweis").first  # Anna's own income, delivered
                delivered.locator('a[href^="/transfers/"]').click()
                page.wait_for_url("**/transfers/**")
                save("transfer")
                page.goto(consent_request(credentials))
                save("consent-screen")
                page.goto("/consents")
                save("consents")
                page.locator('main a[href$="/revoke"]').first.click()
                page.wait_for_url("**/revoke")
                save("revoke")
                page.goto("/previews")
                save("previews")
                page.goto(f"/previews/{request_id}")
                save("preview")
                page.goto("/my-data")
                save("my-data")
                page.goto("/?lang=en")
                save("overview-en")
                page.goto("/?lang=de")  # leave the language cookie as found
                browser.close()
        finally:
            live.stop()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM} (install Debian package chromium)", file=sys.stderr)
        return 1
    saved = shoot(args.out, args.width)
    print(f"{len(saved)} screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
