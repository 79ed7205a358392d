"""Erasure: shredding data keys, deleting batches, the retention purge, and the proof of a deletion.

A deletion request (:mod:`portal.requests`) counts what lies in its scope, deletes the batches,
destroys the data keys that sealed them, and later checks that nothing is left and that no
destroyed key opens any more. Functions here only flush; the caller commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from portal.catalog.models import Category
from portal.db import db, utcnow
from portal.signals import records_erased
from portal.vault import crypto, journal
from portal.vault.keys import configured_master_key
from portal.vault.models import CollectedBatch, DataKey
from portal.vault.reading import batch_totals, overlapping

#: The sender of ``records_erased``: whatever erases collected records, the vault tells.
ERASER = "portal.vault"


@dataclass(frozen=True)
class PurgedCategory:
    """What a retention purge removed (or would remove) from one category."""

    category_key: str
    retention_days: int
    cutoff: dt.datetime
    batches: int
    events: int
    oldest: dt.datetime
    newest: dt.datetime
    #: The people whose batches these were (for the audit log; ids only).
    person_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ScopeCount:
    """How much of a person's data lies in a deletion's scope: metadata only."""

    batches: int
    events: int
    first: dt.datetime | None
    last: dt.datetime | None


def destroy_data_keys(person_id: int, category_key: str, *, reference: str | None = None) -> int:
    """Crypto-shred the person's data key for a category; return how many keys were destroyed.

    The wrapped key is overwritten with nothing, so every copy of the batches it sealed
    (replicas, copies of the batch table, object storage) stops decrypting. A database
    backup taken *before* this holds the old key row too, and opens with the master key
    that wrapped it: erasure reaches such backups once the master key has been rotated and
    the old one destroyed.
    Call :func:`delete_batches` in the same transaction to remove the rows as well. When
    consent is withdrawn in the same transaction, withdraw first: ingestion locks consent
    before the key, and the same order here avoids a deadlock. ``reference`` names the
    deletion request being carried out, for the shred journal.
    """
    # So that a restore cannot undo it.
    journal.note_destroyed_keys(person_id, category_key, live_key_ids(person_id, category_key),
                                reference=reference)
    result = db.execute(update(DataKey)
                        .where(DataKey.person_id == person_id,
                               DataKey.category_key == category_key,
                               DataKey.destroyed_at.is_(None))
                        .values(wrapped_key=b"", destroyed_at=utcnow()))
    db.flush()
    destroyed = int(result.rowcount)  # type: ignore[attr-defined]
    if destroyed:
        records_erased.send(ERASER, person_ids=(person_id,), category_key=category_key,
                            since=None, until=None)
    return destroyed


def delete_batches(person_id: int, category_key: str | None = None, *,
                   since: dt.datetime | None = None, until: dt.datetime | None = None) -> int:
    """Delete a person's batches (of one category, or all); return how many were deleted.

    With ``since``/``until``, a batch is deleted when its collection window overlaps the
    period at all: a deletion request errs on the side of deleting.
    """
    criteria = [CollectedBatch.person_id == person_id, *overlapping(since, until)]
    if category_key is not None:
        criteria.append(CollectedBatch.category_key == category_key)
    result = db.execute(delete(CollectedBatch).where(*criteria))
    db.flush()
    deleted = int(result.rowcount)  # type: ignore[attr-defined]
    if deleted:
        records_erased.send(ERASER, person_ids=(person_id,), category_key=category_key,
                            since=since, until=until)
    return deleted


def purge_expired(*, now: dt.datetime | None = None,
                  dry_run: bool = False) -> list[PurgedCategory]:
    """Delete every batch collected before its category's retention period; report per category.

    A batch expires when its last event (``collected_to``) is older than the category's
    ``retention_days``. With ``dry_run`` nothing is deleted and the report says what would be.
    """
    now = now or utcnow()
    report = []
    for category in db.scalars(select(Category).order_by(Category.position, Category.key)):
        cutoff = now - dt.timedelta(days=category.retention_days)
        criteria = (CollectedBatch.category_key == category.key,
                    CollectedBatch.collected_to < cutoff)
        batches, events, oldest, newest = db.execute(
            select(*batch_totals()).where(*criteria)).one()
        if not batches:
            continue
        people = tuple(db.scalars(select(CollectedBatch.person_id).where(*criteria)
                                  .distinct().order_by(CollectedBatch.person_id)))
        if not dry_run:
            batches = db.execute(delete(CollectedBatch).where(*criteria)).rowcount  # type: ignore[attr-defined]
            db.flush()
            records_erased.send(ERASER, person_ids=people, category_key=category.key,
                                since=None, until=cutoff)
        report.append(PurgedCategory(category.key, category.retention_days, cutoff,
                                     int(batches), int(events or 0), oldest, newest, people))
    db.flush()
    return report


# --- erasure checks (deletion requests) ------------------------------------------------------

def count_in_scope(person_id: int, category_key: str, *, since: dt.datetime | None = None,
                   until: dt.datetime | None = None,
                   received_before: dt.datetime | None = None) -> ScopeCount:
    """Count the person's batches of a category whose window overlaps [since, until].

    ``received_before`` leaves out batches stored after that moment (consent given again
    after a deletion is new data, not a remainder of the deleted one).
    """
    criteria = [CollectedBatch.person_id == person_id,
                CollectedBatch.category_key == category_key, *overlapping(since, until)]
    if received_before is not None:
        criteria.append(CollectedBatch.received_at <= received_before)
    batches, events, first, last = db.execute(select(*batch_totals()).where(*criteria)).one()
    return ScopeCount(int(batches or 0), int(events or 0), first, last)


def categories_with_data(person_id: int) -> set[str]:
    """Return the category keys of which the person has batches or a live data key."""
    with_batches = set(db.scalars(select(CollectedBatch.category_key).distinct()
                                  .where(CollectedBatch.person_id == person_id)))
    with_keys = set(db.scalars(select(DataKey.category_key)
                               .where(DataKey.person_id == person_id,
                                      DataKey.destroyed_at.is_(None))))
    return with_batches | with_keys


def live_key_ids(person_id: int, category_key: str) -> list[str]:
    """Return the ids of the person's live data keys of a category (before shredding them)."""
    return list(db.scalars(select(DataKey.id).where(
        DataKey.person_id == person_id, DataKey.category_key == category_key,
        DataKey.destroyed_at.is_(None)).order_by(DataKey.id)))


def key_still_opens(key_id: str) -> bool:
    """Try to unwrap a data key with the configured master key; say whether it still opens.

    A crypto-shredded key has no wrapped material left, so nothing it sealed can be read
    again; this proves it by trying.
    """
    key = db.get(DataKey, key_id, populate_existing=True)
    if key is None:
        return False
    try:
        crypto.unwrap_data_key(configured_master_key(), key.wrapped_key, key_id=key.id,
                               person_id=key.person_id, category_key=key.category_key)
    except crypto.DecryptionFailed:
        return False
    return True


def batches_sealed_by(key_ids: Sequence[str]) -> int:
    """Count the batches still stored under any of these data keys."""
    if not key_ids:
        return 0
    return int(db.scalar(select(func.count()).select_from(CollectedBatch)
                         .where(CollectedBatch.data_key_id.in_(list(key_ids)))) or 0)
