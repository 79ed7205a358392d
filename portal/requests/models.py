"""Data-subject requests: deletion requests, their timeline, what was kept, execution steps.

Nothing here holds collected content: only what was asked, decided and done (categories,
periods, counts, key ids, dates, and the reasons people wrote), so these records outlive the
deletion they describe without undoing it. The timeline (:class:`RequestEvent`) is
append-only; the database refuses to change it.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.auth.models import Person
from portal.db import Base, UTCDateTime, str_enum, utcnow


def _uuid() -> str:
    return str(uuid.uuid4())


class RequestState(enum.StrEnum):
    """Where a deletion request stands (see :mod:`portal.requests.service` for the moves)."""

    RECEIVED = "received"
    EXTENDED = "extended"
    APPROVED = "approved"
    APPROVED_IN_PART = "approved_in_part"
    REFUSED = "refused"
    CONFIRMED = "confirmed"
    EXECUTING = "executing"
    EXECUTED = "executed"
    CANCELLED = "cancelled"

    @property
    def undecided(self) -> bool:
        """Say whether the DPO has still to decide (the employee may still cancel)."""
        return self in {RequestState.RECEIVED, RequestState.EXTENDED}

    @property
    def finished(self) -> bool:
        """Say whether nothing more will happen to the request."""
        return self in {RequestState.REFUSED, RequestState.EXECUTED, RequestState.CANCELLED}


class DeletionScope(enum.StrEnum):
    """What a deletion request covers."""

    ALL = "all"
    CATEGORIES = "categories"
    RANGE = "range"


class EventKind(enum.StrEnum):
    """What happened to a request or an objection: one row of its timeline."""

    SUBMITTED = "submitted"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    EXTENDED = "extended"
    APPROVED = "approved"
    APPROVED_IN_PART = "approved_in_part"
    REFUSED = "refused"
    CONFIRMED = "confirmed"
    EXECUTION_STARTED = "execution_started"
    CATEGORY_DELETED = "category_deleted"
    EXECUTED = "executed"
    VERIFIED = "verified"
    CANCELLED = "cancelled"
    OBJECTION_UPHELD = "objection_upheld"
    OBJECTION_DISMISSED = "objection_dismissed"


class ActorCapacity(enum.StrEnum):
    """In which capacity someone acted on a request."""

    EMPLOYEE = "employee"
    DPO = "dpo"
    OPERATOR = "operator"
    SYSTEM = "system"


class DeletionRequest(Base):
    """An employee's request to delete collected data about them (GDPR Art. 17)."""

    __tablename__ = "deletion_request"
    __table_args__ = (
        CheckConstraint("due_at > received_at", name="due_after_receipt"),
        CheckConstraint("scope != 'range' OR (since IS NOT NULL AND until IS NOT NULL "
                        "AND since <= until)", name="range_complete"),
        CheckConstraint("state != 'refused' OR decision_reason != ''",
                        name="refusal_has_reason"),
        CheckConstraint("extension_months IS NULL OR extension_months BETWEEN 1 AND 2",
                        name="extension_at_most_two_months"),
        CheckConstraint("(extension_months IS NULL) = (extension_reason IS NULL)",
                        name="extension_has_reason"),
        CheckConstraint("state IN ('received', 'extended', 'cancelled') "
                        "OR (decided_at IS NOT NULL AND decided_by_id IS NOT NULL)",
                        name="decision_recorded"),
        CheckConstraint("state != 'confirmed' OR confirmed_by_id IS NOT NULL",
                        name="confirmation_recorded"),
        CheckConstraint("confirmed_by_id IS NULL OR confirmed_by_id != decided_by_id",
                        name="confirmed_by_another"),
        CheckConstraint("state != 'executed' OR executed_at IS NOT NULL",
                        name="execution_recorded"),
        Index("ix_deletion_request_person_id", "person_id"),
        Index("ix_deletion_request_state_due_at", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The reference shown to people, in URLs and on the certificate; reveals no count.
    reference: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    scope: Mapped[DeletionScope] = mapped_column(str_enum(DeletionScope, 16))
    #: Category keys asked for (scope "categories"); empty for "all" and "range".
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The employee's own words, optional.
    reason: Mapped[str] = mapped_column(Text, default="")
    withdraw_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[RequestState] = mapped_column(str_enum(RequestState, 32),
                                                default=RequestState.RECEIVED)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    extension_months: Mapped[int | None] = mapped_column(Integer)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    execution_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    executed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    executed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The signed certificate of deletion (compact JWS): metadata only, kept to be
    #: downloaded again byte for byte.
    certificate_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    certificate_jws: Mapped[str | None] = mapped_column(Text)

    person: Mapped[Person] = relationship(foreign_keys=[person_id])
    decided_by: Mapped[Person | None] = relationship(foreign_keys=[decided_by_id])
    confirmed_by: Mapped[Person | None] = relationship(foreign_keys=[confirmed_by_id])
    executed_by: Mapped[Person | None] = relationship(foreign_keys=[executed_by_id])
    kept_items: Mapped[list[KeptItem]] = relationship(order_by="KeptItem.category_key",
                                                      back_populates="request")
    steps: Mapped[list[DeletionStep]] = relationship(order_by="DeletionStep.category_key",
                                                     back_populates="request")


class RequestEvent(Base):
    """One step in the life of a request or an objection, as its subject is told of it.

    ``reason`` is shown to the employee (the DPO's reasons, an extension's reason).
    """

    __tablename__ = "request_event"
    __table_args__ = (
        CheckConstraint("(request_id IS NULL) != (objection_id IS NULL)",
                        name="of_one_request"),
        Index("ix_request_event_request_id", "request_id"),
        Index("ix_request_event_objection_id", "objection_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("deletion_request.id"))
    objection_id: Mapped[int | None] = mapped_column(ForeignKey("objection.id"))
    kind: Mapped[EventKind] = mapped_column(str_enum(EventKind, 32))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    #: The actor's name at the time (names change; commands name themselves).
    actor_name: Mapped[str] = mapped_column(String(255))
    actor_capacity: Mapped[ActorCapacity] = mapped_column(str_enum(ActorCapacity, 16))
    reason: Mapped[str] = mapped_column(Text, default="")
    #: Small facts (a category key, counts, a new due date): never collected content.
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class KeptItem(Base):
    """Data the DPO decided to keep despite the request, and why (e.g. a legal hold)."""

    __tablename__ = "kept_item"
    __table_args__ = (
        UniqueConstraint("request_id", "category_key"),
        CheckConstraint("reason != ''", name="has_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("deletion_request.id"))
    category_key: Mapped[str] = mapped_column(String(64), ForeignKey("category.key"))
    reason: Mapped[str] = mapped_column(Text)

    request: Mapped[DeletionRequest] = relationship(back_populates="kept_items")


class DeletionStep(Base):
    """The deletion of one category of one request, committed on its own.

    Written (undone) when execution starts; each is done in one transaction with the deletions
    it records, so after a crash the rows say exactly what is left and a rerun does only that.
    """

    __tablename__ = "deletion_step"
    __table_args__ = (
        UniqueConstraint("request_id", "category_key"),
        CheckConstraint("batches_deleted >= 0 AND events_deleted >= 0",
                        name="counts_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("deletion_request.id"))
    category_key: Mapped[str] = mapped_column(String(64), ForeignKey("category.key"))
    #: Whether the whole category goes (its data keys are destroyed) or only a period.
    whole_category: Mapped[bool] = mapped_column(Boolean)
    batches_deleted: Mapped[int] = mapped_column(Integer, default=0)
    events_deleted: Mapped[int] = mapped_column(Integer, default=0)
    first_collected: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_collected: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: Ids of the data keys destroyed (crypto-shredded) by this step.
    destroyed_key_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    consent_withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    collectors_notified: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    request: Mapped[DeletionRequest] = relationship(back_populates="steps")
