"""Policy documents: which online service may fetch what, why, and on which basis."""

from typing import Annotated

import msgspec
from msgspec import Meta

from einmal.domain.proofs import ProofType

__all__ = ["LANDS", "Jwk", "Permission", "PolicyDocument"]

LANDS = frozenset({"BW", "BY", "BE", "BB", "HB", "HH", "HE", "MV", "NI", "NW", "RP", "SL",
                   "SN", "ST", "SH", "TH", "DE"})

ServiceId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$")]
Purpose = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$")]
Text = Annotated[str, Meta(min_length=1, max_length=2000)]


class Jwk(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A public Ed25519 key (RFC 8037). A private member ``d`` is refused."""

    kty: str
    crv: str
    x: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{43}$")]
    kid: Annotated[str, Meta(min_length=1, max_length=128)]
    alg: str = "EdDSA"
    use: str = "sig"


class Permission(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    proof_type: ProofType
    purpose: Purpose
    purpose_text: Text
    legal_basis: Text
    consent_required: bool
    fields: Annotated[list[str], Meta(min_length=1)]
    retention_days: Annotated[int, Meta(ge=1, le=36500)]
    preview: bool = False


class PolicyDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: ServiceId
    name: Text
    authority: Text
    land: str
    keys: Annotated[list[Jwk], Meta(min_length=1)]
    permissions: Annotated[list[Permission], Meta(min_length=1)]
    description: str = ""
    contact: str = ""
    #: true: a demo service whose private key is public knowledge (decision 0006)
    demo: bool = False
