"""Policy documents: which online service may fetch what, why, on which basis, which fields.

The Structs check shape (types, patterns, unknown members). Rules that span members (fields
allowed for a proof type, unique purposes, Land codes, usable keys) are checked by the loader,
so that ``check_directory`` can report all of them at once.
"""

from collections.abc import Mapping
from typing import Annotated, Protocol

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from msgspec import Meta

from einmal.domain.contract import PURPOSE_PATTERN
from einmal.domain.proofs import ProofType

__all__ = ["LANDS", "Jwk", "Permission", "Policies", "PolicyDocument"]

#: German Länder (ISO 3166-2:DE suffixes) and "DE" for federal bodies (e.g. the Familienkasse).
LANDS: frozenset[str] = frozenset({
    "BW", "BY", "BE", "BB", "HB", "HH", "HE", "MV", "NI", "NW", "RP", "SL", "SN", "ST", "SH",
    "TH", "DE",
})

#: A service id: lower-case slug, 3-64 characters, e.g. ``elterngeldstelle-bremen``.
ServiceId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$")]
#: A purpose id: lower-case slug, e.g. ``elterngeld-antrag``.
Purpose = Annotated[str, Meta(pattern=f"^{PURPOSE_PATTERN}$")]
#: Text shown to people (citizens, auditors): not empty, bounded.
Text = Annotated[str, Meta(min_length=1, max_length=2000)]
#: A data field name of a proof (checked against PROOF_FIELDS by the loader).
FieldName = Annotated[str, Meta(min_length=1, max_length=64)]
#: base64url of 32 raw bytes, no padding (RFC 8037).
Ed25519X = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]


class Jwk(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A public Ed25519 key as a JWK (RFC 8037).

    NOTE: a private member ``d`` is refused by the loader with its own message: a policy
    document is public, a private key in it is compromised.
    """

    kty: str
    crv: str
    x: Ed25519X
    kid: Annotated[str, Meta(min_length=1, max_length=128)]
    alg: str = "EdDSA"
    use: str = "sig"


class Permission(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One proof a service may fetch for one purpose."""

    proof_type: ProofType
    #: Purpose id the service names in its request, e.g. ``elterngeld-antrag``.
    purpose: Purpose
    #: Plain German for citizens (shown in the Datenschutzcockpit).
    purpose_text: Text
    #: e.g. ``§ 25 BEEG i.V.m. § 68 Abs. 3 PStG``.
    legal_basis: Text
    #: true: the citizen's consent must be on record before the broker fetches.
    consent_required: bool
    #: Minimisation: the data fields released, a subset of ``PROOF_FIELDS[proof_type]``.
    fields: Annotated[tuple[FieldName, ...], Meta(min_length=1)]
    #: How long the receiving authority keeps the proof (shown to citizens, logged).
    retention_days: Annotated[int, Meta(ge=1, le=36500)]
    #: true: the citizen sees the proof and releases it (EU OOTS preview).
    preview: bool = False


class PolicyDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything one online service may do; one TOML file per service."""

    id: ServiceId
    name: Text
    authority: Text
    #: Land code (``HB``, ``HH``, ...) or ``DE`` for a federal body.
    land: str
    #: Public keys the service signs its client assertions with (first signs, all verify).
    keys: Annotated[tuple[Jwk, ...], Meta(min_length=1)]
    permissions: Annotated[tuple[Permission, ...], Meta(min_length=1)]
    description: str = ""
    contact: str = ""
    #: Where the cockpit may send the citizen back after a consent screen (the service's
    #: pages). https, or http only on a loopback host (any port matches there, RFC 8252 §7.3).
    redirect_uris: tuple[Annotated[str, Meta(min_length=8, max_length=2000)], ...] = ()
    #: true: a demo service whose private key is PUBLIC KNOWLEDGE (einmal.demo_keys).
    demo: bool = False


class Policies(Protocol):
    """What broker and cockpit ask of the loaded policy documents (``policies.PolicySet``,
    built once at start-up by the composition root)."""

    def services(self) -> tuple[PolicyDocument, ...]:
        """All documents, in load order."""
        ...

    def service(self, service_id: str) -> PolicyDocument | None: ...

    def permission(self, service_id: str, proof_type: ProofType, purpose: str,
                   ) -> Permission | None:
        """The permission for exactly this service, proof type and purpose, else None."""
        ...

    def redirect_allowed(self, service_id: str, uri: str) -> bool: ...

    def public_keys(self, service_id: str) -> Mapping[str, Ed25519PublicKey]: ...
