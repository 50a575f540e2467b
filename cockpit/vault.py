"""Per-citizen encryption of the citizen view (AES-256-GCM), keys wrapped by a master key.

Each citizen (keyed pseudonym) has a random 256-bit key, stored only wrapped with the cockpit's
master key (RFC 3394 AES key wrap). An entry's citizen view is sealed with its subject's key,
the transfer id as associated data. Deleting a citizen's key makes every sealed view of theirs
unreadable (crypto-shredding) while the log's leaf hashes, and so every proof, stay intact.
"""

import os
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cockpit.tables import CitizenKeyRow
from einmal.store import sqlite_time

__all__ = ["CitizenVault", "VaultError", "count_citizen_keys", "rewrap_citizen_keys"]

_keys = CitizenKeyRow.__table__  # type: ignore[attr-defined]
_NONCE = 12
_SQLITE_KEY = "SELECT wrapped_key FROM cockpit_citizen_key WHERE citizen_ref = ?"
_SQLITE_ADD_KEY = ("INSERT INTO cockpit_citizen_key (citizen_ref, wrapped_key, created_at) "
                   "VALUES (?, ?, ?) ON CONFLICT DO NOTHING")


class VaultError(Exception):
    """A sealed view cannot be opened (wrong key, tampered, or the key was shredded)."""


class CitizenVault:
    def __init__(self, master_key: bytes, cache_size: int = 10_000) -> None:
        if len(master_key) != 32:
            msg = "the master key must be 32 bytes"
            raise ValueError(msg)
        self._master = master_key
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size

    def _remember(self, citizen_ref: str, key: bytes) -> bytes:
        self._cache[citizen_ref] = key
        self._cache.move_to_end(citizen_ref)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return key

    def cached(self, citizen_refs: Iterable[str]) -> dict[str, bytes]:
        """The keys of these citizens that are in the cache."""
        return {ref: key for ref in citizen_refs if (key := self._cache.get(ref)) is not None}

    def remember(self, keys: dict[str, bytes]) -> None:
        """Cache keys loaded or created by a SQLite writer transaction - after its commit."""
        for ref, key in keys.items():
            self._remember(ref, key)

    def key_sqlite(self, conn: sqlite3.Connection, citizen_ref: str) -> bytes:
        """``key(..., create=True)`` inside a SQLite writer transaction. Leaves the cache
        alone: the transaction may still roll back (the caller uses ``remember`` after it)."""
        row = conn.execute(_SQLITE_KEY, (citizen_ref,)).fetchone()
        if row is None:
            conn.execute(_SQLITE_ADD_KEY, (citizen_ref, aes_key_wrap(self._master, os.urandom(32)),
                                           sqlite_time(datetime.now(UTC))))
            row = conn.execute(_SQLITE_KEY, (citizen_ref,)).fetchone()
        try:
            return aes_key_unwrap(self._master, row[0])
        except InvalidUnwrap as exc:
            msg = "a citizen key does not unwrap with this master key"
            raise VaultError(msg) from exc

    async def key(self, conn: AsyncConnection, citizen_ref: str, *, create: bool) -> bytes | None:
        cached = self._cache.get(citizen_ref)
        if cached is not None:
            return cached
        wrapped = (await conn.execute(select(_keys.c.wrapped_key)
                                      .where(_keys.c.citizen_ref == citizen_ref))).scalar()
        if wrapped is None:
            if not create:
                return None
            dialect = {"postgresql": postgresql, "sqlite": sqlite}[conn.dialect.name]
            await conn.execute(dialect.insert(_keys).on_conflict_do_nothing().values(
                citizen_ref=citizen_ref, wrapped_key=aes_key_wrap(self._master, os.urandom(32)),
                created_at=datetime.now(UTC)))
            wrapped = (await conn.execute(select(_keys.c.wrapped_key)
                                          .where(_keys.c.citizen_ref == citizen_ref))).scalar_one()
        try:
            return self._remember(citizen_ref, aes_key_unwrap(self._master, wrapped))
        except InvalidUnwrap as exc:
            msg = "a citizen key does not unwrap with this master key"
            raise VaultError(msg) from exc

    @staticmethod
    def seal(key: bytes, transfer_id: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, transfer_id.encode())

    @staticmethod
    def open(key: bytes, transfer_id: str, sealed: bytes) -> bytes:
        try:
            return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], transfer_id.encode())
        except Exception as exc:  # InvalidTag: one opaque failure
            msg = "a sealed view does not open"
            raise VaultError(msg) from exc

    async def forget(self, conn: AsyncConnection, citizen_ref: str) -> None:
        """Crypto-shred: delete the citizen's key; their sealed views become unreadable."""
        await conn.execute(delete(_keys).where(_keys.c.citizen_ref == citizen_ref))
        self._cache.pop(citizen_ref, None)


async def count_citizen_keys(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(_keys))).scalar_one())


async def rewrap_citizen_keys(engine: AsyncEngine, old_master: bytes, new_master: bytes, *,
                              batch: int = 500,
                              progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Re-wrap every citizen key from ``old_master`` to ``new_master`` (master-key rotation,
    ``einmal keys rotate cockpit-master``). One transaction per batch of ``batch`` keys, in
    key order; resumable: a key that already unwraps with the new master is left as it is, so
    an interrupted run is simply run again. A key that opens with neither master stops the
    run (VaultError) - nothing is swapped then. Returns (re-wrapped, already new)."""
    rewrapped = already = 0
    after = ""
    change = (update(_keys).where(_keys.c.citizen_ref == bindparam("ref"))
              .values(wrapped_key=bindparam("wrapped")))
    while True:
        async with engine.begin() as conn:
            rows = (await conn.execute(
                select(_keys.c.citizen_ref, _keys.c.wrapped_key)
                .where(_keys.c.citizen_ref > after).order_by(_keys.c.citizen_ref)
                .limit(batch))).all()
            if not rows:
                return rewrapped, already
            updates = []
            for ref, wrapped in rows:
                try:
                    key = aes_key_unwrap(old_master, wrapped)
                except InvalidUnwrap:
                    try:
                        aes_key_unwrap(new_master, wrapped)
                    except InvalidUnwrap as exc:
                        msg = "a citizen key opens with neither the old nor the new master key"
                        raise VaultError(msg) from exc
                    already += 1
                    continue
                updates.append({"ref": ref, "wrapped": aes_key_wrap(new_master, key)})
            if updates:
                await conn.execute(change, updates)
            rewrapped += len(updates)
            after = rows[-1].citizen_ref
        if progress is not None:
            progress(len(rows))
