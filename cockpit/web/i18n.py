"""Message catalogs: one TOML file per language in ``messages/`` (decision 0014).

Keys are dotted (``[overview]`` + ``title`` -> ``overview.title``); values are plain text
with ``{name}`` placeholders (``str.format``). German is the default and the fallback: a key
missing in English shows the German text (a unit test keeps the catalogs in step).
"""

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "Catalogs", "load_catalogs"]

LANGUAGES = ("de", "en")
DEFAULT_LANGUAGE = "de"
MESSAGES_DIR = Path(__file__).parent / "messages"


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


class Catalogs:
    def __init__(self, messages: dict[str, dict[str, str]]) -> None:
        self.messages = messages

    def text(self, language: str, key: str, **values: Any) -> str:
        catalog = self.messages.get(language) or self.messages[DEFAULT_LANGUAGE]
        template = catalog.get(key)
        if template is None:
            template = self.messages[DEFAULT_LANGUAGE].get(key)
        if template is None:
            return key  # visible in the page and caught by the catalog test
        return template.format(**values) if values else template

    def has(self, key: str) -> bool:
        return key in self.messages[DEFAULT_LANGUAGE]

    def translator(self, language: str) -> Callable[..., str]:
        def t(key: str, **values: Any) -> str:
            return self.text(language, key, **values)

        return t


def load_catalogs(directory: Path = MESSAGES_DIR) -> Catalogs:
    """All ``*.toml`` files of ``directory/<language>/`` and ``directory/<language>.toml``."""
    messages: dict[str, dict[str, str]] = {}
    for language in LANGUAGES:
        flat: dict[str, str] = {}
        files = [directory / f"{language}.toml", *sorted((directory / language).glob("*.toml"))]
        for path in files:
            if path.exists():
                with path.open("rb") as handle:
                    flat.update(_flatten(tomllib.load(handle)))
        messages[language] = flat
    return Catalogs(messages)
