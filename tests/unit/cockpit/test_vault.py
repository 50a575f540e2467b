"""Per-citizen encryption of the citizen view."""

from pathlib import Path

import pytest

from cockpit.service import CockpitService
from cockpit.vault import CitizenVault, VaultError
from einmal.store import create_engine


@pytest.fixture(name="engine")
async def fx_engine(tmp_path: Path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    await CockpitService(engine=engine, pseudonym_key=b"k" * 32,
                         vault=CitizenVault(b"m" * 32)).create_schema()
    yield engine
    await engine.dispose()


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

    async def test_keys_are_stored_wrapped_and_stable(self, engine) -> None:
        vault = CitizenVault(b"m" * 32)
        async with engine.begin() as conn:
            first = await vault.key(conn, "citizen-a", create=True)
            raw = (await conn.exec_driver_sql(
                "SELECT wrapped_key FROM cockpit_citizen_key")).scalar_one()
        assert first is not None
        assert first not in raw  # never stored in the clear
        async with engine.begin() as conn:
            again = await CitizenVault(b"m" * 32).key(conn, "citizen-a", create=False)
        assert again == first

    async def test_another_master_key_cannot_unwrap(self, engine) -> None:
        async with engine.begin() as conn:
            await CitizenVault(b"m" * 32).key(conn, "citizen-a", create=True)
        async with engine.begin() as conn:
            with pytest.raises(VaultError):
                await CitizenVault(b"x" * 32).key(conn, "citizen-a", create=False)

    async def test_forget_shreds_the_key(self, engine) -> None:
        vault = CitizenVault(b"m" * 32)
        async with engine.begin() as conn:
            await vault.key(conn, "citizen-a", create=True)
            await vault.forget(conn, "citizen-a")
            assert await vault.key(conn, "citizen-a", create=False) is None
