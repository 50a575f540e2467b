"""The web view's own API token: minted per web session (cockpit.web.session), verified by
the broker's and cockpit's ``CitizenAuth`` beside the identity provider's tokens."""

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from litestar.testing import RequestFactory

from cockpit.web.session import COOKIE, SessionManager, WebSession
from einmal.citizen import (
    WEB_ISSUER,
    WEB_KEY_NAME,
    WEB_TOKEN_TTL_S,
    CitizenAuth,
    WebTokenMinter,
    session_binding,
)
from einmal.keys import load_or_create_signing_key, rotate_signing_key
from einmal.problems import ProblemError
from einmal.tokens import TokenIssuer

IDNR = "81709656328"
DEMO_ISSUER = "http://127.0.0.1:8000/demo"


def request(token: str) -> Any:
    return RequestFactory().get("/v1/consents", headers={"authorization": f"Bearer {token}"})


def browser(session: WebSession) -> Any:
    return RequestFactory().get("/", headers={"cookie": f"{COOKIE}={session.id}"})


def auth_for(keys: Path, **changes: Any) -> CitizenAuth:
    values: dict[str, Any] = {
        "issuer": DEMO_ISSUER, "keys_file": keys / "demo-idp.public.json",
        "allow_test_idnrs": True, "web_keys_file": keys / f"{WEB_KEY_NAME}.public.json"}
    return CitizenAuth(**{**values, **changes})


def sessions_for(keys: Path, now: list[float], *, idle_s: int = 900,
                 max_s: int = 28800) -> SessionManager:
    minter = WebTokenMinter(key=load_or_create_signing_key(keys, WEB_KEY_NAME))
    return SessionManager(secret=b"k" * 32, idle_s=idle_s, max_s=max_s, secure=False,
                          clock=lambda: now[0], tokens=minter)


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


class TestCitizenAuthRefuses:
    def test_a_web_token_signed_by_another_key(self, tmp_path: Path) -> None:
        load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        other = load_or_create_signing_key(tmp_path / "elsewhere", WEB_KEY_NAME)
        forged, _ = WebTokenMinter(key=other).mint(IDNR, "s", now=time.time(),
                                                   not_after=time.time() + 60)
        with pytest.raises(ProblemError) as caught:
            auth_for(tmp_path).citizen(request(forged))
        assert caught.value.status == 401

    def test_a_web_token_living_longer_than_the_cockpit_ever_mints(self, tmp_path: Path,
                                                                  ) -> None:
        key = load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        long, _ = WebTokenMinter(key=key, ttl_s=3600).mint(
            IDNR, "s", now=time.time(), not_after=time.time() + 3600)
        with pytest.raises(ProblemError):
            auth_for(tmp_path).citizen(request(long))

    def test_a_web_token_without_a_session(self, tmp_path: Path) -> None:
        key = load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        unbound = TokenIssuer(key=key, issuer=WEB_ISSUER, audience="einmal-citizen",
                              ttl_s=60).issue(IDNR)
        with pytest.raises(ProblemError):
            auth_for(tmp_path).citizen(request(unbound))

    def test_a_web_token_for_another_audience_or_expired(self, tmp_path: Path) -> None:
        key = load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        other, _ = WebTokenMinter(key=key, audience="elsewhere").mint(
            IDNR, "s", now=time.time(), not_after=time.time() + 60)
        expired, _ = WebTokenMinter(key=key).mint(IDNR, "s", now=time.time() - 400,
                                                  not_after=time.time())
        for token in (other, expired):
            with pytest.raises(ProblemError):
                auth_for(tmp_path).citizen(request(token))

    def test_web_tokens_when_no_web_key_file_is_configured(self, tmp_path: Path) -> None:
        key = load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        token, _ = WebTokenMinter(key=key).mint(IDNR, "s", now=time.time(),
                                                not_after=time.time() + 60)
        with pytest.raises(ProblemError):
            auth_for(tmp_path, web_keys_file=None).citizen(request(token))

    def test_an_opaque_token(self, tmp_path: Path) -> None:
        load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        with pytest.raises(ProblemError):
            auth_for(tmp_path).citizen(request("opaque-a1b2c3"))


class TestCitizenAuthAccepts:
    def test_web_tokens_and_the_identity_providers_side_by_side(self, tmp_path: Path) -> None:
        web = load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        demo = load_or_create_signing_key(tmp_path, "demo-idp")
        auth = auth_for(tmp_path)
        token, _ = WebTokenMinter(key=web).mint(IDNR, "s", now=time.time(),
                                                not_after=time.time() + 60)
        assert auth.citizen(request(token)).idnr == IDNR
        idp = TokenIssuer(key=demo, issuer=DEMO_ISSUER, audience="einmal-citizen", ttl_s=3600)
        assert auth.citizen(request(idp.issue(IDNR, idnr=IDNR))).idnr == IDNR

    def test_a_key_the_cockpit_creates_after_the_broker_started(self, tmp_path: Path) -> None:
        auth = auth_for(tmp_path)
        with pytest.raises(ProblemError):
            auth.citizen(request("x.y.z"))
        key = load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        token, _ = WebTokenMinter(key=key).mint(IDNR, "s", now=time.time(),
                                                not_after=time.time() + 60)
        assert auth.citizen(request(token)).idnr == IDNR

    def test_a_rotated_key_without_a_restart(self, tmp_path: Path) -> None:
        old = load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        auth = auth_for(tmp_path)
        before, _ = WebTokenMinter(key=old).mint(IDNR, "s", now=time.time(),
                                                 not_after=time.time() + 60)
        assert auth.citizen(request(before)).idnr == IDNR
        rotate_signing_key(tmp_path, WEB_KEY_NAME)
        new = load_or_create_signing_key(tmp_path, WEB_KEY_NAME)
        after, _ = WebTokenMinter(key=new).mint(IDNR, "s", now=time.time(),
                                                not_after=time.time() + 60)
        assert auth.citizen(request(after)).idnr == IDNR
        assert auth.citizen(request(before)).idnr == IDNR  # retired, not yet past its tokens


class TestSessionTokens:
    async def test_login_mints_a_token_bound_to_the_session(self, tmp_path: Path) -> None:
        now = [time.time()]
        sessions = sessions_for(tmp_path, now)
        session = await sessions.login(IDNR)
        assert session.logged_in and session.access_token
        claims = claims_of(session.access_token)
        assert claims["iss"] == WEB_ISSUER and claims["sub"] == IDNR
        assert claims["sid"] == session_binding(session.id) != session.id
        assert claims["exp"] - claims["iat"] == WEB_TOKEN_TTL_S
        assert session.ends_at == now[0] + sessions.max_s
        assert auth_for(tmp_path).citizen(request(session.access_token)).idnr == IDNR

    async def test_the_token_never_outlives_the_session(self, tmp_path: Path) -> None:
        now = [time.time()]
        short = await sessions_for(tmp_path, now, max_s=120).login(IDNR)
        assert short.access_token is not None
        assert claims_of(short.access_token)["exp"] <= now[0] + 120
        idle = await sessions_for(tmp_path, now, idle_s=90).login(IDNR)
        assert idle.access_token is not None
        assert claims_of(idle.access_token)["exp"] <= now[0] + 90

    async def test_a_request_renews_the_token_when_less_than_a_minute_is_left(
            self, tmp_path: Path) -> None:
        now = [time.time()]
        sessions = sessions_for(tmp_path, now)
        session = await sessions.login(IDNR)
        first = session.access_token
        now[0] += 200  # 100 s left: kept
        loaded = await sessions.load(browser(session))
        assert loaded is not None and loaded.access_token == first
        now[0] += 50  # 50 s left: a new one, still bound to the same session
        loaded = await sessions.load(browser(session))
        assert loaded is not None and loaded.access_token not in {None, first}
        assert loaded.access_token is not None
        claims = claims_of(loaded.access_token)
        assert claims["sid"] == session_binding(session.id)
        assert claims["exp"] == int(now[0]) + WEB_TOKEN_TTL_S
        again = await sessions.load(browser(session))
        assert again is not None and again.access_token == loaded.access_token  # stored

    async def test_logout_leaves_the_token_nowhere(self, tmp_path: Path) -> None:
        now = [time.time()]
        sessions = sessions_for(tmp_path, now)
        session = await sessions.login(IDNR)
        await sessions.delete(session.id)
        assert await sessions.load(browser(session)) is None
        assert await sessions.store.get(f"web-session:{session.id}") is None

    async def test_a_pending_login_gets_no_token(self, tmp_path: Path) -> None:
        now = [time.time()]
        sessions = sessions_for(tmp_path, now)
        pending = await sessions.new()
        loaded = await sessions.load(browser(pending))
        assert loaded is not None and loaded.access_token is None and not loaded.logged_in
