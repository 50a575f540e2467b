"""A register's own protocol (§ 9 IDNrG), embeddable in any register: one entry per answered
query - who asked (service, authority: ``connectors.protocol.headers``), for what purpose, on
which legal basis or consent, when, which data categories, and the content that was sent.

At rest (``connectors.protocol.store``), nothing readable about a citizen:

* the citizens an entry is about only as keyed pseudonyms: HMAC-SHA256 with the register
  secret (``register-protocol-pseudonym.key``) over ``register id + NUL + IdNr`` - a lookup by
  IdNr works; the same citizen has unrelated pseudonyms in two registers sharing a store;
* the entry's facts (``meta``) and its content (the group tree of what was sent) sealed with
  AES-256-GCM under the register key (``register-protocol.key``), random 96-bit nonce, AAD the
  entry id (``<id>:meta`` for the facts): a blob moved to another row does not open;
* two years (§ 9 (3) IDNrG): an entry is listed for two years from its time and deleted by the
  sweeper (``einmal.worker.BackgroundWorker``) when its retention ends.

The source interface (``einmal.source_interface``, mounted by ``connectors.protocol.source``)
reads it for the Datenschutzcockpit; this class is its backend: it signs the answers with the
register's own key (``register-source``, Ed25519; its public JWK set
``register-source.public.json`` is what a source document names) and checks the cockpit's
tokens with ``cockpit-sources.public.json``.
"""

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.protocol.store import (
    ProtocolRow,
    ProtocolStore,
    StoredEntry,
    open_protocol_store,
)
from einmal.domain.registers import Requester
from einmal.ids import uuid4, uuid7
from einmal.keys import SigningKey, load_or_create_secret, load_or_create_signing_key
from einmal.source_interface import COCKPIT_SOURCES_KEY, CockpitKeys, SourceReadError
from einmal.store import StoreError, create_engine
from einmal.tokens import TokenVerifier
from einmal.worker import BackgroundWorker
from einmal_client.sources import ContentGroup, Recipient, SourceEntry

__all__ = ["ANSWER_KEY", "COCKPIT_SOURCES_KEY", "PSEUDONYM_KEY", "SEAL_KEY", "ProtocolConfig",
           "ProtocolSealError", "RegisterProtocol", "plus_years"]

log = structlog.get_logger()

#: key files in the keys dir: the register key (AES-256), the register secret (HMAC), the
#: source's signing key (Ed25519; answers are signed with it), and the cockpit's public key
#: (``cockpit-sources.public.json``, JWK set) that request tokens are checked with
SEAL_KEY = "register-protocol"
PSEUDONYM_KEY = "register-protocol-pseudonym"
ANSWER_KEY = "register-source"
_NONCE = 12


class ProtocolSealError(SourceReadError):
    """A sealed blob does not open: another key, another row, or damaged bytes."""


def plus_years(when: datetime, years: int) -> datetime:
    """``when`` plus calendar years (29 February -> 1 March)."""
    try:
        return when.replace(year=when.year + years)
    except ValueError:
        return when.replace(year=when.year + years, day=28) + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    """Where a register keeps its protocol and whom its source interface answers.

    ``database_url`` None: in this process's memory (gone at exit);
    ``keys_dir`` None: random keys in memory (the signing key too), and no cockpit key - the
    source interface then refuses every request (fail closed)."""

    database_url: str | None = None
    keys_dir: Path | None = None
    cockpit_issuer: str = "einmal-cockpit"
    cockpit_key_name: str = COCKPIT_SOURCES_KEY
    retention_years: int = 2
    sweep_interval_s: float = 3600.0


class _Meta(msgspec.Struct, frozen=True, kw_only=True):
    """The sealed facts of an entry (version 1)."""

    v: int = 1
    source_name: str = ""
    requester: Requester | None = None
    data_categories: tuple[str, ...] = ()


_encode = msgspec.json.Encoder().encode
_decode_meta = msgspec.json.Decoder(_Meta).decode
_decode_tree = msgspec.json.Decoder(tuple[ContentGroup, ...]).decode


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RegisterProtocol:
    """One register's (or, in the demo, all simulated registers') protocol.

    ``clock``: the time of entries, listings and sweeps (aware UTC), injected by tests."""

    def __init__(self, config: ProtocolConfig | None = None, *,
                 clock: Callable[[], datetime] = _utc_now,
                 engine: AsyncEngine | None = None) -> None:
        self.config = config or ProtocolConfig()
        self.clock = clock
        keys_dir = self.config.keys_dir
        seal_key = (load_or_create_secret(keys_dir, SEAL_KEY) if keys_dir
                    else os.urandom(32))
        pseudonym_key = (load_or_create_secret(keys_dir, PSEUDONYM_KEY) if keys_dir
                         else os.urandom(32))
        if len(seal_key) != 32 or len(pseudonym_key) < 32:
            msg = "the register key must be 32 bytes, the register secret at least 32"
            raise ValueError(msg)
        self._aead = AESGCM(seal_key)
        self._mac = hmac.new(pseudonym_key, digestmod=hashlib.sha256)
        url = self.config.database_url
        if engine is None and url is not None:
            engine = create_engine(url)
        self.store: ProtocolStore = open_protocol_store(engine)
        self._sweeper = BackgroundWorker("register-protocol-sweeper", self._sweep_step,
                                         interval_s=self.config.sweep_interval_s,
                                         retry_on=(StoreError,))
        self._answer_key = (
            load_or_create_signing_key(keys_dir, ANSWER_KEY) if keys_dir
            else SigningKey(kid=f"{ANSWER_KEY}-{uuid4()[:8]}",
                            private_key=Ed25519PrivateKey.generate()))
        self._cockpit = CockpitKeys(keys_dir, issuer=self.config.cockpit_issuer,
                                    name=self.config.cockpit_key_name)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the tables and start the retention sweeper (on the serving loop)."""
        await self.store.prepare()
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
        await self.store.aclose()

    @property
    def sweeper_running(self) -> bool:
        return self._sweeper.running

    # -- writing ----------------------------------------------------------------------------

    def pseudonym(self, register: str, idnr: str) -> str:
        """The keyed pseudonym of ``idnr`` in ``register``'s protocol (hex)."""
        mac = self._mac.copy()
        mac.update(register.encode())
        mac.update(b"\0")
        mac.update(idnr.encode())
        return mac.hexdigest()

    def _seal(self, aad: str, plain: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, aad.encode())

    def _open(self, aad: str, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], aad.encode())
        except (InvalidTag, ValueError) as exc:
            msg = "a protocol entry does not open"
            raise ProtocolSealError(msg) from exc

    async def record(self, *, register: str, subject: str, content: Sequence[ContentGroup],
                     requester: Requester | None, source_name: str = "",
                     concerned: Sequence[str] = (),
                     data_categories: Sequence[str] = ()) -> str:
        """Log one answered query of ``register`` about ``subject`` (IdNr); ``concerned``: the
        IdNrs of others named in what was sent. Returns the entry id once durable (raises
        StoreError if not: the register must then not answer)."""
        now = self.clock()
        # NOTE: time-ordered ids (UUIDv7, 74 random bits): a new entry and its subject rows go
        # at the end of the primary-key indexes instead of onto a random page each - fewer
        # pages per durable commit as the protocol grows. The time in the id is the entry's
        # ``occurred_at``, which is stored and listed beside it anyway.
        entry_id = uuid7(now.timestamp())
        meta = _Meta(source_name=source_name, requester=requester,
                     data_categories=tuple(data_categories))
        subjects = {self.pseudonym(register, subject): "self"}
        for idnr in concerned:
            subjects.setdefault(self.pseudonym(register, idnr), "concerned")
        await self.store.add(ProtocolRow(
            id=entry_id, register=register, occurred_at=now,
            retention_until=plus_years(now, self.config.retention_years),
            meta=self._seal(f"{entry_id}:meta", _encode(meta)),
            content=self._seal(entry_id, _encode(tuple(content))),
            subjects=tuple(subjects.items())))
        return entry_id

    # -- reading ----------------------------------------------------------------------------

    def _window(self) -> tuple[datetime, datetime]:
        now = self.clock()
        return plus_years(now, -self.config.retention_years), now

    def _view(self, stored: StoredEntry) -> SourceEntry:
        meta = _decode_meta(self._open(f"{stored.id}:meta", stored.meta))
        who = meta.requester
        return SourceEntry(
            id=stored.id, occurred_at=stored.occurred_at, source=stored.register,
            source_name=meta.source_name,
            recipient=None if who is None else Recipient(
                service_id=who.service_id, service_name=who.service_name,
                authority=who.authority),
            intermediary=None if who is None else who.intermediary or None,
            purpose="" if who is None else who.purpose,
            legal_basis="" if who is None else who.legal_basis,
            consent_id=None if who is None else who.consent_id,
            data_categories=meta.data_categories,
            relation="concerned" if stored.relation == "concerned" else "self",
            retention_until=stored.retention_until,
            transfer_id=None if who is None else who.transfer_id)

    async def entries(self, register: str, idnr: str) -> list[SourceEntry]:
        """``register``'s entries about ``idnr`` within the retention window, newest first."""
        since, now = self._window()
        found = await self.store.entries(register, self.pseudonym(register, idnr),
                                         since=since, now=now)
        return [self._view(s) for s in found]

    async def content(self, register: str, idnr: str, entry_id: str,
                      ) -> tuple[ContentGroup, ...] | None:
        """What entry ``entry_id`` sent, if it is ``register``'s and about ``idnr``."""
        since, now = self._window()
        found = await self.store.entry(register, self.pseudonym(register, idnr), entry_id,
                                       since=since, now=now)
        if found is None:
            return None
        return _decode_tree(self._open(found.id, found.content))

    # -- retention --------------------------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete what is past its retention (and expired request token ids)."""
        deleted = await self.store.sweep(now or self.clock())
        if deleted:
            log.info("register_protocol.swept", entries=deleted)
        return deleted

    async def _sweep_step(self) -> None:
        await self.sweep()

    # -- the source interface's backend (einmal.source_interface.SourceBackend) --------------

    @property
    def answer_key(self) -> SigningKey:
        """The key the source interface signs its answers with (``register-source``)."""
        return self._answer_key

    def now(self) -> datetime:
        return self.clock()

    async def use_token_id(self, token_id: str, *, expires_at: datetime) -> bool:
        """Note a request token's id (replay protection); False if it was seen before."""
        return await self.store.use_token_id(token_id, expires_at=expires_at)

    def verifier(self, source_id: str) -> TokenVerifier | None:
        """The verifier of request tokens for ``source_id`` (its audience); None while no
        cockpit key is configured. The key file is read again when it changes."""
        return self._cockpit.verifier(source_id)
