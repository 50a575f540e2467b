"""Key files: Ed25519 keys as JWK JSON in ``<data-dir>/keys``, private files mode 0600, and
folders owner-only (0700: ``private_dir``, also for the data dir and the SQLite files' folder).

The only place that reads or writes key material on disk.
"""

import base64
import contextlib
import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = ["ROLLOVER_S", "SigningKey", "accepted_public_keys", "load_or_create_secret",
           "load_or_create_signing_key", "load_or_create_token", "load_public_keys", "private_dir",
           "private_jwk",
           "public_jwk", "public_key_from_jwk", "retired_public_jwks", "retirement_deadlines",
           "rotate_signing_key"]


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key: Ed25519PublicKey, kid: str) -> dict[str, str]:
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64u(raw), "kid": kid, "alg": "EdDSA",
            "use": "sig"}


def private_jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {**public_jwk(key.public_key(), kid), "d": _b64u(raw)}


def public_key_from_jwk(jwk: dict[str, Any]) -> Ed25519PublicKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "x" not in jwk:
        msg = "not an Ed25519 public JWK"
        raise ValueError(msg)
    return Ed25519PublicKey.from_public_bytes(_unb64u(jwk["x"]))


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey

    @property
    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.private_key.public_key(), self.kid)


def private_dir(path: Path, *, tighten: bool = True) -> None:
    """Create the folder ``path`` and its missing parents owner-only (0700). ``tighten``: an
    existing ``path`` of ours loses any group and other permissions (a data dir from an older
    version) - unless it is a shared folder like /tmp (sticky bit). A parent that exists is
    left as it is."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=0o700)
    if tighten and not missing:
        found = path.stat()
        mode = stat.S_IMODE(found.st_mode)
        if mode & 0o077 and not mode & stat.S_ISVTX and found.st_uid == os.getuid():
            path.chmod(mode & 0o700)


def _write_private(path: Path, content: bytes) -> None:
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def load_or_create_signing_key(keys_dir: Path, name: str) -> SigningKey:
    """Load ``<name>.jwk.json`` or create it (0600); also writes ``<name>.public.json``."""
    path = keys_dir / f"{name}.jwk.json"
    if not path.exists():
        kid = f"{name}-{secrets.token_hex(4)}"
        key = Ed25519PrivateKey.generate()
        with contextlib.suppress(FileExistsError):  # another process created it first: load it
            _write_private(path, json.dumps(private_jwk(key, kid)).encode())
    jwk = json.loads(path.read_text())
    key = Ed25519PrivateKey.from_private_bytes(_unb64u(jwk["d"]))
    signing = SigningKey(kid=jwk["kid"], private_key=key)
    public_path = keys_dir / f"{name}.public.json"
    if not public_path.exists():
        public_path.write_text(json.dumps({"keys": [signing.public_jwk]}, indent=2))
    return signing


#: Every process must be restarted within this window after ``einmal keys rotate``: until
#: then an old process may still sign with the retired key (token and channel keys).
ROLLOVER_S = 600


def _retired(keys_dir: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(keys_dir.glob(f"{name}.retired.*.json"))]


def retired_public_jwks(keys_dir: Path, name: str) -> list[dict[str, str]]:
    """Public JWKs of keys retired by ``rotate_signing_key`` (still published, never used)."""
    return [{k: v for k, v in jwk.items() if k != "retired_at"}
            for jwk in _retired(keys_dir, name)]


def accepted_public_keys(keys_dir: Path, name: str, *, lifetime_s: float,
                         ) -> tuple[dict[str, Ed25519PublicKey], dict[str, float]]:
    """Keys a verifier of short-lived tokens accepts: the current one, and each retired one
    until ``retired_at + ROLLOVER_S + lifetime_s`` (the last token an old process could sign
    has expired by then). Returns ({kid: key}, {kid: not after}); older retired keys are left
    out. For the broker's token and channel keys."""
    current = load_or_create_signing_key(keys_dir, name)
    keys = {current.kid: current.private_key.public_key()}
    not_after: dict[str, float] = {}
    now = time.time()
    for jwk in _retired(keys_dir, name):
        until = float(jwk.get("retired_at", 0)) + ROLLOVER_S + lifetime_s
        if until > now:
            keys[jwk["kid"]] = public_key_from_jwk(jwk)
            not_after[jwk["kid"]] = until
    return keys, not_after


def rotate_signing_key(keys_dir: Path, name: str) -> tuple[str, str]:
    """Retire the current key (its public half stays published) and create a new one.

    Returns (old kid, new kid). Processes pick the new key up at their next start.
    """
    current = load_or_create_signing_key(keys_dir, name)
    retired = keys_dir / f"{name}.retired.{current.kid}.json"
    retired.write_text(json.dumps({**current.public_jwk, "retired_at": int(time.time())},
                                  indent=2))
    (keys_dir / f"{name}.jwk.json").unlink()
    new = load_or_create_signing_key(keys_dir, name)
    # retired_at travels with the public keys: a verifier elsewhere (the cockpit reads
    # broker-channel.public.json) drops a retired key once its tokens have expired.
    document = {"keys": [new.public_jwk, *_retired(keys_dir, name)]}
    (keys_dir / f"{name}.public.json").write_text(json.dumps(document, indent=2))
    return current.kid, new.kid


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """A JWK set file -> {kid: public key}."""
    document = json.loads(path.read_text())
    return {jwk["kid"]: public_key_from_jwk(jwk) for jwk in document["keys"]}


def retirement_deadlines(path: Path, *, lifetime_s: float) -> dict[str, float]:
    """{kid: not after} for the retired keys of a JWK set file written by
    ``rotate_signing_key`` (see ``accepted_public_keys``)."""
    document = json.loads(path.read_text())
    return {jwk["kid"]: float(jwk["retired_at"]) + ROLLOVER_S + lifetime_s
            for jwk in document["keys"] if "retired_at" in jwk}


def load_or_create_secret(keys_dir: Path, name: str, size: int = 32) -> bytes:
    """A random secret (e.g. a pseudonym HMAC key) kept in ``<name>.key`` with mode 0600."""
    path = keys_dir / f"{name}.key"
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first
            _write_private(path, secrets.token_bytes(size))
    return path.read_bytes()


def load_or_create_token(keys_dir: Path, name: str) -> str:
    """A random bearer token (URL-safe text) kept in ``<name>.token`` with mode 0600."""
    path = keys_dir / f"{name}.token"
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first
            _write_private(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()
