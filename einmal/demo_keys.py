"""Demo service keys, derived from the service id.

!!! THESE KEYS ARE PUBLIC KNOWLEDGE. !!!
Anyone can compute them from this file: the seed is SHA-256("einmal-demo-key:" + name). They
exist so that ``einmal serve --demo`` and the scenarios can sign as the shipped demo services
(policy documents with ``demo = true``) without any key handling. A deployment that serves
real citizens ships its own policy documents with its own public keys and never loads a
document marked ``demo = true`` (decision 0006).
"""

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal.keys import private_jwk, public_jwk

__all__ = ["demo_kid", "demo_private_jwk", "demo_private_key", "demo_public_jwk"]

_SEED_PREFIX = b"einmal-demo-key:"


def demo_kid(name: str) -> str:
    """The key id of a demo key: ``<name>-demo-1``."""
    return f"{name}-demo-1"


def demo_private_key(name: str) -> Ed25519PrivateKey:
    """The PUBLICLY KNOWN demo private key for ``name``. For ``--demo`` only."""
    # NOTE: deterministic on purpose, so documents, scenarios and tests agree without files.
    seed = hashlib.sha256(_SEED_PREFIX + name.encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def demo_private_jwk(name: str) -> dict[str, str]:
    """The PUBLICLY KNOWN demo private key as a JWK (with ``d``). For ``--demo`` only."""
    return private_jwk(demo_private_key(name), demo_kid(name))


def demo_public_jwk(name: str) -> dict[str, str]:
    """The public half: kty OKP, crv Ed25519, x, kid ``<name>-demo-1``, alg EdDSA, use sig."""
    return public_jwk(demo_private_key(name).public_key(), demo_kid(name))
