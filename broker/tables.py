"""Broker tables (SQLModel). Rows never leave the broker's store (``broker/store/``)."""

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    false,
    text,
)
from sqlmodel import Field, SQLModel

from einmal.shared_state import bucket_table

__all__ = ["BROKER_TABLES", "BUCKET", "CONSENT", "IDEMPOTENCY", "JTI", "PREVIEW", "SUBJECT",
           "TRANSFER", "AssertionJtiRow", "ConsentRow", "IdempotencyRow", "PreviewRow",
           "ProtocolSubjectRow", "TransferRow", "as_utc"]


def as_utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ts(*, nullable: bool = False, index: bool = False) -> "Column[datetime]":
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class ConsentRow(SQLModel, table=True):
    __tablename__ = "broker_consent"

    id: str = Field(primary_key=True)
    #: keyed pseudonyms (HMAC-SHA256 with the broker's key), never the IdNr itself
    citizen_ref: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    subject_ref: str = Field(sa_column=Column(String(64), nullable=False))
    subject_masked: str
    service_id: str
    proof_types: str  # comma-separated, sorted
    purpose: str
    granted_at: datetime = Field(sa_column=_ts())
    valid_until: datetime = Field(sa_column=_ts())
    max_uses: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    uses: int = 0
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    #: true: every proof fetched with this consent waits for the citizen's release (preview)
    preview: bool = Field(default=False, sa_column=Column(Boolean, nullable=False,
                                                          server_default=false()))


class TransferRow(SQLModel, table=True):
    """The transfer record, committed before a proof is released; also the delivery outbox
    and the broker's protocol (broker/protocol.py, decision 0031)."""

    __tablename__ = "broker_transfer"
    __table_args__ = (
        # rows written before migration 0004 (plain record, no protocol entry) until they are
        # sealed: a partial index, empty once they are (broker/retention.py: seal_legacy)
        Index("ix_broker_transfer_unsealed", "seq", sqlite_where=text("protocol IS NULL"),
              postgresql_where=text("protocol IS NULL")),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=_ts())
    #: the TransferRecord JSON (IdNrs) sealed with the outbox key; NULL once delivered
    record: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    #: the protocol entry (keyed pseudonyms, no IdNr); NULL only in rows from before 0004
    protocol: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True, index=True))
    attempts: int = 0


class ProtocolSubjectRow(SQLModel, table=True):
    """Who a protocol entry is about, as the broker's keyed pseudonyms (``self``: the subject,
    ``concerned``: others the record names): the source interface's lookup by citizen
    (broker/source.py). Written with the transfer row, deleted with it."""

    __tablename__ = "broker_protocol_subject"
    __table_args__ = (Index("ix_broker_protocol_subject_transfer", "transfer_id"),)

    ref: str = Field(sa_column=Column(String(64), primary_key=True))
    transfer_id: str = Field(sa_column=Column(String(36), primary_key=True))
    relation: str = Field(sa_column=Column(String(16), nullable=False))


class AssertionJtiRow(SQLModel, table=True):
    """Seen client-assertion ids: a replayed ``jti`` hits the primary key."""

    __tablename__ = "broker_assertion_jti"

    client_id: str = Field(primary_key=True)
    jti: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_column=_ts(index=True))


class IdempotencyRow(SQLModel, table=True):
    """A proof request's ``Idempotency-Key``: the first answer, sealed (AES-GCM), with a TTL."""

    __tablename__ = "broker_idempotency"

    client_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    request_hash: str
    state: str  # "in_flight" | "done"
    response: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    expires_at: datetime = Field(sa_column=_ts(index=True))


class PreviewRow(SQLModel, table=True):
    """A proof held for the citizen's preview (EU OOTS): the content sealed (AES-GCM) until
    collected, refused or expired, then destroyed (``sealed`` NULL); the row itself is kept a
    day longer so the service gets a clear answer (decision 0017)."""

    __tablename__ = "broker_preview"

    id: str = Field(sa_column=Column(String(36), primary_key=True))  # = the transfer id
    client_id: str
    #: who may see and decide: the consenting citizen, else the subject (keyed pseudonym)
    citizen_ref: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    subject_masked: str
    proof_type: str
    purpose: str
    consent_id: str | None = None
    state: str  # "pending" | "accepted" | "refused" | "expired" | "collected"
    created_at: datetime = Field(sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts(index=True))
    decided_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


#: The tables as SQLAlchemy Core handles, for the stores' statements.
CONSENT: Table = SQLModel.metadata.tables["broker_consent"]
TRANSFER: Table = SQLModel.metadata.tables["broker_transfer"]
JTI: Table = SQLModel.metadata.tables["broker_assertion_jti"]
IDEMPOTENCY: Table = SQLModel.metadata.tables["broker_idempotency"]
PREVIEW: Table = SQLModel.metadata.tables["broker_preview"]
SUBJECT: Table = SQLModel.metadata.tables["broker_protocol_subject"]
#: abuse limits shared by every broker process (einmal/shared_state.py)
BUCKET: Table = bucket_table(SQLModel.metadata, "broker")
BROKER_TABLES = [CONSENT, TRANSFER, SUBJECT, JTI, IDEMPOTENCY, PREVIEW, BUCKET]
