from pathlib import Path

import pytest

from einmal.settings import SettingsError, load_settings


class TestLoadSettings:
    def test_rejects_unknown_component(self) -> None:
        with pytest.raises(SettingsError, match="components: cockpitt"):
            load_settings({}, components="broker,cockpitt")

    def test_rejects_non_numeric_port(self) -> None:
        with pytest.raises(SettingsError, match="port"):
            load_settings({"EINMAL_PORT": "eighty"})

    def test_register_simulators_only_in_demo_mode(self) -> None:
        assert load_settings({}).components == {"broker", "cockpit"}
        assert load_settings({}, demo=True).components == {"broker", "cockpit", "registers"}
        with pytest.raises(SettingsError, match="only with --demo"):
            load_settings({}, components="broker,registers")

    def test_defaults(self) -> None:
        settings = load_settings({})
        assert settings.port == 8000
        assert settings.data_dir == Path(".einmal")
        assert settings.components == {"broker", "cockpit"}
        assert settings.base_url == "http://127.0.0.1:8000"
        assert settings.database_url_for("broker") == "sqlite+aiosqlite:///.einmal/broker.db"

    def test_environment_then_options_win(self) -> None:
        env = {"EINMAL_PORT": "9000", "EINMAL_DEMO": "true", "EINMAL_COMPONENTS": "broker",
               "EINMAL_DATA_DIR": "/srv/einmal", "OTHER": "ignored"}
        settings = load_settings(env, port=9100)
        assert settings.port == 9100
        assert settings.demo is True
        assert settings.components == {"broker"}
        assert settings.data_dir == Path("/srv/einmal")

    @pytest.mark.parametrize(("url", "expected"), [
        ("postgresql://postgres@127.0.0.1:5432/test",
         "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
        ("sqlite:///data/one.db", "sqlite+aiosqlite:///data/one.db"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db"),
    ])
    def test_database_url_gets_an_async_driver(self, url: str, expected: str) -> None:
        assert load_settings({}, database_url=url).database_url_for("cockpit") == expected

    def test_component_urls_default_to_the_public_url(self) -> None:
        settings = load_settings({}, public_url="https://einmal.example/", cockpit_url="http://c:1")
        assert settings.broker_base_url == "https://einmal.example"
        assert settings.cockpit_base_url == "http://c:1"
        assert settings.registers_base_url == "https://einmal.example/registers"
