"""The audit log: who read or changed whose personal data, when, how and why.

Append-only and hash-chained like the consent ledger (:mod:`portal.hashchain`), the database
refusing UPDATE and DELETE. An entry names the people whose data it concerns in
:class:`AuditSubject` rows (one for a page view, 100,000 for an HR export); the leaf hash
covers their count and a digest of their ids, so a subject row added or removed shows too.
Entries hold no collected content: only what was done, to whose data, by whom and why.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, str_enum, utcnow


class AuditRole(enum.StrEnum):
    """In which capacity the actor acted."""

    SUBJECT = "subject"  # the person, on their own data
    HR = "hr"
    DPO = "dpo"
    ADMIN = "admin"
    OPERATOR = "operator"  # someone running a ``portal`` command on the server
    SYSTEM = "system"  # the portal itself (retention, scheduled work)


class AuditAction(enum.StrEnum):
    """What kind of thing was done to the data."""

    READ = "read"
    DOWNLOAD = "download"
    EXPORT = "export"
    CHANGE = "change"
    DELETE = "delete"


class AuditChainHead(Base):
    """The audit log's single head row: its length and last chain hash (see ConsentChainHead)."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("length >= 0", name="length_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    length: Mapped[int] = mapped_column(Integer)
    chain_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """One access to or change of personal data: a row of the append-only audit log.

    ``id`` is the entry's position in the chain (1, 2, 3 … no gaps).
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        CheckConstraint("id > 0", name="position_positive"),
        CheckConstraint("subject_count >= 0", name="subject_count_not_negative"),
        CheckConstraint("actor_role IN ('system', 'operator') OR actor_id IS NOT NULL",
                        name="actor_named"),
        Index("ix_audit_entry_actor_id", "actor_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # The public reference shown to people; reveals nothing about the log's size.
    reference: Mapped[str] = mapped_column(String(36), unique=True,
                                           default=lambda: str(uuid.uuid4()))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    # The actor's name when they acted (or the command's), since names change.
    actor_name: Mapped[str] = mapped_column(String(255))
    actor_role: Mapped[AuditRole] = mapped_column(str_enum(AuditRole, 16))
    action: Mapped[AuditAction] = mapped_column(str_enum(AuditAction, 16))
    # A key from portal.audit.wording.WHAT, such as "my_data.download".
    what: Mapped[str] = mapped_column(String(64))
    # Why, in the actor's words (an export's purpose, a decision's reason); may be empty.
    purpose: Mapped[str] = mapped_column(String(1000))
    # Canonical JSON of small facts (categories, format, counts): never collected content.
    detail: Mapped[str] = mapped_column(String(4000))
    subject_count: Mapped[int] = mapped_column(Integer)
    # SHA-256 of the sorted subject ids (see portal.audit.service.subjects_digest).
    subjects_digest: Mapped[str] = mapped_column(String(64))
    leaf_hash: Mapped[str] = mapped_column(String(64))
    chain_hash: Mapped[str] = mapped_column(String(64), unique=True)

    def leaf_fields(self) -> dict[str, object]:
        """Return the fields the leaf hash covers (see :data:`portal.audit.service.AUDIT_LOG`)."""
        return {
            "id": self.id, "reference": self.reference, "occurred_at": self.occurred_at,
            "actor_id": self.actor_id, "actor_name": self.actor_name,
            "actor_role": str(self.actor_role), "action": str(self.action), "what": self.what,
            "purpose": self.purpose, "detail": self.detail, "subject_count": self.subject_count,
            "subjects_digest": self.subjects_digest,
        }


class AuditSubject(Base):
    """A person whose data an audit entry concerns (their access log is built from these)."""

    __tablename__ = "audit_subject"
    __table_args__ = (Index("ix_audit_subject_person_id_entry_id", "person_id", "entry_id"),)

    entry_id: Mapped[int] = mapped_column(ForeignKey("audit_entry.id"), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
