"""Per-citizen encryption of the citizen view (AES-256-GCM), keys wrapped by a master key.

Each citizen (keyed pseudonym) has a random 256-bit key, stored only wrapped with the cockpit's
master key (RFC 3394 AES key wrap). An entry's citizen view is sealed with its subject's key,
the transfer id as associated data. Deleting a citizen's key makes every sealed view of theirs
unreadable (crypto-shredding) while the log's leaf hashes, and so every proof, stay intact.
"""

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from sqlalchemy.ext.asyncio import AsyncEngine

from cockpit.store.keys import count_citizen_keys, rewrap_keys

__all__ = ["CitizenVault", "VaultError", "count_citizen_keys", "rewrap_citizen_keys"]

_NONCE = 12


class VaultError(Exception):
    """A sealed view cannot be opened (wrong key, tampered, or the key was shredded)."""


class CitizenVault:
    """The cryptography of the citizen views and a cache of unwrapped citizen keys; the wrapped
    keys themselves live in the store (``cockpit.store``), which asks the vault for new ones.

    Only keys of committed transactions are cached (``remember`` after the commit): a key
    cached from a rolled-back transaction would seal later views with a key stored nowhere."""

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
        """Cache keys a transaction loaded or created - after its commit."""
        for ref, key in keys.items():
            self._remember(ref, key)

    def forget(self, citizen_ref: str) -> None:
        """Drop a shredded citizen's key from the cache (the store deleted it)."""
        self._cache.pop(citizen_ref, None)

    def new_key(self) -> tuple[bytes, bytes]:
        """A fresh citizen key and its wrapped form (the only form stored)."""
        key = os.urandom(32)
        return key, aes_key_wrap(self._master, key)

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._master, wrapped)
        except InvalidUnwrap as exc:
            msg = "a citizen key does not unwrap with this master key"
            raise VaultError(msg) from exc

    def key(self, citizen_ref: str, wrapped: bytes) -> bytes:
        """The citizen's key from its stored (committed) wrapped form, cached."""
        cached = self._cache.get(citizen_ref)
        if cached is not None:
            return cached
        return self._remember(citizen_ref, self.unwrap(wrapped))

    @staticmethod
    def seal(key: bytes, transfer_id: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, transfer_id.encode())

    @staticmethod
    def open(key: bytes, transfer_id: str, sealed: bytes) -> bytes:
        try:
            return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], transfer_id.encode())
        except (InvalidTag, ValueError) as exc:  # one opaque failure
            msg = "a sealed view does not open"
            raise VaultError(msg) from exc


async def rewrap_citizen_keys(engine: AsyncEngine, old_master: bytes, new_master: bytes, *,
                              batch: int = 500,
                              progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Re-wrap every citizen key from ``old_master`` to ``new_master`` (master-key rotation,
    ``einmal keys rotate cockpit-master``). One transaction per batch of ``batch`` keys, in
    key order; resumable: a key that already unwraps with the new master is left as it is, so
    an interrupted run is simply run again. A key that opens with neither master stops the
    run (VaultError) - nothing of its batch is swapped then. Returns (re-wrapped, already new).
    """

    def rewrap(wrapped: bytes) -> bytes | None:
        try:
            key = aes_key_unwrap(old_master, wrapped)
        except InvalidUnwrap:
            try:
                aes_key_unwrap(new_master, wrapped)
            except InvalidUnwrap as exc:
                msg = "a citizen key opens with neither the old nor the new master key"
                raise VaultError(msg) from exc
            return None
        return aes_key_wrap(new_master, key)

    return await rewrap_keys(engine, rewrap, batch=batch, progress=progress)
