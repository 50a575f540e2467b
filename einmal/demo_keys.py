"""Demo service keys, derived from the service id — PUBLIC KNOWLEDGE, for ``--demo`` only.

``demo_private_key(name)`` = Ed25519 with seed SHA-256("einmal-demo-key:" + name). Anyone can
compute these keys: a production deployment ships its own policy documents with its own keys
(decision 0006).
"""

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal.keys import private_jwk, public_jwk

__all__ = ["demo_private_jwk", "demo_private_key", "demo_public_jwk"]


def demo_private_key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"einmal-demo-key:" + name.encode()).digest())


def _kid(name: str) -> str:
    return f"{name}-demo-1"


def demo_private_jwk(name: str) -> dict[str, Any]:
    return private_jwk(demo_private_key(name), _kid(name))


def demo_public_jwk(name: str) -> dict[str, Any]:
    return public_jwk(demo_private_key(name).public_key(), _kid(name))
