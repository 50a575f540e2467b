"""Cockpit tables: the transfer log and the per-citizen index (pseudonyms only, no IdNrs)."""

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlmodel import Field, SQLModel

from einmal.shared_state import bucket_table, kv_table

__all__ = ["BUCKET", "CHECKPOINT", "CITIZEN_ENTRY", "CITIZEN_KEY", "COCKPIT_TABLES", "COSIGNED",
           "ENTRY", "KV", "LOG_STATE", "RELATION", "TREE_NODE", "CheckpointRow", "CitizenEntryRow",
           "CitizenKeyRow", "CosignedCheckpointRow", "EntryRow", "LogStateRow", "RelationRow",
           "TreeNodeRow", "as_utc"]


class EntryRow(SQLModel, table=True):
    """One transfer record, in the order the cockpit received it (``seq``)."""

    __tablename__ = "cockpit_entry"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    subject_ref: str = Field(sa_column=Column(String(64), nullable=False))
    #: the citizen view of the entry; NULL once shredded
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    #: the exact leaf bytes (decision 0009); NULL once shredded - the hash stays
    leaf: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    #: position in the Merkle tree, set by the sequencer; NULL until integrated
    log_index: int | None = Field(default=None, sa_column=Column(
        BigInteger, nullable=True, unique=True))
    service_id: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    register_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class CitizenEntryRow(SQLModel, table=True):
    """Which entries a citizen sees: one row per (citizen pseudonym, entry)."""

    __tablename__ = "cockpit_citizen_entry"
    __table_args__ = (
        Index("ix_cockpit_citizen_entry_feed", "citizen_ref", "occurred_at", "transfer_id"),
    )

    citizen_ref: str = Field(sa_column=Column(String(64), primary_key=True))
    transfer_id: str = Field(sa_column=Column(String(36), primary_key=True))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    relation: str


class RelationRow(SQLModel, table=True):
    """Parent -> child, learned from registers' answers (birth record, custody holders)."""

    __tablename__ = "cockpit_relation"

    parent_ref: str = Field(sa_column=Column(String(64), primary_key=True))
    child_ref: str = Field(sa_column=Column(String(64), primary_key=True))


class CitizenKeyRow(SQLModel, table=True):
    """A citizen's view key, wrapped with the cockpit master key (cockpit/vault.py)."""

    __tablename__ = "cockpit_citizen_key"

    citizen_ref: str = Field(sa_column=Column(String(64), primary_key=True))
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class TreeNodeRow(SQLModel, table=True):
    """Hash of the perfect subtree covering leaves [idx * 2**level, (idx + 1) * 2**level)."""

    __tablename__ = "cockpit_tree_node"

    level: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    __tablename__ = "cockpit_checkpoint"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class CosignedCheckpointRow(SQLModel, table=True):
    """A published checkpoint: the signed note with the witnesses' cosignature lines appended,
    once a quorum of them cosigned it (decision 0030). The largest is the one published."""

    __tablename__ = "cockpit_cosigned_checkpoint"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    #: how many witnesses' cosignatures the note carries
    cosignatures: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class LogStateRow(SQLModel, table=True):
    """One row: the integrated tree size. Updating it first is the sequencer's lock."""

    __tablename__ = "cockpit_log_state"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    tree_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


#: The tables as SQLAlchemy Core handles, for the stores' statements.
ENTRY: Table = SQLModel.metadata.tables["cockpit_entry"]
CITIZEN_ENTRY: Table = SQLModel.metadata.tables["cockpit_citizen_entry"]
RELATION: Table = SQLModel.metadata.tables["cockpit_relation"]
CITIZEN_KEY: Table = SQLModel.metadata.tables["cockpit_citizen_key"]
TREE_NODE: Table = SQLModel.metadata.tables["cockpit_tree_node"]
CHECKPOINT: Table = SQLModel.metadata.tables["cockpit_checkpoint"]
LOG_STATE: Table = SQLModel.metadata.tables["cockpit_log_state"]
COSIGNED: Table = SQLModel.metadata.tables["cockpit_cosigned_checkpoint"]
#: web sessions and abuse limits shared by every cockpit process (einmal/shared_state.py)
KV: Table = kv_table(SQLModel.metadata, "cockpit")
BUCKET: Table = bucket_table(SQLModel.metadata, "cockpit")
COCKPIT_TABLES = [ENTRY, CITIZEN_ENTRY, RELATION, TREE_NODE, CHECKPOINT, LOG_STATE, CITIZEN_KEY,
                  KV, BUCKET, COSIGNED]


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives it back without a zone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
