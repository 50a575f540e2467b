"""The log's checkpoints: C2SP tlog-checkpoint notes signed with the log's key."""

from collections.abc import Sequence
from typing import Any

from einmal.keys import SigningKey, public_key_from_jwk
from einmal_client import tlog

__all__ = ["CheckpointSigner"]


class CheckpointSigner:
    """Signs checkpoints with the log's current key; names every verifier key, current first
    (checkpoints signed before a key rotation verify with a retired one)."""

    def __init__(self, *, key: SigningKey, origin: str,
                 retired_keys: Sequence[dict[str, Any]] = ()) -> None:
        self._key = key
        self.origin = origin
        self.verifier_key = tlog.verifier_key(origin, key.private_key.public_key())
        self.verifier_keys = [self.verifier_key, *(
            tlog.verifier_key(origin, public_key_from_jwk(jwk)) for jwk in retired_keys)]

    def sign(self, size: int, root: bytes) -> str:
        """The signed note of the checkpoint (size, root)."""
        text = tlog.format_checkpoint(tlog.Checkpoint(origin=self.origin, size=size, root=root))
        return tlog.sign_note(text, self.origin, self._key.private_key)
