"""Cockpit tables: the transfer log and the per-citizen index (pseudonyms only, no IdNrs)."""

from datetime import datetime

from sqlalchemy import Column, DateTime, Index, LargeBinary, String
from sqlmodel import Field, SQLModel

__all__ = ["COCKPIT_TABLES", "CitizenEntryRow", "EntryRow", "RelationRow"]


class EntryRow(SQLModel, table=True):
    """One transfer record, in the order the cockpit received it (``seq``)."""

    __tablename__ = "cockpit_entry"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    subject_ref: str = Field(sa_column=Column(String(64), nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


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


COCKPIT_TABLES = [EntryRow.__table__, CitizenEntryRow.__table__, RelationRow.__table__]  # type: ignore[attr-defined]
