"""What the broker's routes answer, as the published OpenAPI document describes it.

The handlers encode dicts (and ``ConsentOut``) with msgspec; these Structs only describe those
bytes (einmal/openapi.py: ``json_body``), and tests/fuzz checks every answer against them.
Nullable members are ``X | None``; members that are not always sent have a default.
"""

from datetime import datetime
from typing import Any, Literal

import msgspec

from broker.service import ConsentOut
from einmal.domain.proofs import ProofType

__all__ = ["AccessToken", "ConsentList", "Preview", "PreviewDetail", "PreviewList",
           "PreviewRequired", "ProofAnswer"]


class AccessToken(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /v1/token`` (RFC 6749 §5.1): a service's short-lived bearer token."""

    access_token: str
    token_type: Literal["Bearer"]
    #: seconds
    expires_in: int


class ProofAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """200: the released proof, a JWS signed by the broker (``/.well-known/jwks.json``)."""

    transfer_id: str
    proof: str


class PreviewRequired(msgspec.Struct, frozen=True, kw_only=True):
    """202: the proof is held until the citizen releases it (EU OOTS preview); ask
    ``status_url`` again."""

    status: Literal["preview-required"]
    #: EU OOTS: preview required
    code: Literal["EDM:ERR:0002"]
    request_id: str
    status_url: str
    preview_url: str
    expires_at: datetime


class ConsentList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ConsentOut]


class Preview(msgspec.Struct, frozen=True, kw_only=True):
    """A held proof as its citizen sees it (broker/previews.py: ``PreviewDesk._view``)."""

    request_id: str
    service_id: str
    service_name: str
    #: empty when the service's policy document is gone
    authority: str
    proof_type: ProofType
    purpose: str
    purpose_text: str
    legal_basis: str
    #: None when the permission is gone
    retention_days: int | None
    subject_masked: str
    fields: list[str]
    created_at: datetime
    expires_at: datetime
    status: Literal["pending", "accepted", "refused", "expired", "collected"]


class PreviewDetail(Preview, frozen=True, kw_only=True):
    """One preview with the data the service would get: null once the content is destroyed
    (refused, expired, collected)."""

    data: dict[str, Any] | None
    register_name: str | None


class PreviewList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Preview]
