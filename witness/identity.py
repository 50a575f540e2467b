"""The witness's identity: a name and an Ed25519 key, both kept in its data dir.

    <data-dir>/keys/witness.jwk.json   the private key (0600, created on first start)
    <data-dir>/witness.name            the name its cosignatures carry (written on first start)

The key id of a cosignature covers the name, so name and key together are the identity that
logs and verifiers pin (the vkey): a different name is a different witness and is refused
for an existing data dir.
"""

import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from einmal.keys import load_or_create_signing_key
from einmal_client.cosignature import witness_vkey
from einmal_client.tlog import NoteError
from witness.errors import WitnessConfigError

__all__ = ["KEY_NAME", "NAME_FILE", "WitnessIdentity", "default_name",
           "load_or_create_identity"]

KEY_NAME = "witness"
NAME_FILE = "witness.name"


@dataclass(frozen=True, slots=True)
class WitnessIdentity:
    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        witness_vkey(self.name, self.private_key.public_key())  # NoteError for a bad name

    @property
    def vkey(self) -> str:
        return witness_vkey(self.name, self.private_key.public_key())


def default_name() -> str:
    """``<host name>/einmal-witness``: pass a name of your own (a schema-less URL you control)."""
    return f"{socket.gethostname() or 'localhost'}/einmal-witness"


def load_or_create_identity(data_dir: Path, name: str | None = None) -> WitnessIdentity:
    """The witness in ``data_dir``; created there (key and name) if it is new."""
    name_file = data_dir / NAME_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        stored = name_file.read_text().strip() if name_file.exists() else None
        if stored is not None and name is not None and name != stored:
            msg = (f"this witness is named {stored!r} ({name_file}); a new name is a new "
                   "witness: give it a data dir of its own")
            raise WitnessConfigError(msg)
        chosen = stored if stored is not None else name if name is not None else default_name()
        key = load_or_create_signing_key(data_dir / "keys", KEY_NAME).private_key
        identity = WitnessIdentity(name=chosen, private_key=key)
        if stored is None:
            name_file.write_text(chosen + "\n")
    except NoteError as exc:
        msg = f"witness name: {exc}"
        raise WitnessConfigError(msg) from exc
    except OSError as exc:
        msg = f"cannot use the witness data dir {data_dir}: {exc}"
        raise WitnessConfigError(msg) from exc
    return identity
