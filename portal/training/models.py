"""Training clients, dataset snapshots, their parts and holdings, and the models trained on them.

A snapshot is the only way recorded data leaves the vault for model training. It is built
from the vault at read time under the rules of :mod:`portal.training.rules`, written as
Parquet files encrypted under a key of its own (destroyed when the snapshot is retired), and
described per person (:class:`SnapshotHolding`) so that each person can see which snapshots
and models hold how many of their records, and why others were left out.

Nothing here holds collected content: only counts, dates, categories and states.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, str_enum, utcnow


def _uuid() -> str:
    return str(uuid.uuid4())


class TrainingScope(enum.StrEnum):
    """What a training client's token may do on ``/api/v1/training``."""

    SNAPSHOTS = "snapshots"  # ask for snapshots, read their state and files
    MODELS = "models"  # register models trained on its snapshots
    RETIRE = "retire"  # retire its own snapshots


class TrainingClient(Base):
    """A registered training pipeline: the purposes it declares and where it hears of changes.

    Like a collector: the token is stored only as its SHA-256, the webhook secret sealed.
    A client may only ask for snapshots for one of its ``purposes``.
    """

    __tablename__ = "training_client"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    purposes: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str] = mapped_column(String(2048), default="")
    webhook_secret_sealed: Mapped[str] = mapped_column(String(512), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def active(self) -> bool:
        """Say whether the client may still act (not revoked)."""
        return self.revoked_at is None

    def may(self, scope: TrainingScope) -> bool:
        """Say whether the client's token holds ``scope``."""
        return str(scope) in (self.scopes or [])


class SnapshotState(enum.StrEnum):
    """Where a snapshot stands. Only a ``ready`` snapshot's files can be read."""

    QUEUED = "queued"  # asked for; its parts wait for a worker
    BUILDING = "building"  # at least one part taken by a worker
    READY = "ready"  # every part written, the manifest signed
    FAILED = "failed"  # a part failed for good; its files were removed
    RETIRED = "retired"  # key destroyed, files removed, certificate issued


class ExclusionReason(enum.StrEnum):
    """Why records were left out of a snapshot; counted per person, category and reason."""

    NO_CONSENT = "no_consent"  # consent not given under the current notice
    OBJECTION = "objection"  # an objection pending or upheld
    DELETION_REQUEST = "deletion_request"  # a deletion request pending or approved
    PAST_RETENTION = "past_retention"  # older than the category keeps records
    ABOVE_MAX_DSS = "above_max_dss"  # the batch's DSS level above the snapshot's maximum
    SENSITIVE_DOCUMENT = "sensitive_document"  # made while a DSS 3-4 document was open
    RATINGS_MISSING = "ratings_missing"  # no sensitivity ratings: nothing shows what is safe
    RATINGS_OBJECTED = "ratings_objected"  # the person objected to their ratings
    COLLEAGUE_NOT_CONSENTED = "colleague_not_consented"  # a message by a colleague who did not


class OutdatedReason(enum.StrEnum):
    """Why a snapshot no longer matches what the rules would let in today."""

    WITHDRAWN = "withdrawn"  # the person withdrew (or refused) consent
    EXPIRED = "expired"  # consent ended with a material change of the notice
    OBJECTED = "objected"
    ERASED = "erased"


class TrainingSnapshot(Base):
    """A dataset asked for by a training client: what, for which purpose, and where it stands.

    ``number`` is what people read ("training dataset 12"). The data key (AES-256, wrapped by
    the master key like the vault's) encrypts the files and keys the pseudonyms, so retiring
    the snapshot (destroying the key) makes its files and pseudonyms unreadable everywhere.
    """

    __tablename__ = "training_snapshot"
    __table_args__ = (
        CheckConstraint("collected_from < collected_to", name="period_ordered"),
        CheckConstraint("max_dss_level BETWEEN 1 AND 4", name="max_dss_level"),
        CheckConstraint("state != 'retired' OR (retired_at IS NOT NULL "
                        "AND length(wrapped_key) = 0)", name="retired_has_no_key"),
        Index("ix_training_snapshot_client_id_requested_at", "client_id", "requested_at"),
        Index("ix_training_snapshot_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("training_client.id"))
    purpose_key: Mapped[str] = mapped_column(String(64))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    collected_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    collected_to: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    max_dss_level: Mapped[int] = mapped_column(SmallInteger)
    # The notice in force when the snapshot was asked for: the purpose was checked against it,
    # and the manifest names it. Consent is read from the ledger when each part is built.
    notice_version_id: Mapped[int] = mapped_column(ForeignKey("notice_version.id"))
    state: Mapped[SnapshotState] = mapped_column(str_enum(SnapshotState, 16),
                                                 default=SnapshotState.QUEUED)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    failed_reason: Mapped[str] = mapped_column(Text, default="")
    # The first time a person's withdrawal, objection or erasure touched records it holds.
    outdated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    retired_by: Mapped[str] = mapped_column(String(255), default="")
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(16))
    # Counts over everyone (no person named): {"included": n, "excluded": {reason: n}}.
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The signed manifest (compact JWS), kept to be served byte for byte.
    manifest_jws: Mapped[str | None] = mapped_column(Text)
    certificate_jws: Mapped[str | None] = mapped_column(Text)

    client: Mapped[TrainingClient] = relationship()
    parts: Mapped[list[SnapshotPart]] = relationship(order_by="SnapshotPart.number",
                                                     back_populates="snapshot")


class PartState(enum.StrEnum):
    """Where one part of a snapshot's work stands."""

    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"


class SnapshotPart(Base):
    """One piece of a snapshot's work: one category for a range of people, one file.

    Workers take parts with a lease (``lease_owner`` until ``lease_expires_at``); a worker
    that dies loses its lease and another takes the part again from the start, overwriting
    the file it had begun. The snapshot is ready only when every part is done.
    """

    __tablename__ = "training_snapshot_part"
    __table_args__ = (
        UniqueConstraint("snapshot_id", "number"),
        CheckConstraint("first_person_id <= last_person_id", name="people_ordered"),
        Index("ix_training_snapshot_part_state_lease_expires_at", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("training_snapshot.id"))
    number: Mapped[int] = mapped_column(Integer)
    category_key: Mapped[str] = mapped_column(String(64))
    first_person_id: Mapped[int] = mapped_column(Integer)
    last_person_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[PartState] = mapped_column(str_enum(PartState, 16), default=PartState.PENDING)
    lease_owner: Mapped[str] = mapped_column(String(128), default="")
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The file it wrote, relative to the snapshot's folder ("keystrokes/part-00003.parquet").
    path: Mapped[str] = mapped_column(String(255), default="")
    rows: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str] = mapped_column(Text, default="")

    snapshot: Mapped[TrainingSnapshot] = relationship(back_populates="parts")


class SnapshotHolding(Base):
    """How many of one person's records of one category a snapshot holds, and which it left out.

    The person's own view of training (``/my-data/training``), their access log, the
    certificate of deletion and the marking of outdated snapshots all read these rows. A
    person with nothing included and nothing excluded has no row.
    """

    __tablename__ = "training_snapshot_holding"
    __table_args__ = (
        Index("ix_training_snapshot_holding_person_id", "person_id"),
    )

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("training_snapshot.id"),
                                             primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    category_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    included: Mapped[int] = mapped_column(Integer, default=0)
    # {reason: count} over ExclusionReason values.
    excluded: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    outdated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outdated_reason: Mapped[OutdatedReason | None] = mapped_column(str_enum(OutdatedReason, 16))


class TrainedModel(Base):
    """A model a training client says it trained on some of its snapshots."""

    __tablename__ = "trained_model"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    client_id: Mapped[int] = mapped_column(ForeignKey("training_client.id"))
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    snapshots: Mapped[list[TrainingSnapshot]] = relationship(
        secondary="trained_model_snapshot", order_by="TrainingSnapshot.number")


class TrainedModelSnapshot(Base):
    """That a model was trained on a snapshot (lineage)."""

    __tablename__ = "trained_model_snapshot"

    model_id: Mapped[int] = mapped_column(ForeignKey("trained_model.id"), primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("training_snapshot.id"),
                                             primary_key=True)


class SnapshotEventKind(enum.StrEnum):
    """What a training client hears of one of its snapshots (webhook and changes feed)."""

    OUTDATED = "outdated"  # records it holds were withdrawn, objected to or erased
    RETIRED = "retired"  # its key and files were destroyed


class SnapshotEvent(Base):
    """One change of a snapshot that its client is told of; its id is the feed's cursor.

    Names the snapshot and why, never a person nor how many: a client must not learn from
    its feed who withdrew. Written one per snapshot per transaction that marks it (several
    people erased at once are one event), under a lock held until the commit, so that ids
    become visible in the order they were given and a client polling with the last cursor
    it saw misses nothing.
    """

    __tablename__ = "training_snapshot_event"
    __table_args__ = (
        Index("ix_training_snapshot_event_snapshot_id", "snapshot_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("training_snapshot.id"))
    kind: Mapped[SnapshotEventKind] = mapped_column(str_enum(SnapshotEventKind, 16))
    # Sorted OutdatedReason values (empty for a retirement).
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    snapshot: Mapped[TrainingSnapshot] = relationship()
