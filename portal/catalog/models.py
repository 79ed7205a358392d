"""The catalog of what is collected, and the versioned notices that describe it.

A published notice version is a contract and never changes: the database refuses UPDATE and
DELETE on ``notice_version`` and ``category_notice`` (triggers, see migration 0003).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, utcnow


class LegalBasis(enum.StrEnum):
    """The GDPR Art. 6(1) basis a category is collected on."""

    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"


class Category(Base):
    """A kind of collection (``pointer``, ``keystrokes`` …), named by a stable key.

    The facts that gate collection live here; the words that explain them live in the notice
    versions, so that they are versioned with the rest of the notice.
    """

    __tablename__ = "category"
    __table_args__ = (
        CheckConstraint("sensitivity BETWEEN 1 AND 4", name="dss_level"),
        CheckConstraint("retention_days > 0", name="retention_positive"),
        CheckConstraint("legal_basis = 'consent' OR optional = false",
                        name="only_consent_optional"),
    )

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    legal_basis: Mapped[LegalBasis] = mapped_column(
        Enum(LegalBasis, native_enum=False, length=32, validate_strings=True,
             values_callable=lambda members: [member.value for member in members]))
    optional: Mapped[bool]
    retention_days: Mapped[int]
    sensitivity: Mapped[int]
    # JSON Schema (2020-12) of one collected event; the collector API validates against it.
    event_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def needs_consent(self) -> bool:
        """Say whether collection depends on the person's consent (else: right to object)."""
        return self.legal_basis is LegalBasis.CONSENT


class NoticeVersion(Base):
    """One published version of the whole notice (every category, every language)."""

    __tablename__ = "notice_version"
    __table_args__ = (CheckConstraint("number > 0", name="number_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who published it: a privacy admin, or (from the CLI) the operator named on the command.
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    published_by_name: Mapped[str] = mapped_column(String(255))
    dpo_sign_off: Mapped[str] = mapped_column(String(255))
    works_council_ref: Mapped[str] = mapped_column(String(255), default="")
    # What changed, in plain words, per language: {"en": "...", "de": "..."}.
    change_summary: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The whole catalog as published (controller, sensitivity levels, categories with texts).
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    document_sha256: Mapped[str] = mapped_column(String(64))

    sections: Mapped[list[CategoryNotice]] = relationship(
        back_populates="notice_version", order_by="CategoryNotice.position")


class CategoryNotice(Base):
    """One category's part of a notice version.

    ``content_sha256`` covers the category's facts and texts in every language: a consent
    given under version 3 still stands under version 4 when this hash did not change.
    """

    __tablename__ = "category_notice"

    notice_version_id: Mapped[int] = mapped_column(ForeignKey("notice_version.id"),
                                                   primary_key=True)
    category_key: Mapped[str] = mapped_column(ForeignKey("category.key"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_sha256: Mapped[str] = mapped_column(String(64))
    changed: Mapped[bool] = mapped_column(default=False)
    # A material change stops collection until the person confirms again.
    material: Mapped[bool] = mapped_column(default=False)
    # Why the change is (or is not) material, for the record.
    material_reason: Mapped[str] = mapped_column(Text, default="")

    notice_version: Mapped[NoticeVersion] = relationship(back_populates="sections")
    category: Mapped[Category] = relationship()


class ObjectionState(enum.StrEnum):
    """Where an objection stands: received, its answer extended once, then decided."""

    RECEIVED = "received"
    EXTENDED = "extended"
    # The DPO agrees that the person's reasons outweigh the company's interest.
    UPHELD = "upheld"
    # The DPO weighed the reasons and the recording goes on; the person is told why.
    DISMISSED = "dismissed"


class Objection(Base):
    """A person's objection (GDPR Art. 21) to a category that does not rest on consent.

    The person writes why; the data protection officer must answer by ``due_at``, one
    calendar month after ``filed_at`` (GDPR Art. 12(3)).
    """

    __tablename__ = "objection"
    __table_args__ = (
        CheckConstraint("state IN ('received', 'extended', 'upheld', 'dismissed')",
                        name="state_known"),
        CheckConstraint("due_at > filed_at", name="due_after_filing"),
        Index("ix_objection_person_id_category_key", "person_id", "category_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    category_key: Mapped[str] = mapped_column(ForeignKey("category.key"))
    # The notice the person read when objecting, so the DPO answers the text they saw.
    notice_version_id: Mapped[int] = mapped_column(ForeignKey("notice_version.id"))
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[ObjectionState] = mapped_column(
        Enum(ObjectionState, native_enum=False, length=32, validate_strings=True,
             create_constraint=False,
             values_callable=lambda members: [member.value for member in members]),
        default=ObjectionState.RECEIVED)
    filed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    category: Mapped[Category] = relationship()
