"""Web sessions: a random id in an HttpOnly cookie, the state on the server (decision 0013).

The cookie carries 256 random bits and nothing else, so the client can neither read nor forge
a session. The state (the citizen's IdNr and the web view's API token, or a pending login)
lives in a Litestar ``Store`` (in memory by default). Logout deletes it: a replayed cookie
finds nothing. Idle timeout: the entry expires ``idle_s`` after the last request (each request
renews it); absolute end: ``max_s`` after login.
API token (decision 0027): at login the session gets a citizen token the cockpit mints for
it (``einmal.citizen.WebTokenMinter``: bound to the session, a few minutes long, never past
the session's end); ``load`` mints a new one when less than a minute is left. The identity
provider's tokens are not kept.
CSRF: every form carries ``HMAC(secret, session id)``; POSTs without the right one are refused.
Shared store (several cockpit processes, decision 0032): the store may be a database table
(``einmal.shared_state.SqlStore``). It never holds the session id nor a readable session: an
entry is keyed by ``HMAC(secret, id)`` and sealed with AES-256-GCM under a key derived from the
id (HKDF-SHA256), which only the browser's cookie carries. A copy of the table reveals no IdNr
and no token, and cannot be turned into a session.
"""

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar import Request
from litestar.datastructures import Cookie
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore

from einmal.citizen import WebTokenMinter

__all__ = ["COOKIE", "PendingLogin", "SessionManager", "WebSession"]

COOKIE = "einmal_session"
_PREFIX = "web-session:"
#: a request starts with at least this much life left in the API token (else a new one)
_RENEW_BEFORE_S = 60


class PendingLogin(msgspec.Struct, frozen=True, kw_only=True):
    """Between /login/start and /auth/callback: what the callback must see again."""

    state: str
    nonce: str
    verifier: str
    next: str


class WebSession(msgspec.Struct, kw_only=True):
    id: str
    created: float
    last_seen: float
    idnr: str | None = None
    #: the citizen token the web view presents to the broker and cockpit APIs: minted by the
    #: cockpit for this session (never the identity provider's token), renewed by ``load``
    access_token: str | None = None
    access_token_expires: float = 0.0
    #: end of the session: login + max_s
    ends_at: float = 0.0
    pending: PendingLogin | None = None
    #: one-time notice for the next page (a message key), e.g. after a revocation
    notice: str | None = None

    @property
    def logged_in(self) -> bool:
        return self.idnr is not None and self.access_token is not None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WebSession).decode


class SessionManager:
    def __init__(self, *, secret: bytes, idle_s: int, max_s: int, secure: bool,
                 store: Store | None = None, clock: Callable[[], float] = time.time,
                 tokens: WebTokenMinter | None = None) -> None:
        self.store = store or MemoryStore()
        self.tokens = tokens
        self._secret = secret
        self.idle_s = idle_s
        self.max_s = max_s
        self.secure = secure
        self.clock = clock
        self._created = 0

    # -- cookie ------------------------------------------------------------------------------
    def cookie(self, session_id: str) -> Cookie:
        return Cookie(key=COOKIE, value=session_id, path="/", httponly=True, samesite="lax",
                      secure=self.secure)

    def clear_cookie(self) -> Cookie:
        return Cookie(key=COOKIE, value="", path="/", httponly=True, samesite="lax",
                      secure=self.secure, max_age=0)

    @staticmethod
    def cookie_id(request: Request[Any, Any, Any]) -> str | None:
        value = request.cookies.get(COOKIE)
        if value and len(value) == 43 and value.isascii():
            return value
        return None

    # -- store -------------------------------------------------------------------------------
    async def load(self, request: Request[Any, Any, Any]) -> WebSession | None:
        """The live session of this request (renewing its idle timer), or None."""
        session_id = self.cookie_id(request)
        if session_id is None:
            return None
        raw = await self.store.get(self._key(session_id))
        session = self._open(session_id, raw) if raw is not None else None
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen >= self.idle_s or (session.ends_at and now >= session.ends_at):
            await self.store.delete(self._key(session_id))
            return None
        session.last_seen = now
        if session.logged_in and session.access_token_expires - now < _RENEW_BEFORE_S:
            self._mint(session, now)
        await self.save(session)
        return session

    async def save(self, session: WebSession) -> None:
        await self.store.set(self._key(session.id), self._seal(session), expires_in=self.idle_s)

    # -- sealed entries ----------------------------------------------------------------------
    def _key(self, session_id: str) -> str:
        """The store key: ``HMAC(secret, id)``, so the store never holds a usable session id."""
        digest = hmac.new(self._secret, b"key|" + session_id.encode(), hashlib.sha256)
        return _PREFIX + digest.hexdigest()

    @staticmethod
    def _cipher(session_id: str) -> AESGCM:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"einmal web session v1").derive(session_id.encode())
        return AESGCM(key)

    def _seal(self, session: WebSession) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._cipher(session.id).encrypt(nonce, _encode(session),
                                                        self._key(session.id).encode())

    def _open(self, session_id: str, raw: bytes) -> WebSession | None:
        """The session, or None when the entry does not open under this id (never raises)."""
        try:
            plain = self._cipher(session_id).decrypt(raw[:12], raw[12:],
                                                     self._key(session_id).encode())
            session = _decode(plain)
        except (InvalidTag, ValueError, msgspec.DecodeError):
            return None
        return session if session.id == session_id else None

    async def new(self, **values: Any) -> WebSession:
        session = await self._fresh(**values)
        await self.save(session)
        return session

    async def login(self, idnr: str) -> WebSession:
        """The session of a citizen who has just logged in: a new id (no session fixation),
        ending ``max_s`` from now, with its first API token."""
        session = await self._fresh(idnr=idnr)
        session.ends_at = session.created + self.max_s
        self._mint(session, session.created)
        await self.save(session)
        return session

    async def _fresh(self, **values: Any) -> WebSession:
        self._created += 1
        if self._created % 256 == 0:  # abandoned sessions: drop the expired ones now and then
            purge = getattr(self.store, "delete_expired", None)
            if purge is not None:
                await purge()
        now = self.clock()
        return WebSession(id=secrets.token_urlsafe(32), created=now, last_seen=now, **values)

    def _mint(self, session: WebSession, now: float) -> None:
        """A new API token for the session, expiring before the session can (decision 0027)."""
        if self.tokens is None or session.idnr is None:
            return
        ends = min(now + self.idle_s, session.ends_at) if session.ends_at else now + self.idle_s
        session.access_token, session.access_token_expires = self.tokens.mint(
            session.idnr, session.id, now=now, not_after=ends)

    async def delete(self, session_id: str) -> None:
        await self.store.delete(self._key(session_id))

    def expires_at(self, session: WebSession) -> float:
        """When the session ends if the citizen does nothing (shown as the session timer)."""
        idle_end = session.last_seen + self.idle_s
        return min(idle_end, session.ends_at) if session.ends_at else idle_end

    # -- CSRF --------------------------------------------------------------------------------
    def csrf_token(self, session: WebSession) -> str:
        return hmac.new(self._secret, b"csrf|" + session.id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: WebSession, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf_token(session),
                                                       str(presented))
