"""The vault's rows: data keys (wrapped by the master key) and collected batches (encrypted).

Nothing here holds collected content in clear, nor anything derived from it that could be
guessed back (no plaintext hash): only metadata a person's dashboard and the DPO may see
(counts, dates, category, DSS level, sizes).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow

#: A live key is one not destroyed; at most one per (person, category).
LIVE = "destroyed_at IS NULL"


def _uuid() -> str:
    return str(uuid.uuid4())


class DataKey(Base):
    """The AES-256 key of one person and one category, wrapped by the master key.

    Destroying it (crypto-shredding) empties ``wrapped_key`` and sets ``destroyed_at``; the
    row stays as the record that the key existed and when it was destroyed. The id is a UUID
    made before the insert because the wrap's associated data names it.
    """

    __tablename__ = "data_key"
    __table_args__ = (
        Index("uq_data_key_live_person_id_category_key", "person_id", "category_key",
              unique=True, sqlite_where=text(LIVE), postgresql_where=text(LIVE)),
        # A live key has its material; a destroyed one has none left to leak.
        CheckConstraint("destroyed_at IS NOT NULL OR length(wrapped_key) > 0",
                        name="live_has_key"),
        CheckConstraint("destroyed_at IS NULL OR length(wrapped_key) = 0",
                        name="destroyed_is_empty"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    category_key: Mapped[str] = mapped_column(String(64), ForeignKey("category.key"))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    # Which master key wrapped it (see portal.vault.crypto.master_key_id), so a rotation
    # knows what is left to re-wrap and a wrong key gives a clear error, not a failed tag.
    master_key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    destroyed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def destroyed(self) -> bool:
        """Say whether the key was crypto-shredded."""
        return self.destroyed_at is not None


class CollectedBatch(Base):
    """Events of one person and one category, compressed and encrypted under their data key.

    ``public_id`` (a UUID) is part of the ciphertext's associated data, so the content cannot
    be moved to another row. A collector's retry is recognised by ``(collector_id,
    idempotency_key)``.
    """

    __tablename__ = "collected_batch"
    __table_args__ = (
        CheckConstraint("dss_level BETWEEN 1 AND 4", name="dss_level"),
        CheckConstraint("event_count > 0", name="has_events"),
        CheckConstraint("collected_from <= collected_to", name="window_ordered"),
        CheckConstraint("length(nonce) = 12", name="nonce_96_bits"),
        CheckConstraint("compressed_size >= 0", name="size_not_negative"),
        # An idempotency key is only meaningful in the namespace of the collector that made it.
        CheckConstraint("idempotency_key IS NULL OR collector_id IS NOT NULL",
                        name="idempotency_needs_collector"),
        UniqueConstraint("collector_id", "idempotency_key"),
        Index("ix_collected_batch_person_id_category_key_collected_to",
              "person_id", "category_key", "collected_to"),
        Index("ix_collected_batch_category_key_collected_to", "category_key", "collected_to"),
        Index("ix_collected_batch_data_key_id", "data_key_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    category_key: Mapped[str] = mapped_column(String(64), ForeignKey("category.key"))
    data_key_id: Mapped[str] = mapped_column(String(36), ForeignKey("data_key.id"))
    collector_id: Mapped[int | None] = mapped_column(ForeignKey("collector.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    collected_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    collected_to: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    dss_level: Mapped[int] = mapped_column(SmallInteger)
    event_count: Mapped[int] = mapped_column(Integer)
    compressed_size: Mapped[int] = mapped_column(Integer)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
