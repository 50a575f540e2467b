"""A tiny no-JavaScript "browser" for the web view tests: httpx with cookies, following
redirects, reading forms out of the HTML (stdlib parser), logging in through the demo IdP."""

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    radios: dict[str, list[str]] = field(default_factory=dict)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.links: list[str] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(action=a.get("action", ""), method=a.get("method", "get"))
            self.forms.append(self._current)
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif self._current is not None and tag == "input" and a.get("name"):
            if a.get("type") == "radio":
                self._current.radios.setdefault(a["name"], []).append(a.get("value", ""))
            else:
                self._current.fields[a["name"]] = a.get("value", "")
        elif self._current is not None and tag == "button" and a.get("name"):
            self._current.buttons.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def visible_text(html: str) -> str:
    """The page's text nodes (what a reader sees), without attributes and URLs."""
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.parts)


def parse(html: str) -> _Forms:
    parser = _Forms()
    parser.feed(html)
    return parser


def form(html: str, action: str) -> Form:
    found = [f for f in parse(html).forms if f.action == action]
    assert found, f"no form with action {action!r}"
    return found[0]


def link(html: str, prefix: str) -> str:
    found = [href for href in parse(html).links if href.startswith(prefix)]
    assert found, f"no link starting with {prefix!r}"
    return found[0]


class Browser:
    """One citizen's browser: cookies kept, redirects followed (each hop recorded)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, follow_redirects=True, timeout=20)
        self.pre_login_cookie: str | None = None

    def close(self) -> None:
        self.http.close()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(url, **kwargs)

    def submit(self, page: httpx.Response, action: str, *, button: tuple[str, str] | None = None,
               follow: bool = True, **changes: str) -> httpx.Response:
        f = form(page.text, action)
        data = dict(f.fields)
        if button:
            data[button[0]] = button[1]
        data.update(changes)
        return self.http.post(action, data=data, follow_redirects=follow)

    def login(self, idnr: str, start: str = "/") -> httpx.Response:
        """Open ``start``, get sent to /login, start the OIDC login, pick ``idnr`` at the demo
        IdP; returns the page we land on (``start`` again)."""
        page = self.get(start)
        assert page.url.path == "/login", page.url
        idp = self.get(link(page.text, "/login/start"))
        assert idp.url.path == "/demo/authorize", idp.text[:500]
        self.pre_login_cookie = self.session_cookie
        return self.submit(idp, "/demo/authorize", button=("action", "login"), idnr=idnr)

    def logout(self, page: httpx.Response) -> httpx.Response:
        return self.submit(page, "/logout")

    @property
    def session_cookie(self) -> str | None:
        return self.http.cookies.get("einmal_session")
