"""The transfer record: the published contract between broker (writer) and cockpit (log).

New fields get defaults, so an older cockpit can read a newer broker's records.
Never carries proof values: only data categories.
"""

import enum
from datetime import datetime

import msgspec

__all__ = ["Concerned", "Outcome", "RegisterRef", "ServiceRef", "TransferBatch",
           "TransferRecord"]


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    REFUSED = "refused"
    FAILED = "failed"


class ServiceRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    authority: str
    land: str


class RegisterRef(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str


class Concerned(msgspec.Struct, frozen=True, kw_only=True):
    """A citizen the transfer is about. ``relation`` is from that citizen's point of view:
    ``self`` (the subject), ``child`` (the subject is my child), ``concerned`` (named in it)."""

    idnr: str
    relation: str


class TransferRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    occurred_at: datetime
    outcome: Outcome
    proof_type: str
    purpose: str
    service: ServiceRef
    subject: str
    error_type: str | None = None
    data_categories: tuple[str, ...] = ()
    register: RegisterRef | None = None
    intermediaries: tuple[str, ...] = ("einmal-broker",)
    purpose_text: str = ""
    legal_basis: str = ""
    consent_id: str | None = None
    concerned: tuple[Concerned, ...] = ()
    retention_until: datetime | None = None
    correlation_id: str | None = None


class TransferBatch(msgspec.Struct, frozen=True, kw_only=True):
    records: list[TransferRecord]
