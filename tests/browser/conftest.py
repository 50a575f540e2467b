"""Browser tests: headless Debian Chromium, driven by Playwright (Python), against a live demo.

Chromium is the system one (/usr/bin/chromium, Debian package ``chromium``); Playwright's own
browser download is never used (decision 0019). Where no Chromium exists the browser tests are
skipped with a message saying so, unless ``EINMAL_REQUIRE_BROWSER=1`` (set by .ci/run after it
installed Chromium): then a missing browser is a failure, not a skip.

One demo server and one browser per module (Playwright is stopped after it); each test gets a
fresh browser context (no cookies carried over), and every page a test visits is scanned with
axe-core (``axe_check``).
"""

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.support import (
    BLOCKING_IMPACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    REQUIRE_BROWSER,
    run_elfe,
    start_demo,
)
from tests.conftest import LiveServer
from tests.e2e.conftest import Demo


def _no_browser(reason: str) -> None:
    message = f"browser tests skipped: {reason}"
    if REQUIRE_BROWSER:
        pytest.fail(f"{message} -- but EINMAL_REQUIRE_BROWSER=1 requires them to run",
                    pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


# Module scope, not session: while Playwright's sync API is started, its event loop counts as
# running in this thread, so a later test's asyncio.run() would fail.
@pytest.fixture(name="playwright_api", scope="module")
def fx_playwright_api() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _no_browser(f"no Chromium at {CHROMIUM} (install Debian package chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415 - optional dependency: without it the browser tests skip
    except ImportError as exc:
        _no_browser(f"the Python package playwright is not installed ({exc}); "
                    "pip install -e '.[test]'")

    expect.set_options(timeout=10_000)  # as the contexts' default (a loaded 2-core machine)
    manager = sync_playwright().start()
    yield manager
    manager.stop()


@pytest.fixture(name="browser", scope="module")
def fx_browser(playwright_api: Any) -> Iterator[Any]:
    """One headless Chromium per module (a new context per test isolates the tests)."""
    try:
        browser = playwright_api.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                 headless=True, timeout=30_000)
    except Exception as exc:
        _no_browser(f"Chromium at {CHROMIUM} did not start: {str(exc).splitlines()[0]}")
    yield browser
    browser.close()


#: A browser test that takes longer than this fails instead of hanging the suite (a Playwright
#: ``evaluate`` has no timeout of its own).
TEST_DEADLINE_S = 120


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    def expired(signum: int, frame: Any) -> None:
        pytest.fail(f"browser test still running after {TEST_DEADLINE_S} s", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_DEADLINE_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- the live demo ---------------------------------------------------------------------------


@dataclass
class Cockpit:
    """The live demo server plus what the tests need to talk to it outside the browser."""

    live: LiveServer
    demo: Demo
    scenario_ok: bool | None = None
    scenario_output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.live.base_url

    def citizen(self, family: str, role: str, index: int = 0) -> dict[str, Any]:
        return self.demo.citizen(family, role, index)


@pytest.fixture(name="cockpit", scope="module")
def fx_cockpit(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Cockpit]:
    """A demo server on a free port with the ELFE scenario played once (its transfers exist).

    Depends on ``browser`` so that no server starts when the tests will be skipped anyway."""
    live = start_demo(tmp_path_factory.mktemp("einmal-browser"))
    credentials = json.loads((live.data_dir / "demo-credentials.json").read_text())
    http = httpx.Client(base_url=live.base_url, timeout=20)
    try:
        ok, output = run_elfe(live.base_url, credentials)
        yield Cockpit(live=live, demo=Demo(base_url=live.base_url, credentials=credentials,
                                           http=http), scenario_ok=ok, scenario_output=output)
    finally:
        http.close()
        live.stop()


# -- an online service's own site (where the consent screen sends the citizen back) ----------


@dataclass
class ServiceSite:
    """A tiny HTTP site on loopback standing in for an online service's pages."""

    base_url: str
    visits: list[str] = field(default_factory=list)


class _ServiceHandler(BaseHTTPRequestHandler):
    site: ServiceSite

    def do_GET(self) -> None:
        self.site.visits.append(self.path)
        body = (b"<!doctype html><html lang=\"de\"><head><meta charset=\"utf-8\">"
                b"<title>Elterngeld online</title></head><body><main><h1>Elterngeld online</h1>"
                b"<p>Zur&uuml;ck beim Antrag.</p></main></body></html>")
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(name="service_site", scope="module")
def fx_service_site() -> Iterator[ServiceSite]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ServiceHandler)
    site = ServiceSite(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = type("Handler", (_ServiceHandler,), {"site": site})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site
    server.shutdown()
    server.server_close()


# -- pages ---------------------------------------------------------------------------------------


@dataclass
class PageProblems:
    """What the browser reported while a test ran: CSP refusals, script errors, failed loads."""

    csp: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _watch(page: Any, problems: PageProblems) -> None:
    def on_console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            problems.csp.append(f"{page.url}: {text}")
        elif message.type == "error":
            problems.errors.append(f"{page.url}: {text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.errors.append(f"{page.url}: {exc}"))


@pytest.fixture(name="new_context")
def fx_new_context(browser: Any, cockpit: Cockpit) -> Iterator[Callable[..., Any]]:
    """Make a fresh browser context (own cookies) on the demo; German unless told otherwise.

    Every page opened in it is watched: a CSP violation fails the test at teardown (the
    cockpit's pages must work under their strict policy, without exceptions)."""
    contexts: list[tuple[Any, PageProblems]] = []

    def make(**options: Any) -> Any:
        options.setdefault("base_url", cockpit.base_url)
        options.setdefault("locale", "de-DE")
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        problems = PageProblems()
        context.on("page", lambda page: _watch(page, problems))
        context.problems = problems
        context.javascript = options.get("java_script_enabled", True)
        contexts.append((context, problems))
        return context

    yield make
    found: list[str] = []
    for context, problems in contexts:
        found += problems.csp
        context.close()
    if found:
        pytest.fail("Content-Security-Policy violations:\n  " + "\n  ".join(found),
                    pytrace=False)


@pytest.fixture(name="page")
def fx_page(new_context: Callable[..., Any]) -> Any:
    """A page in a fresh German context."""
    return new_context().new_page()


# -- accessibility ---------------------------------------------------------------------------

_axe: Any = None
#: Every page scanned in this session, and the minor/moderate findings, for the summary.
SCANNED: list[str] = []
TOLERATED: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SCANNED:
        return
    terminalreporter.write_line(
        f"axe-core: {len(SCANNED)} page scans, no serious/critical violation allowed; "
        f"{len(TOLERATED)} minor/moderate finding(s)"
        + "".join(f"\n  {finding}" for finding in sorted(set(TOLERATED))))


def axe_check(page: Any, *, context: Any = None) -> dict[str, Any]:
    """Scan the page with axe-core; fail listing every serious or critical violation.

    Returns axe's full result (minor/moderate findings included) for callers that want more.
    Needs JavaScript in the page's context (with it off, the evaluation never returns)."""
    global _axe
    if not getattr(page.context, "javascript", True):
        pytest.fail("axe_check needs JavaScript: this page's context has it off", pytrace=False)
    if _axe is None:
        from axe_playwright_python.sync_playwright import (  # noqa: PLC0415 - optional dependency
            Axe,
        )

        _axe = Axe()
    results = _axe.run(page, context=context).response
    SCANNED.append(page.url)
    TOLERATED.extend(f"{v['id']} ({v['impact']}) on {page.url}" for v in results["violations"]
                     if v.get("impact") not in BLOCKING_IMPACTS)
    blocking = [v for v in results["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    if blocking:
        lines = [f"axe-core: {len(blocking)} serious/critical violation(s) on {page.url}"]
        for violation in blocking:
            lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
            for node in violation["nodes"]:
                target = ", ".join(str(t) for t in node["target"])
                lines.append(f"    at {target}: {node.get('failureSummary', '').strip()}"
                             .replace("\n", " "))
        pytest.fail("\n".join(lines), pytrace=False)
    return results


