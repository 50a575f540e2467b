"""Per-citizen encryption of the citizen view (cockpit/vault.py). Failure cases first."""

import pytest

from cockpit.vault import CitizenVault, VaultError


class TestCitizenVault:
    def test_rejects_a_short_master_key(self) -> None:
        with pytest.raises(ValueError, match="32 bytes"):
            CitizenVault(b"short")

    def test_tampered_or_misbound_views_do_not_open(self) -> None:
        key = bytes(range(32))
        sealed = CitizenVault.seal(key, "t-1", b'{"a":1}')
        assert CitizenVault.open(key, "t-1", sealed) == b'{"a":1}'
        with pytest.raises(VaultError):
            CitizenVault.open(key, "t-2", sealed)  # bound to its transfer id
        with pytest.raises(VaultError):
            CitizenVault.open(key, "t-1", sealed[:-1] + bytes([sealed[-1] ^ 1]))
        with pytest.raises(VaultError):
            CitizenVault.open(bytes(32), "t-1", sealed)
        with pytest.raises(VaultError):
            CitizenVault.open(key, "t-1", sealed[:5])  # not even a nonce

    def test_another_master_key_cannot_unwrap(self) -> None:
        _, wrapped = CitizenVault(b"m" * 32).new_key()
        with pytest.raises(VaultError):
            CitizenVault(b"x" * 32).unwrap(wrapped)
        with pytest.raises(VaultError):
            CitizenVault(b"x" * 32).key("citizen-a", wrapped)

    def test_a_new_key_is_random_and_given_out_wrapped_for_the_store(self) -> None:
        vault = CitizenVault(b"m" * 32)
        key, wrapped = vault.new_key()
        other, _ = vault.new_key()
        assert len(key) == 32
        assert key != other
        assert key not in wrapped  # never stored in the clear
        assert vault.unwrap(wrapped) == key
        assert CitizenVault(b"m" * 32).unwrap(wrapped) == key  # the master key is enough

    def test_only_remembered_keys_are_cached_and_forget_drops_them(self) -> None:
        vault = CitizenVault(b"m" * 32)
        key, wrapped = vault.new_key()
        assert vault.cached(["citizen-a"]) == {}  # unwrapping alone caches nothing
        vault.unwrap(wrapped)
        assert vault.cached(["citizen-a"]) == {}
        vault.remember({"citizen-a": key})
        assert vault.cached(["citizen-a", "citizen-b"]) == {"citizen-a": key}
        vault.forget("citizen-a")
        assert vault.cached(["citizen-a"]) == {}
        assert vault.key("citizen-a", wrapped) == key  # a committed key read back: cached
        assert vault.cached(["citizen-a"]) == {"citizen-a": key}

    def test_the_cache_keeps_the_most_recent_keys(self) -> None:
        vault = CitizenVault(b"m" * 32, cache_size=2)
        vault.remember({"a": b"1" * 32, "b": b"2" * 32})
        vault.remember({"a": b"1" * 32})  # used again: now the most recent
        vault.remember({"c": b"3" * 32})
        assert set(vault.cached(["a", "b", "c"])) == {"a", "c"}
