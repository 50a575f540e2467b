"""The log's witnesses (C2SP tlog-witness) and its publication policy: k of n cosignatures.

``EINMAL_LOG_WITNESSES`` is a JSON list (or the path of a file holding one) of

    {"name": "witness.example.org/w1", "vkey": "<name>+<hex key id>+<base64(0x04 || key)>",
     "url": "https://witness.example.org/w1"}

``name`` may be left out (the vkey names the witness); given, it must be the vkey's. The
witness is asked at ``<url>/add-checkpoint``. ``EINMAL_LOG_WITNESS_QUORUM``: how many of them
must cosign a checkpoint before it is published (default: all; 0: publish at once, collect
cosignatures on the side).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from einmal_client.cosignature import WitnessKey, parse_witness_vkey
from einmal_client.tlog import NoteError

__all__ = ["NO_WITNESSES", "WitnessConfigError", "WitnessEndpoint", "WitnessPolicy",
           "load_witness_policy"]


class WitnessConfigError(ValueError):
    """The witness configuration cannot be used; the message names the part and why."""


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """One witness: its cosignature key and where it takes add-checkpoint requests."""

    key: WitnessKey
    #: the submission prefix, without a trailing slash: POST ``<url>/add-checkpoint``
    url: str

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def vkey(self) -> str:
        return self.key.vkey

    @property
    def add_checkpoint_url(self) -> str:
        return f"{self.url}/add-checkpoint"

    @classmethod
    def of(cls, vkey: str, url: str, name: str | None = None) -> "WitnessEndpoint":
        """From a vkey and a URL (and the name, which must be the vkey's)."""
        try:
            key = WitnessKey(*parse_witness_vkey(vkey))
        except NoteError as exc:
            msg = f"witness key {vkey[:80]!r}: {exc}"
            raise WitnessConfigError(msg) from exc
        if name is not None and name != key.name:
            msg = f"witness {name!r}: its vkey names {key.name!r}"
            raise WitnessConfigError(msg)
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query \
                or parts.fragment:
            msg = f"witness {key.name!r}: its url is an http(s) URL without query: {url[:80]!r}"
            raise WitnessConfigError(msg)
        return cls(key=key, url=url.rstrip("/"))


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """The witnesses a checkpoint is shown to, and how many must cosign it (``quorum``)
    before it is published."""

    witnesses: tuple[WitnessEndpoint, ...] = ()
    quorum: int = 0

    def __post_init__(self) -> None:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names):
            msg = "each witness is named once"
            raise WitnessConfigError(msg)
        if not 0 <= self.quorum <= len(self.witnesses):
            msg = (f"the witness quorum is 0..{len(self.witnesses)} (the witnesses "
                   f"configured), not {self.quorum}")
            raise WitnessConfigError(msg)

    @property
    def enabled(self) -> bool:
        return bool(self.witnesses)


NO_WITNESSES = WitnessPolicy()


def _entries(raw: str) -> list[Any]:
    text = raw.strip()
    if not text.startswith("["):  # a file holding the list
        try:
            text = Path(text).read_text()
        except OSError as exc:
            msg = f"log witnesses: neither a JSON list nor a readable file: {text[:80]!r}"
            raise WitnessConfigError(msg) from exc
    try:
        entries = json.loads(text)
    except ValueError as exc:
        msg = f"log witnesses: not valid JSON ({exc})"
        raise WitnessConfigError(msg) from exc
    if not isinstance(entries, list):
        msg = 'log witnesses: a JSON list of {"name", "vkey", "url"} objects'
        raise WitnessConfigError(msg)
    return entries


def load_witness_policy(raw: str | None, quorum: int | None) -> WitnessPolicy:
    """The policy of the settings ``log_witnesses`` and ``log_witness_quorum`` (None: all)."""
    witnesses = []
    for number, entry in enumerate(_entries(raw) if raw else [], start=1):
        if not isinstance(entry, dict) or set(entry) - {"name", "vkey", "url"} or not all(
                isinstance(entry.get(k), str) for k in ("vkey", "url")) or not isinstance(
                entry.get("name", ""), str):
            msg = (f"log witness {number}: an object with the strings vkey, url and "
                   "(optionally) name, nothing else")
            raise WitnessConfigError(msg)
        witnesses.append(WitnessEndpoint.of(entry["vkey"], entry["url"], entry.get("name")))
    return WitnessPolicy(witnesses=tuple(witnesses),
                         quorum=len(witnesses) if quorum is None else quorum)
