"""Collector clients, their acknowledgements, and the outbox of webhook notices sent to them."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, str_enum, utcnow


class Collector(Base):
    """A registered collector: which categories it records and where it hears of withdrawals.

    The token is stored only as its SHA-256. The webhook secret is needed in clear to sign
    each notice, so it is stored sealed (AES-256-GCM under a key derived from the portal's
    secret key, see :mod:`portal.api.service`): a copy of the table alone cannot forge notices.
    """

    __tablename__ = "collector"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str] = mapped_column(String(2048), default="")
    webhook_secret_sealed: Mapped[str] = mapped_column(String(512), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def active(self) -> bool:
        """Say whether the collector may still act (not revoked)."""
        return self.revoked_at is None

    def records(self, category_key: str) -> bool:
        """Say whether the collector is registered for ``category_key``."""
        categories: list[Any] = self.categories or []
        return category_key in categories


class CollectionAction(enum.StrEnum):
    """What a collector did about a consent change."""

    STOPPED = "stopped"
    RESUMED = "resumed"


class CollectionAcknowledgement(Base):
    """A collector's word that it acted on one consent change: it stopped, or resumed, recording.

    ``last_event_at`` is the time of the last event the collector recorded for the person and
    category (``None``: it never recorded any). After a withdrawal, that is when collection
    actually stopped, which the person sees; a withdrawal no collector has acknowledged is
    shown to the privacy admin. One acknowledgement per collector and change.
    """

    __tablename__ = "collection_acknowledgement"
    __table_args__ = (
        UniqueConstraint("collector_id", "change_event_id"),
        Index("ix_collection_acknowledgement_person_id_category_key", "person_id",
              "category_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    collector_id: Mapped[int] = mapped_column(ForeignKey("collector.id"))
    # The ledger event acted on: its id is the cursor of the changes feed.
    change_event_id: Mapped[int] = mapped_column(ForeignKey("consent_event.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    category_key: Mapped[str] = mapped_column(String(64), ForeignKey("category.key"))
    action: Mapped[CollectionAction] = mapped_column(Enum(
        CollectionAction, native_enum=False, length=16, validate_strings=True,
        create_constraint=True, name="collectionaction",
        values_callable=lambda members: [member.value for member in members]))
    last_event_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeliveryState(enum.StrEnum):
    """Where a webhook notice stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    # Every retry failed; the privacy admin sees it and the collector must be contacted.
    FAILED = "failed"


class WebhookDelivery(Base):
    """A signed notice owed to a collector or a training client, written with its event (outbox).

    Because the row commits or rolls back with the withdrawal itself, a notice is never lost
    nor sent for a change that did not happen; workers claim rows with a lease, so two
    processes never send the same notice at once. Exactly one recipient: a collector, or a
    training client (``portal.training`` queues those, and tells the sender where they go
    through :func:`portal.api.webhooks.register_recipients`).
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint("(collector_id IS NULL AND training_client_id IS NOT NULL) OR "
                        "(collector_id IS NOT NULL AND training_client_id IS NULL)",
                        name="one_recipient"),
        Index("ix_webhook_delivery_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_webhook_delivery_collector_id", "collector_id"),
        Index("ix_webhook_delivery_training_client_id", "training_client_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True,
                                    default=lambda: str(uuid.uuid4()))
    collector_id: Mapped[int | None] = mapped_column(ForeignKey("collector.id"))
    # Named by its table only: the training package sits above this one (docs/architecture.md).
    training_client_id: Mapped[int | None] = mapped_column(ForeignKey("training_client.id"))
    # The consent event announced; empty for a deletion notice (kind "data.delete").
    event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_event.id"))
    kind: Mapped[str] = mapped_column(String(32))
    # The exact body signed and sent, kept so that every retry sends the same bytes.
    body: Mapped[str] = mapped_column(String)
    state: Mapped[DeliveryState] = mapped_column(str_enum(DeliveryState, 16),
                                                 default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(255), default="")
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
