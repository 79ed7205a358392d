"""The consent ledger (append-only, hash-chained) and the state derived from it.

Ledger rows hold who, what category, under which notice, which state, when, by whom and how:
never any collected content. They survive the deletion of a person's collected data.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.catalog.models import NoticeVersion
from portal.db import Base, UTCDateTime, str_enum, utcnow


class ConsentState(enum.StrEnum):
    """A consent state, named by its W3C Data Privacy Vocabulary term."""

    GIVEN = "ConsentGiven"
    WITHDRAWN = "ConsentWithdrawn"
    REFUSED = "ConsentRefused"
    EXPIRED = "ConsentExpired"
    RENEWED = "RenewedConsentGiven"

    @property
    def allows_collection(self) -> bool:
        """Say whether a collector may record the category in this state."""
        return self in {ConsentState.GIVEN, ConsentState.RENEWED}

    @property
    def iri(self) -> str:
        """Return the term's full IRI (for receipts read by other software)."""
        return f"https://w3id.org/dpv#{self.value}"


class ConsentMethod(enum.StrEnum):
    """How a change reached the portal."""

    WEB = "web"
    API = "api"
    IMPORT = "import"
    SYSTEM = "system"


class ActorRole(enum.StrEnum):
    """In which capacity the actor made the change."""

    SUBJECT = "subject"
    ADMIN = "admin"
    DPO = "dpo"
    SYSTEM = "system"


class ConsentChainHead(Base):
    """The ledger's single head row: its length and last chain hash.

    Every append locks this row first, which serialises appends across processes and hosts
    (PostgreSQL: a row lock; SQLite: the write lock taken by updating it), so the chain can
    never fork. It also lets ``verify`` notice an event removed or forged at the end.
    """

    __tablename__ = "consent_chain_head"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("length >= 0", name="length_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    length: Mapped[int] = mapped_column(Integer)
    chain_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentEvent(Base):
    """One change of one person's consent for one category: a row of the append-only ledger.

    ``id`` is the event's position in the chain (1, 2, 3 … assigned under the head lock, no
    gaps), so a deleted or reordered row shows. The database refuses UPDATE and DELETE.
    """

    __tablename__ = "consent_event"
    __table_args__ = (
        CheckConstraint("id > 0", name="position_positive"),
        CheckConstraint("actor_role = 'system' OR actor_id IS NOT NULL", name="actor_named"),
        Index("ix_consent_event_person_id_id", "person_id", "id"),
        Index("ix_consent_event_category_key", "category_key"),
        # HR's "as of" view: each person's last event per category at or before a moment.
        Index("ix_consent_event_person_id_category_key_occurred_at",
              "person_id", "category_key", "occurred_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # The public reference printed on receipts; reveals nothing about the ledger's size.
    receipt_id: Mapped[str] = mapped_column(String(36), unique=True,
                                            default=lambda: str(uuid.uuid4()))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    category_key: Mapped[str] = mapped_column(String(64), ForeignKey("category.key"))
    notice_version_id: Mapped[int] = mapped_column(ForeignKey("notice_version.id"))
    state: Mapped[ConsentState] = mapped_column(str_enum(ConsentState, 32))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    actor_role: Mapped[ActorRole] = mapped_column(str_enum(ActorRole, 16))
    method: Mapped[ConsentMethod] = mapped_column(str_enum(ConsentMethod, 16))
    leaf_hash: Mapped[str] = mapped_column(String(64))
    chain_hash: Mapped[str] = mapped_column(String(64), unique=True)

    notice_version: Mapped[NoticeVersion] = relationship(lazy="joined", innerjoin=True)

    def leaf_fields(self) -> dict[str, object]:
        """Return the fields the leaf hash covers (see :mod:`portal.consent.chain`)."""
        return {
            "id": self.id, "receipt_id": self.receipt_id, "person_id": self.person_id,
            "category_key": self.category_key, "notice_version_id": self.notice_version_id,
            "state": str(self.state), "occurred_at": self.occurred_at, "actor_id": self.actor_id,
            "actor_role": str(self.actor_role), "method": str(self.method),
        }


class ConsentStatus(Base):
    """A person's current state for a category, derived from the ledger's last event.

    Written in the same transaction as that event; ``portal consent rebuild-state`` recomputes
    the whole table from the ledger. No row means "never decided", which is "not given".
    """

    __tablename__ = "consent_status"

    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    category_key: Mapped[str] = mapped_column(String(64), ForeignKey("category.key"),
                                              primary_key=True)
    state: Mapped[ConsentState] = mapped_column(str_enum(ConsentState, 32))
    notice_version_id: Mapped[int] = mapped_column(ForeignKey("notice_version.id"))
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    event_id: Mapped[int] = mapped_column(ForeignKey("consent_event.id"), unique=True)

    notice_version: Mapped[NoticeVersion] = relationship(lazy="joined", innerjoin=True)

    @property
    def allows_collection(self) -> bool:
        """Say whether a collector may record this category for this person now."""
        return self.state.allows_collection
