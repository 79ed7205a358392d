"""Reading what the vault holds: one's own batches decrypted, everyone else's as metadata only.

Content is read back only for the person it is about (:func:`read_own_batches`,
:func:`stream_own_batches`); everyone else gets metadata (:func:`held_summary`,
:func:`held_counts`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select

from portal.auth.models import Person
from portal.db import db
from portal.vault import crypto
from portal.vault.checks import MAX_CONTENT_BYTES
from portal.vault.errors import VaultIntegrityError
from portal.vault.keys import configured_master_key, live_key, unwrap
from portal.vault.models import CollectedBatch, DataKey


@dataclass(frozen=True)
class DecryptedBatch:
    """One batch as its subject reads it."""

    public_id: str
    category_key: str
    collected_from: dt.datetime
    collected_to: dt.datetime
    received_at: dt.datetime
    dss_level: int
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class HeldSummary:
    """What is held about a person in one category, from metadata only.

    ``dss_levels`` maps each DSS level to the number of events collected at that level.
    """

    batches: int
    events: int
    first: dt.datetime
    last: dt.datetime
    dss_levels: dict[int, int]


def decrypt_batch(material: bytes, batch: CollectedBatch | Row[Any]) -> bytes:
    """Return a batch's events as the JSON they were sealed as, opened with its data key.

    :raise VaultIntegrityError: the batch does not open (altered, or moved to another row).
    """
    try:
        return crypto.open_batch(material, batch.nonce, batch.ciphertext,
                                 batch_id=batch.public_id, person_id=batch.person_id,
                                 category_key=batch.category_key, max_size=MAX_CONTENT_BYTES)
    except crypto.DecryptionFailed as exc:
        raise VaultIntegrityError(str(exc)) from exc


def _decrypted(material: bytes, batch: CollectedBatch | Row[Any]) -> DecryptedBatch:
    """Return a batch (an ORM object or a row with its columns) as its subject reads it."""
    return DecryptedBatch(batch.public_id, batch.category_key, batch.collected_from,
                          batch.collected_to, batch.received_at, batch.dss_level,
                          json.loads(decrypt_batch(material, batch)))


def overlapping(since: dt.datetime | None,
                until: dt.datetime | None) -> list[ColumnElement[bool]]:
    """Return the criteria for batches whose collection window overlaps [since, until]."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    criteria: list[ColumnElement[bool]] = []
    if since is not None:
        criteria.append(CollectedBatch.collected_to >= since)
    if until is not None:
        criteria.append(CollectedBatch.collected_from <= until)
    return criteria


def batch_totals() -> tuple[ColumnElement[Any], ...]:
    """Return the columns that sum up the batches selected: count, events, first and last time.

    Metadata only: the number of batches and of their events, the start of the earliest
    collection window and the end of the latest.
    """
    return (func.count(), func.sum(CollectedBatch.event_count),
            func.min(CollectedBatch.collected_from), func.max(CollectedBatch.collected_to))


def read_own_batches(subject: Person, category_key: str | None = None, *,
                     since: dt.datetime | None = None,
                     until: dt.datetime | None = None) -> Iterator[DecryptedBatch]:
    """Decrypt and yield the signed-in person's own batches, oldest first.

    ``subject`` must be the person reading: there is deliberately no way to read another
    person's content (DESIGN principle 2). Batches whose key was shredded are gone and are
    not yielded; ``since``/``until`` select batches whose collection window overlaps them.

    :raise VaultIntegrityError: a batch does not open (wrong master key, moved or altered).
    """
    criteria = overlapping(since, until)
    key_query = select(DataKey).where(DataKey.person_id == subject.id,
                                      DataKey.destroyed_at.is_(None))
    if category_key is not None:
        key_query = key_query.where(DataKey.category_key == category_key)
    keys = {key.id: key for key in db.scalars(key_query)}
    if not keys:
        return
    master = configured_master_key()
    materials: dict[str, bytes] = {}
    batches = db.scalars(
        select(CollectedBatch)
        .where(CollectedBatch.person_id == subject.id,
               CollectedBatch.data_key_id.in_(list(keys)), *criteria)
        .order_by(CollectedBatch.collected_from, CollectedBatch.id)
        .execution_options(yield_per=100))
    for batch in batches:
        if batch.data_key_id not in materials:
            materials[batch.data_key_id] = unwrap(master, keys[batch.data_key_id])
        yield _decrypted(materials[batch.data_key_id], batch)


def stream_own_batches(subject: Person, category_key: str, *,
                       since: dt.datetime | None = None, until: dt.datetime | None = None,
                       newest_first: bool = False,
                       rows_per_fetch: int = 16) -> Iterator[DecryptedBatch]:
    """Decrypt and yield the signed-in person's batches of one category, a few at a time.

    Like :func:`read_own_batches` (the same rule: ``subject`` is the person reading), for
    reads of any size: rows come from the database ``rows_per_fetch`` at a time (a
    server-side cursor on PostgreSQL) as plain rows, not ORM objects, so the memory used is
    a few batches whatever the person holds. ``newest_first`` orders by the end of the
    collection window, newest first (for previews); otherwise oldest first.

    :raise VaultIntegrityError: a batch does not open (wrong master key, moved or altered).
    """
    key = live_key(subject.id, category_key, lock=False)
    if key is None:
        return
    material = unwrap(configured_master_key(), key)
    order = ((CollectedBatch.collected_to.desc(), CollectedBatch.id.desc()) if newest_first
             else (CollectedBatch.collected_from, CollectedBatch.id))
    rows = db.execute(
        select(CollectedBatch.public_id, CollectedBatch.person_id, CollectedBatch.category_key,
               CollectedBatch.collected_from, CollectedBatch.collected_to,
               CollectedBatch.received_at, CollectedBatch.dss_level, CollectedBatch.nonce,
               CollectedBatch.ciphertext)
        .where(CollectedBatch.person_id == subject.id, CollectedBatch.data_key_id == key.id,
               *overlapping(since, until))
        .order_by(*order)
        .execution_options(yield_per=rows_per_fetch))
    for row in rows:
        yield _decrypted(material, row)


def held_summary(person_id: int) -> dict[str, HeldSummary]:
    """Summarise what is held about a person, per category key, without decrypting anything.

    Batches whose data key was shredded are erased content waiting for the purge of their
    rows, and are not counted.
    """
    rows = db.execute(
        select(CollectedBatch.category_key, CollectedBatch.dss_level, *batch_totals())
        .join(DataKey, DataKey.id == CollectedBatch.data_key_id)
        .where(CollectedBatch.person_id == person_id, DataKey.destroyed_at.is_(None))
        .group_by(CollectedBatch.category_key, CollectedBatch.dss_level)).all()
    parts: dict[str, list[tuple[int, int, int, dt.datetime, dt.datetime]]] = {}
    for key, level, batches, events, first, last in rows:
        parts.setdefault(key, []).append((level, batches, int(events or 0), first, last))
    return {key: HeldSummary(
        batches=sum(part[1] for part in levels), events=sum(part[2] for part in levels),
        first=min(part[3] for part in levels), last=max(part[4] for part in levels),
        dss_levels={part[0]: part[2] for part in sorted(levels)})
        for key, levels in parts.items()}


def held_counts(person_id: int) -> dict[str, int]:
    """Count the events held about a person, per category key (for the dashboard)."""
    return {key: summary.events for key, summary in held_summary(person_id).items()}
