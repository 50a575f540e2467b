"""Source documents: a register or another broker the cockpit asks is a TOML document with its
URL, key and name (issue 15 §5), loaded once at start-up, like the policy documents.

A document holds one or more ``[[source]]`` tables (docs/sources.md)::

    [[source]]
    id = "standesamt:04011000"        # the source's id: the request tokens' audience
    name = "Standesamt Bremen"        # what the citizen reads
    kind = "register"                 # "register" | "broker"
    group = "Standesämter"            # the picker's heading
    url = "{registers_base_url}/standesamt/04011000/dsc"
    key_file = "register-source.public.json"   # its answer key, in the keys dir, or inline:
    # key = { kty = "OKP", crv = "Ed25519", x = "...", kid = "..." }  (a JWK or a JWK set)

``url`` may use ``{registers_base_url}`` and ``{broker_base_url}``, ``id`` and ``url``
``{broker_host}`` (host and port of the broker's URL: a broker's id is ``broker:<host:port>``),
all filled from the settings.
Every problem is one line ``FILE: FIELD: problem`` (``SourceDocumentError``); a source id in
two tables (or two files) is refused.
"""

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from cockpit.sources.model import SourceInfo
from einmal_client.sources import source_public_keys

__all__ = ["DOCUMENTS_DIR", "SourceDocumentError", "SourceSpec", "broker_host",
           "load_source_file", "load_sources", "read_key_file"]

#: the source documents shipped for the demo (the simulated registers and this broker)
DOCUMENTS_DIR: Path = Path(__file__).resolve().parent / "documents"

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._\[\]-]{0,127}")
_PLACEHOLDERS = ("registers_base_url", "broker_base_url", "broker_host")


class SourceDocumentError(ValueError):
    """A source document (or the folder) is unusable: ``FILE: FIELD: problem``."""

    def __init__(self, file: str, field: str, text: str) -> None:
        self.file, self.field, self.text = file, field, text
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {text}")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One source as its document describes it, the URL filled in."""

    info: SourceInfo
    url: str
    #: the source's public Ed25519 key that signs its answers (a JWK or a JWK set) ...
    key: Mapping[str, Any] | None
    #: ... or the file in the keys dir that holds it (read when the source is first asked)
    key_path: Path | None
    file: str

    @property
    def id(self) -> str:
        return self.info.id

    def public_key(self) -> Mapping[str, Any]:
        """The source's key; ``ValueError`` or ``OSError`` if its file is missing or bad."""
        if self.key is not None:
            return self.key
        if self.key_path is None:  # the loader refuses a source without either
            msg = "no key"
            raise ValueError(msg)
        return read_key_file(self.key_path)


class _Table(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    kind: Literal["register", "broker"]
    group: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    key: dict[str, Any] | None = None
    key_file: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class _Document(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source: Annotated[list[_Table], msgspec.Meta(min_length=1)]


_AT = re.compile(r"^(?P<text>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


def _schema_error(file: str, exc: msgspec.ValidationError) -> SourceDocumentError:
    message = str(exc)
    found = _AT.match(message)
    text, path = (found["text"], found["path"].lstrip(".")) if found else (message, "")
    unknown = re.match(r"Object contains unknown field `(?P<name>[^`]+)`", text)
    if unknown:
        path = f"{path}.{unknown['name']}" if path else unknown["name"]
        text = "unknown field"
    missing = re.match(r"Object missing required field `(?P<name>[^`]+)`", text)
    if missing:
        path = f"{path}.{missing['name']}" if path else missing["name"]
        text = "missing"
    return SourceDocumentError(file, path, text)


def broker_host(base_url: str) -> str:
    """The ``{broker_host}`` placeholder: host (and port) of the broker's base URL, lower
    case - a broker's source id is ``broker:<host[:port]>`` (decision 0035)."""
    return urlsplit(base_url).netloc.lower()


def _filled(file: str, field: str, template: str, values: Mapping[str, str]) -> str:
    try:
        return template.format_map(values)
    except (KeyError, ValueError, IndexError) as exc:
        msg = (f"only the placeholders {{{'}, {'.join(_PLACEHOLDERS)}}} may be used "
               f"({exc!s})")
        raise SourceDocumentError(file, field, msg) from exc


def _id(file: str, field: str, template: str, values: Mapping[str, str]) -> str:
    filled = _filled(file, field, template, values)
    if not _ID.fullmatch(filled):
        msg = ("expected an id of letters, digits and ':._-[]', at most 128 (e.g. "
               f"'standesamt:04011000'), not {filled!r}")
        raise SourceDocumentError(file, field, msg)
    return filled


def _url(file: str, field: str, template: str, values: Mapping[str, str]) -> str:
    url = _filled(file, field, template, values)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query \
            or parts.fragment:
        msg = f"not an http(s) URL without query or fragment: {url!r}"
        raise SourceDocumentError(file, field, msg)
    return url.rstrip("/")


def _private(value: Any) -> bool:
    """Does a JWK or JWK set hold a private member anywhere?"""
    if isinstance(value, Mapping):
        return "d" in value or any(_private(v) for v in value.values())
    if isinstance(value, list):
        return any(_private(v) for v in value)
    return False


def _key(file: str, field: str, jwk: Mapping[str, Any]) -> dict[str, Any]:
    # NOTE: refused before anything else looks at it: a private key must never be here.
    if _private(jwk):
        raise SourceDocumentError(file, field, "a private key must never be in a source "
                                  "document (publish only the public key)")
    try:
        source_public_keys(jwk)
    except ValueError as exc:
        raise SourceDocumentError(file, field, f"not usable: {exc}") from exc
    return dict(jwk)


def read_key_file(path: Path) -> dict[str, Any]:
    """A source's public key from a file (a JWK or a JWK set); ``ValueError`` or ``OSError``."""
    loaded = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        msg = f"{path} holds no JWK"
        raise ValueError(msg)
    if _private(loaded):
        msg = f"{path} holds a private key"
        raise ValueError(msg)
    source_public_keys(loaded)
    return loaded


def _key_path(file: str, field: str, name: str, keys_dir: Path | None) -> Path:
    """The key file's path; checked now if it is there (a source's process may make it
    later: then the desk reads it on first use, and the source is an error until then)."""
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise SourceDocumentError(file, field, "a file name in the keys dir, not a path")
    if keys_dir is None:
        raise SourceDocumentError(file, field, "no keys dir to read it from")
    path = keys_dir / relative
    if path.exists():
        try:
            read_key_file(path)
        except OSError as exc:
            raise SourceDocumentError(file, field, f"cannot read {path}: {exc.strerror}",
                                      ) from exc
        except ValueError as exc:
            raise SourceDocumentError(file, field, f"not usable: {exc}") from exc
    return path


def load_source_file(path: Path, *, registers_base_url: str, broker_base_url: str,
                     keys_dir: Path | None = None) -> list[SourceSpec]:
    """The sources of one document (``SourceDocumentError`` on the first problem)."""
    file = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SourceDocumentError(file, "", "not UTF-8 text") from exc
    except OSError as exc:
        raise SourceDocumentError(file, "", f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SourceDocumentError(file, "", f"not valid TOML: {exc}") from exc
    for index, table in enumerate(raw.get("source") or ()):
        if isinstance(table, dict) and isinstance(table.get("key"), dict):
            _key(file, f"source[{index}].key", table["key"])  # private keys first
    try:
        document = msgspec.convert(raw, _Document)
    except msgspec.ValidationError as exc:
        raise _schema_error(file, exc) from exc
    values = {"registers_base_url": registers_base_url.rstrip("/"),
              "broker_base_url": broker_base_url.rstrip("/"),
              "broker_host": broker_host(broker_base_url)}
    specs = []
    for index, table in enumerate(document.source):
        where = f"source[{index}]"
        if table.key is not None and table.key_file is not None:
            raise SourceDocumentError(file, f"{where}.key_file", "give key or key_file, "
                                      "not both")
        if table.key is None and table.key_file is None:
            raise SourceDocumentError(file, f"{where}.key", "missing: the source's public key "
                                      "(key or key_file) - its answers are signed with it")
        key = None if table.key is None else _key(file, f"{where}.key", table.key)
        key_path = (None if table.key_file is None
                    else _key_path(file, f"{where}.key_file", table.key_file, keys_dir))
        specs.append(SourceSpec(
            info=SourceInfo(id=_id(file, f"{where}.id", table.id, values), name=table.name,
                            kind=table.kind, group=table.group),
            url=_url(file, f"{where}.url", table.url, values), key=key, key_path=key_path,
            file=file))
    return specs


def _unique(specs: Iterable[SourceSpec]) -> tuple[SourceSpec, ...]:
    seen: dict[str, SourceSpec] = {}
    for spec in specs:
        first = seen.get(spec.id)
        if first is not None:
            raise SourceDocumentError(spec.file, "id", f"{spec.id!r} is already the id of a "
                                      f"source in {first.file}")
        seen[spec.id] = spec
    return tuple(seen.values())


def load_sources(directory: Path, *, registers_base_url: str, broker_base_url: str,
                 keys_dir: Path | None = None) -> tuple[SourceSpec, ...]:
    """Every source of the ``*.toml`` documents in ``directory`` (files in name order, tables
    in file order); ``SourceDocumentError`` on the first problem."""
    if not directory.is_dir():
        raise SourceDocumentError(str(directory), "", "not a directory of source documents")
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise SourceDocumentError(str(directory), "", "holds no source documents (*.toml)")
    specs: list[SourceSpec] = []
    for path in files:
        specs.extend(load_source_file(path, registers_base_url=registers_base_url,
                                      broker_base_url=broker_base_url, keys_dir=keys_dir))
    return _unique(specs)
