"""The log leaf: the exact bytes of one transfer-log entry (decision 0009).

Canonical JSON: UTF-8, keys sorted, no insignificant whitespace, times as RFC 3339 UTC with
microseconds and ``Z``, no floats. The citizen appears only as ``subject``, a keyed pseudonym
(HMAC-SHA256 with the cockpit's key), so an exported log reveals no IdNr.
"""

from datetime import UTC, datetime
from typing import Any

import msgspec

from einmal.domain.transfer import TransferRecord

__all__ = ["LEAF_VERSION", "decode_leaf", "encode_leaf"]

LEAF_VERSION = 1
_encoder = msgspec.json.Encoder(order="sorted")


def _time(value: datetime | None) -> str | None:
    """RFC 3339 UTC with microseconds: ``2026-11-29T07:00:00.000120Z``."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat("T", "microseconds")[:26] + "Z"


def leaf_fields(record: TransferRecord, subject_ref: str) -> dict[str, Any]:
    return {
        "v": LEAF_VERSION,
        "id": record.id,
        "occurred_at": _time(record.occurred_at),
        "outcome": record.outcome.value,
        "error_type": record.error_type,
        "proof_type": record.proof_type,
        "data_categories": list(record.data_categories),
        "service": {"id": record.service.id, "name": record.service.name,
                    "authority": record.service.authority, "land": record.service.land},
        "register": ({"id": record.register.id, "name": record.register.name}
                     if record.register else None),
        "intermediaries": list(record.intermediaries),
        "purpose": record.purpose,
        "legal_basis": record.legal_basis,
        "consent_id": record.consent_id,
        "subject": subject_ref,
        "retention_until": _time(record.retention_until),
        "correlation_id": record.correlation_id,
    }


def encode_leaf(record: TransferRecord, subject_ref: str) -> bytes:
    return _encoder.encode(leaf_fields(record, subject_ref))


def decode_leaf(leaf: bytes) -> dict[str, Any]:
    value = msgspec.json.decode(leaf)
    if not isinstance(value, dict):
        msg = "a leaf is a JSON object"
        raise ValueError(msg)
    return value
