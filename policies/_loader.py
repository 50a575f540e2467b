"""Loading and validating policy documents (TOML), once at start-up."""

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from einmal.domain.proofs import PROOF_FIELDS, ProofType
from einmal.keys import public_key_from_jwk
from policies._model import LANDS, Permission, PolicyDocument

__all__ = ["PolicyError", "PolicySet", "check_directory", "load_policies", "load_policy_file"]


class PolicyError(Exception):
    """A policy document is invalid. The message names file, field and problem."""


def _field_path(msgspec_path: str) -> str:
    # "$.permissions[1].fields" -> "permissions[1].fields"
    return msgspec_path.removeprefix("$").removeprefix(".") or "(document)"


def _problems_of(path: Path) -> tuple[PolicyDocument | None, list[str]]:
    name = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{name}: cannot read: {exc}"]
    except tomllib.TOMLDecodeError as exc:
        return None, [f"{name}: not valid TOML: {exc}"]
    problems: list[str] = []
    for index, key in enumerate(raw.get("keys", []) if isinstance(raw.get("keys"), list) else []):
        if isinstance(key, dict) and "d" in key:
            problems.append(f"{name}: keys[{index}].d: a private key must never be in a "
                            "policy document (publish only the public key)")
    if problems:
        return None, problems
    try:
        document = msgspec.convert(raw, PolicyDocument)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = re.search(r" - at `([^`]*)`$", message)
        field = _field_path(match.group(1)) if match else ""
        text = message[: match.start()] if match else message
        named = re.search(r"(?:unknown|missing required) field `([^`]*)`", text)
        if named:  # msgspec names the member in the text, not in the path
            field = f"{field}.{named.group(1)}" if field else named.group(1)
        field = field or "(document)"
        return None, [f"{name}: {field}: {text}"]
    return document, [f"{name}: {p}" for p in _semantic_problems(document)]


def _semantic_problems(document: PolicyDocument) -> Iterable[str]:
    if document.land not in LANDS:
        yield f"land: unknown Land code {document.land!r} (use one of {', '.join(sorted(LANDS))})"
    kids: set[str] = set()
    for index, key in enumerate(document.keys):
        if key.kty != "OKP" or key.crv != "Ed25519" or key.alg != "EdDSA":
            yield f"keys[{index}]: only Ed25519 keys (kty OKP, crv Ed25519, alg EdDSA) are accepted"
        if key.kid in kids:
            yield f"keys[{index}].kid: duplicate kid {key.kid!r}"
        kids.add(key.kid)
    seen: set[tuple[ProofType, str]] = set()
    for index, permission in enumerate(document.permissions):
        pair = (permission.proof_type, permission.purpose)
        if pair in seen:
            yield (f"permissions[{index}]: duplicate permission for {permission.proof_type.value!r}"
                   f" with purpose {permission.purpose!r}")
        seen.add(pair)
        allowed = PROOF_FIELDS[permission.proof_type]
        for field_index, field in enumerate(permission.fields):
            if field not in allowed:
                yield (f"permissions[{index}].fields[{field_index}]: unknown field {field!r} for "
                       f"{permission.proof_type.value!r} (known: {', '.join(sorted(allowed))})")


def load_policy_file(path: Path) -> PolicyDocument:
    document, problems = _problems_of(path)
    if problems or document is None:
        raise PolicyError(problems[0])
    return document


def check_directory(directory: Path) -> tuple[list[PolicyDocument], list[str]]:
    """All documents in ``directory`` and ALL problems (``FILE: FIELD: problem``), not just
    the first."""
    files = sorted(directory.glob("*.toml"))
    documents: list[PolicyDocument] = []
    problems: list[str] = []
    if not files:
        problems.append(f"{directory}: no policy documents (*.toml)")
    owners: dict[str, str] = {}
    for path in files:
        document, found = _problems_of(path)
        problems.extend(found)
        if document is None:
            continue
        if document.id in owners:
            problems.append(f"{path.name}: id: {document.id!r} is already used by "
                            f"{owners[document.id]}")
            continue
        owners[document.id] = path.name
        if not found:
            documents.append(document)
    return documents, problems


def load_policies(directory: Path) -> "PolicySet":
    """Load every document; the first problem stops start-up (PolicyError)."""
    if not directory.is_dir():
        msg = f"{directory}: policy directory not found"
        raise PolicyError(msg)
    documents, problems = check_directory(directory)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise PolicyError(problems[0] + more)
    return PolicySet(documents)


class PolicySet:
    """All policies, indexed once; lookups on the hot path are dict hits."""

    def __init__(self, documents: Iterable[PolicyDocument]) -> None:
        self._services = {d.id: d for d in documents}
        self._permissions: dict[tuple[str, ProofType, str], Permission] = {
            (d.id, p.proof_type, p.purpose): p for d in self._services.values()
            for p in d.permissions}
        self._keys: dict[str, dict[str, Ed25519PublicKey]] = {
            d.id: {k.kid: public_key_from_jwk(msgspec.to_builtins(k)) for k in d.keys}
            for d in self._services.values()}

    def services(self) -> list[PolicyDocument]:
        return list(self._services.values())

    def service(self, service_id: str) -> PolicyDocument | None:
        return self._services.get(service_id)

    def permission(self, service_id: str, proof_type: ProofType, purpose: str,
                   ) -> Permission | None:
        return self._permissions.get((service_id, proof_type, purpose))

    def public_keys(self, service_id: str) -> dict[str, Ed25519PublicKey]:
        """kid -> key, parsed once at load time."""
        return self._keys.get(service_id, {})
