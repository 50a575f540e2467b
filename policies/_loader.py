"""Loading and checking policy documents (TOML), once at start-up.

1. Read and parse TOML (``PolicySyntaxError``).
2. Refuse private key members before anything else looks at the keys (``PolicyRuleError``).
3. Convert to ``PolicyDocument`` with msgspec; its error path ``$.permissions[1].fields``
   becomes ``permissions[1].fields`` and its wording plain (``PolicySchemaError``).
4. Check the rules that span members, collecting all (``PolicyRuleError``).
5. Across a directory: service ids are unique (``DuplicateServiceError``).
"""

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from einmal.domain.policy import LANDS, Jwk, Permission, PolicyDocument
from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.keys import public_key_from_jwk
from policies._errors import (
    DuplicateServiceError,
    PolicyDirectoryError,
    PolicyError,
    PolicyRuleError,
    PolicySchemaError,
    PolicySyntaxError,
)

__all__ = ["DOCUMENTS_DIR", "PolicySet", "check_directory", "load_policies", "load_policy_file"]

#: The policy documents shipped with Einmal (all of them demo services).
DOCUMENTS_DIR: Path = Path(__file__).resolve().parent / "documents"


@dataclass(frozen=True, slots=True)
class _Problem:
    kind: type[PolicyError]
    file: str
    field: str
    text: str

    def error(self, *, problems: tuple[str, ...] = ()) -> PolicyError:
        return self.kind(self.file, self.field, self.text, problems=problems)

    @property
    def line(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.text}"


# -- 1. TOML -----------------------------------------------------------------------------------

_TOML_WHERE = re.compile(r"^(?P<text>.*?) \(at (?P<where>line \d+, column \d+|end of document)\)$")


def _read(path: Path) -> tuple[dict[str, Any] | None, _Problem | None]:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, _Problem(PolicySyntaxError, name, "", "not UTF-8 text")
    except OSError as exc:
        return None, _Problem(PolicySyntaxError, name, "", f"cannot read: {exc.strerror}")
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_WHERE.match(str(exc))
        where, detail = (found["where"], found["text"]) if found else ("", str(exc))
        return None, _Problem(PolicySyntaxError, name, where, f"not valid TOML: {detail}")


# -- 2. private keys -----------------------------------------------------------------------------

def _private_key_problems(name: str, raw: Mapping[str, Any]) -> list[_Problem]:
    keys = raw.get("keys")
    if not isinstance(keys, list):
        return []
    # NOTE: checked before conversion so the message says what happened, not "unknown field".
    return [_Problem(PolicyRuleError, name, f"keys[{index}].d",
                     "a private key must never be in a policy document (publish only the "
                     "public key; treat this key as compromised and replace it)")
            for index, key in enumerate(keys) if isinstance(key, dict) and "d" in key]


# -- 3. msgspec errors in plain words --------------------------------------------------------------

_AT = re.compile(r"^(?P<text>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_TYPE_WORDS = {"str": "text", "int": "an integer", "bool": "true or false", "array": "a list",
               "object": "a table", "float": "a number", "date": "a date",
               "datetime": "a date-time", "time": "a time"}
_SLUG = "a lower-case id of 3-64 letters, digits and '-' (e.g. 'elterngeld-antrag')"
_PATTERN_WORDS = {"id": _SLUG, "purpose": _SLUG,
                  "x": "the base64url encoding of a 32-byte Ed25519 public key (43 characters)"}


def _struct_at(path: str) -> type[msgspec.Struct]:
    if re.fullmatch(r"\.keys\[\d+\]", path):
        return Jwk
    if re.fullmatch(r"\.permissions\[\d+\]", path):
        return Permission
    return PolicyDocument


def _members(struct: type[msgspec.Struct]) -> str:
    return ", ".join(struct.__struct_fields__)


def _words(kind: str) -> str:
    return _TYPE_WORDS.get(kind, kind)


def _schema_problem(name: str, exc: msgspec.ValidationError) -> _Problem:
    message = str(exc)
    at = _AT.match(message)
    path, text = (at["path"], at["text"]) if at else ("", message)
    field = path.removeprefix(".")
    leaf = re.sub(r"\[\d+\]$", "", field).rsplit(".", 1)[-1]
    if found := re.fullmatch(r"Object contains unknown field `(.+)`", text):
        field = f"{field}.{found[1]}" if field else found[1]
        text = f"unknown field (allowed here: {_members(_struct_at(path))})"
    elif found := re.fullmatch(r"Object missing required field `(.+)`", text):
        field = f"{field}.{found[1]}" if field else found[1]
        text = "required field is missing"
    elif found := re.fullmatch(r"Invalid enum value (.+)", text):
        known = ", ".join(repr(t.value) for t in ProofType)
        text = f"unknown proof type {found[1]} (known: {known})"
    elif re.fullmatch(r"Expected `array` of length >= 1", text):
        text = "must list at least one entry"
    elif re.match(r"Expected `str` matching regex", text):
        text = f"must be {_PATTERN_WORDS.get(leaf, 'of the documented form')}"
    elif found := re.fullmatch(r"Expected `(\w+)`, got `(\w+)`", text):
        text = f"expected {_words(found[1])}, got {_words(found[2])}"
    else:
        text = text.replace("`", "")
    return _Problem(PolicySchemaError, name, field, text)


# -- 4. rules across members ----------------------------------------------------------------------

def _rule_problems(name: str, document: PolicyDocument) -> Iterator[_Problem]:
    def problem(field: str, text: str) -> _Problem:
        return _Problem(PolicyRuleError, name, field, text)

    if document.land not in LANDS:
        yield problem("land", f"unknown Land code {document.land!r} "
                              f"(use one of {', '.join(sorted(LANDS))})")
    kids: set[str] = set()
    for index, key in enumerate(document.keys):
        if (key.kty, key.crv, key.alg, key.use) != ("OKP", "Ed25519", "EdDSA", "sig"):
            yield problem(f"keys[{index}]", "only Ed25519 signing keys are accepted "
                                            "(kty 'OKP', crv 'Ed25519', alg 'EdDSA', use 'sig')")
        if key.kid in kids:
            yield problem(f"keys[{index}].kid", f"duplicate kid {key.kid!r}")
        kids.add(key.kid)
        try:
            public_key_from_jwk(msgspec.to_builtins(key))
        except ValueError:
            yield problem(f"keys[{index}].x", "not a usable Ed25519 public key")
    seen: dict[tuple[ProofType, str], int] = {}
    for index, permission in enumerate(document.permissions):
        pair = (permission.proof_type, permission.purpose)
        if pair in seen:
            yield problem(f"permissions[{index}].purpose",
                          f"duplicate permission: {permission.proof_type.value!r} for purpose "
                          f"{permission.purpose!r} is already in permissions[{seen[pair]}]")
        seen.setdefault(pair, index)
        allowed = PROOF_FIELDS[permission.proof_type]
        listed: set[str] = set()
        for field_index, field in enumerate(permission.fields):
            where = f"permissions[{index}].fields[{field_index}]"
            if field not in allowed:
                yield problem(where, f"unknown field {field!r} for proof type "
                                     f"{permission.proof_type.value!r} "
                                     f"(known: {', '.join(sorted(allowed))})")
            elif field in listed:
                yield problem(where, f"field {field!r} is listed twice")
            listed.add(field)
    for index, uri in enumerate(document.redirect_uris):
        if text := redirect_uri_problem(uri):
            yield problem(f"redirect_uris[{index}]", text)


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a registered redirect URI (None: it can)."""
    parts = urlsplit(uri)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        return f"{uri!r} is not an absolute https URL"
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        return f"{uri!r}: http is allowed only for a loopback host (127.0.0.1, ::1, localhost)"
    if parts.fragment or "#" in uri:
        return f"{uri!r} must not have a fragment"
    if parts.username or parts.password:
        return f"{uri!r} must not carry user information"
    return None


def redirect_uri_matches(registered: str, presented: str) -> bool:
    """Exact match, except that a loopback http URI matches on any port (RFC 8252 §7.3)."""
    if registered == presented:
        return True
    want, got = urlsplit(registered), urlsplit(presented)
    if want.scheme != "http" or want.hostname not in _LOOPBACK:
        return False
    try:
        got.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    return (got.scheme, got.hostname, got.path, got.query) == \
        (want.scheme, want.hostname, want.path, want.query) and not got.fragment \
        and not got.username and not got.password


def _check_file(path: Path) -> tuple[PolicyDocument | None, list[_Problem]]:
    name = path.name
    raw, unreadable = _read(path)
    if raw is None:
        return None, [unreadable] if unreadable else []
    if private := _private_key_problems(name, raw):
        return None, private
    try:
        document = msgspec.convert(raw, PolicyDocument)
    except msgspec.ValidationError as exc:
        return None, [_schema_problem(name, exc)]
    return document, list(_rule_problems(name, document))


# -- public API ------------------------------------------------------------------------------------

def load_policy_file(path: Path) -> PolicyDocument:
    """Load one document; raise the first problem as a ``PolicyError`` subclass."""
    document, problems = _check_file(Path(path))
    if problems:
        raise problems[0].error(problems=tuple(p.line for p in problems))
    if document is None:  # pragma: no cover - _check_file returns a document or problems
        msg = f"{path}: not loaded"
        raise AssertionError(msg)
    return document


def _check(directory: Path) -> tuple[list[PolicyDocument], list[_Problem]]:
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        return [], [_Problem(PolicyDirectoryError, str(directory), "",
                             f"policy directory {what}")]
    try:
        files = sorted(p for p in directory.glob("*.toml") if p.is_file())
    except OSError as exc:
        return [], [_Problem(PolicyDirectoryError, str(directory), "",
                             f"cannot list: {exc.strerror}")]
    if not files:
        return [], [_Problem(PolicyDirectoryError, str(directory), "",
                             "no policy documents (*.toml)")]
    documents: list[PolicyDocument] = []
    problems: list[_Problem] = []
    owners: dict[str, str] = {}
    for path in files:
        document, found = _check_file(path)
        problems.extend(found)
        if document is None:
            continue
        if document.id in owners:
            problems.append(_Problem(DuplicateServiceError, path.name, "id",
                                     f"service id {document.id!r} is already used by "
                                     f"{owners[document.id]}"))
            continue
        owners[document.id] = path.name
        if not found:
            documents.append(document)
    return documents, problems


def check_directory(directory: Path) -> list[str]:
    """Every problem in ``directory``, one line each (``FILE: FIELD: problem``); [] if none.

    Goes on after the first problem: the next file, and further rules in the same file (one
    shape problem per file, since conversion stops there).
    """
    return [problem.line for problem in _check(Path(directory))[1]]


def load_policies(directory: Path) -> "PolicySet":
    """Load every ``*.toml`` in ``directory`` (sorted); any problem stops start-up.

    Raises the first problem as a ``PolicyError`` subclass; its ``problems`` lists them all.
    """
    documents, problems = _check(Path(directory))
    if problems:
        raise problems[0].error(problems=tuple(p.line for p in problems))
    return PolicySet(documents)


class PolicySet:
    """All policies, indexed once at start-up; lookups on the hot path are dict hits.

    Immutable: the mappings handed out are read-only views, keys are parsed here once.
    """

    __slots__ = ("_keys", "_permissions", "_services")

    def __init__(self, documents: Iterable[PolicyDocument]) -> None:
        services: dict[str, PolicyDocument] = {}
        for document in documents:
            if document.id in services:
                raise DuplicateServiceError("(policy set)", "id",
                                            f"service id {document.id!r} appears twice")
            services[document.id] = document
        self._services = MappingProxyType(services)
        self._permissions: Mapping[tuple[str, ProofType, str], Permission] = MappingProxyType({
            (d.id, p.proof_type, p.purpose): p for d in services.values() for p in d.permissions})
        self._keys: Mapping[str, Mapping[str, Ed25519PublicKey]] = MappingProxyType({
            d.id: MappingProxyType({k.kid: _public_key(d.id, i, k) for i, k in enumerate(d.keys)})
            for d in services.values()})

    def __len__(self) -> int:
        return len(self._services)

    def __contains__(self, service_id: object) -> bool:
        return service_id in self._services

    def services(self) -> tuple[PolicyDocument, ...]:
        """All documents, in load order (file names sorted)."""
        return tuple(self._services.values())

    def service(self, service_id: str) -> PolicyDocument | None:
        return self._services.get(service_id)

    def permission(self, service_id: str, proof_type: ProofType, purpose: str,
                   ) -> Permission | None:
        """The permission for exactly this service, proof type and purpose, else None."""
        return self._permissions.get((service_id, proof_type, purpose))

    def redirect_allowed(self, service_id: str, uri: str) -> bool:
        """Is ``uri`` one of the service's registered redirect URIs (loopback: any port)?"""
        document = self._services.get(service_id)
        return document is not None and any(
            redirect_uri_matches(registered, uri) for registered in document.redirect_uris)

    def public_keys(self, service_id: str) -> Mapping[str, Ed25519PublicKey]:
        """``kid -> key`` for the service (empty if unknown), parsed once at load time."""
        return self._keys.get(service_id, _NO_KEYS)


_NO_KEYS: Mapping[str, Ed25519PublicKey] = MappingProxyType({})


def _public_key(service_id: str, index: int, key: Jwk) -> Ed25519PublicKey:
    try:
        return public_key_from_jwk(msgspec.to_builtins(key))
    except ValueError as exc:
        raise PolicyRuleError(service_id, f"keys[{index}]", "not a usable Ed25519 key") from exc
