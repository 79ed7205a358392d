"""Storing a batch: checked, consent-gated, sealed with the person's data key, stored once.

Ingestion checks the batch, then consent, in the transaction that stores the batch and under
a lock that a withdrawal must wait for: a batch is stored if and only if consent is current
when it commits. A retry with the same idempotency key gets the first batch's answer.

Functions here only flush; the request or the command commits once, so a crash leaves no
partial batch behind.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select, and_, bindparam, select, update

from portal.catalog.models import (
    Category,
    CategoryNotice,
    NoticeVersion,
    Objection,
    ObjectionState,
)
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import db, utcnow
from portal.vault import crypto
from portal.vault.checks import BatchRules, check_batch
from portal.vault.errors import (
    ConsentRequired,
    IdempotencyConflict,
    ObjectionUpheld,
    UnknownCategory,
    VaultError,
)
from portal.vault.keys import (
    LiveKey,
    configured_master_key,
    data_key_for_writing,
    insert_for,
    unwrap,
)
from portal.vault.models import CollectedBatch, DataKey
from portal.vault.reading import decrypt_batch


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_batch` did: stored a new batch, or recognised a retry."""

    public_id: str
    created: bool
    event_count: int
    received_at: dt.datetime


class BatchSubject(Protocol):
    """Whom a batch is about: a :class:`~portal.auth.models.Person`, or anything with its ``id``."""

    @property
    def id(self) -> int:
        """The person's id."""


def find_category(key: str) -> Category:
    """Return the category ``key`` if the catalog in force lists it.

    :raise UnknownCategory: never published, or left out of the current notice.
    """
    category = db.get(Category, key) if isinstance(key, str) else None
    if category is None:
        raise UnknownCategory(str(key))
    _require_in_catalog(category)
    return category


def _require_in_catalog(category: BatchRules) -> None:
    if db.scalar(_in_force_statement(), {"category_key": category.key}) is None:
        raise UnknownCategory(category.key)


@functools.cache
def _in_force_statement() -> Select[tuple[str]]:
    """Return the statement that finds a category in the latest notice, built once.

    One small statement on every batch: loading the notice itself would also read its
    published document (tens of kilobytes) to use only its id.
    """
    latest = (select(NoticeVersion.id).order_by(NoticeVersion.number.desc()).limit(1)
              .scalar_subquery())
    return select(CategoryNotice.category_key).where(
        CategoryNotice.notice_version_id == latest,
        CategoryNotice.category_key == bindparam("category_key"))


def _serialise_writers(person_id: int, category_key: str) -> None:
    """On SQLite, take the database's write lock before reading anything the batch depends on.

    pysqlite reads outside a transaction until the first write, so a withdrawal could commit
    between the consent check and the insert. A write that changes nothing starts the
    transaction and takes SQLite's single write lock: from here on, withdrawals wait for us.
    PostgreSQL uses row locks instead (see :func:`_require_consent`).
    """
    if db.get_bind().dialect.name != "sqlite":
        return
    table = ConsentStatus.__table__
    db.execute(update(table).where(table.c.person_id == person_id,
                                   table.c.category_key == category_key)
               .values(state=table.c.state))


def _require_consent(person_id: int, category: BatchRules) -> None:
    """Refuse unless the person's consent allows collection now; hold it until commit.

    ``FOR SHARE`` on the person's consent row: a withdrawal UPDATEs that row, so one that
    committed earlier is seen here, one in progress is waited for and then seen, and one
    arriving later waits until this batch has committed. Categories on another legal basis
    need no consent row, but an upheld objection stops their collection likewise.
    """
    if not category.needs_consent:
        _require_no_upheld_objection(person_id, category)
        return
    state = db.scalar(_consent_state_statement(),
                      {"person_id": person_id, "category_key": category.key})
    if state is None or not state.allows_collection:
        raise ConsentRequired(person_id, category.key, state)


def _require_no_upheld_objection(person_id: int, category: BatchRules) -> None:
    """Refuse if the person's objection to the category was upheld; hold that until commit.

    Every objection row of the person and category is share-locked, whatever its state: a
    DPO upholding one at this moment UPDATEs that row, so the batch waits and then sees the
    new state (a filter on "upheld" would skip the row being changed without waiting).
    """
    states = db.scalars(_objection_states_statement(),
                        {"person_id": person_id, "category_key": category.key})
    if ObjectionState.UPHELD in set(states):
        raise ObjectionUpheld(person_id, category.key)


@functools.cache
def _objection_states_statement() -> Select[tuple[ObjectionState]]:
    return (select(Objection.state)
            .where(Objection.person_id == bindparam("person_id"),
                   Objection.category_key == bindparam("category_key"))
            .with_for_update(read=True))


@functools.cache
def _consent_state_statement() -> Select[tuple[ConsentState]]:
    return (select(ConsentStatus.state)
            .where(ConsentStatus.person_id == bindparam("person_id"),
                   ConsentStatus.category_key == bindparam("category_key"))
            .with_for_update(read=True))


@functools.cache
def _consent_and_key_statement() -> Select[Any]:
    """Return the statement that reads and share-locks the consent row and the live key at once.

    The two locks of :func:`_require_consent` and :func:`data_key_for_writing` in one round
    trip, for the usual batch: consent on record and a key made by an earlier batch. An inner
    join, since PostgreSQL locks no row on the nullable side of an outer join: no row means
    that one of the two is missing (or changed while we waited for its lock), and the batch
    takes the step-by-step path, which says which. Waiting for a withdrawal's lock and then
    reading the row it committed works as for the consent row alone: the join's conditions
    are checked again on the new row. Columns rather than ORM objects, run as a Core
    statement: this runs for every batch, and the ORM's loading cost more than the read.
    """
    return (select(ConsentStatus.state, DataKey.id, DataKey.person_id, DataKey.category_key,
                   DataKey.master_key_id, DataKey.wrapped_key)
            .join(DataKey, and_(DataKey.person_id == ConsentStatus.person_id,
                                DataKey.category_key == ConsentStatus.category_key,
                                DataKey.destroyed_at.is_(None)))
            .where(ConsentStatus.person_id == bindparam("person_id"),
                   ConsentStatus.category_key == bindparam("category_key"))
            .with_for_update(read=True, of=[ConsentStatus.__table__, DataKey.__table__]))


def _earlier_batch(collector_id: int | None, idempotency_key: str | None,
                   ) -> CollectedBatch | None:
    """Return the batch stored under the collector's idempotency key, if there is one."""
    if idempotency_key is None:
        return None
    return db.scalars(select(CollectedBatch).where(
        CollectedBatch.collector_id == collector_id,
        CollectedBatch.idempotency_key == idempotency_key)).one_or_none()


@functools.cache
def _insert_batch_statement(dialect: str) -> Any:
    """Return the INSERT of a batch that stores nothing if its idempotency key is taken.

    It returns the new row's id, so no row means a retry (or a reused key), answered by
    :func:`_replay`. On PostgreSQL a second request with the same key waits in this insert
    until the first commits or rolls back, then sees its row or stores its own: retries of
    one key are serialised by the unique constraint itself, without a statement of their own.
    """
    table = CollectedBatch.__table__
    return (insert_for(dialect)(table)
            .on_conflict_do_nothing(index_elements=["collector_id", "idempotency_key"])
            .returning(table.c.id))


def _replay(earlier: CollectedBatch, *, person_id: int, category_key: str, plaintext: bytes,
            event_count: int, collected_from: dt.datetime, collected_to: dt.datetime,
            dss_level: int) -> IngestResult:
    """Answer a retry with the first batch, if it is the same batch.

    The content is compared by decrypting the first batch, so that nothing derived from the
    plaintext has to be stored for the comparison.
    """
    same = (earlier.person_id == person_id and earlier.category_key == category_key
            and earlier.collected_from == collected_from
            and earlier.collected_to == collected_to and earlier.dss_level == dss_level
            and earlier.event_count == event_count)
    key = db.get(DataKey, earlier.data_key_id)
    # A shredded first batch cannot be compared; its metadata has to do.
    if same and key is not None and not key.destroyed:
        material = unwrap(configured_master_key(), key)
        same = crypto.same_events(decrypt_batch(material, earlier), plaintext)
    if not same:
        raise IdempotencyConflict(earlier.public_id)
    return IngestResult(earlier.public_id, created=False, event_count=earlier.event_count,
                        received_at=earlier.received_at)


def _consent_and_key(person_id: int, category: BatchRules) -> tuple[DataKey | LiveKey, bytes]:
    """Require current consent and return the live data key with its material, both locked.

    One statement when both are there (see :func:`_consent_and_key_statement`); else the
    consent check, then the key, made if needed.
    """
    if category.needs_consent:
        found = db.connection().execute(_consent_and_key_statement(), {
            "person_id": person_id, "category_key": category.key}).first()
        if found is not None:
            state, key = found[0], LiveKey(*found[1:])
            if not state.allows_collection:
                raise ConsentRequired(person_id, category.key, state)
            return key, unwrap(configured_master_key(), key)
    _require_consent(person_id, category)
    return data_key_for_writing(person_id, category.key)


def ingest_batch(person: BatchSubject, category: BatchRules, *, events: object,
                 collected_from: dt.datetime, collected_to: dt.datetime, dss_level: int,
                 collector_id: int | None = None,
                 idempotency_key: str | None = None,
                 catalog_checked: bool = False) -> IngestResult:
    """Check, consent-gate, encrypt and store one batch of ``person``'s events of ``category``.

    Stored if and only if consent allows collection when the transaction commits (see
    :func:`_require_consent`). A retry with the same ``(collector_id, idempotency_key)``
    returns the first batch (``created`` false) without storing anything.

    :raise BatchInvalid: the batch breaks a rule or the event schema (errors name the fields).
    :raise BatchTooLarge: too many events or bytes.
    :raise UnknownCategory: the category is not in the catalog in force.
    :raise ConsentRequired: the category rests on consent and it is not current.
    :raise ObjectionUpheld: the category rests on another basis and the person's objection to
        it was upheld.
    :raise IdempotencyConflict: the key was used for a different batch.
    :raise VaultIntegrityError: the person's data key does not open with the master key.

    ``catalog_checked``: the caller found the category in the catalog in force in this same
    transaction (the collector API reads it with the token, in one statement).
    """
    if not catalog_checked:
        _require_in_catalog(category)
    plaintext = check_batch(category, events=events, collected_from=collected_from,
                            collected_to=collected_to, dss_level=dss_level,
                            collector_id=collector_id, idempotency_key=idempotency_key)
    assert isinstance(events, list)

    def replay(earlier: CollectedBatch) -> IngestResult:
        return _replay(earlier, person_id=person.id, category_key=category.key,
                       plaintext=plaintext, event_count=len(events),
                       collected_from=collected_from, collected_to=collected_to,
                       dss_level=dss_level)

    _serialise_writers(person.id, category.key)
    try:
        key, material = _consent_and_key(person.id, category)
    except (ConsentRequired, ObjectionUpheld):
        # A retry of a batch stored while collection was allowed: its first answer was lost,
        # and the collector learns that the batch was stored after all.
        earlier = _earlier_batch(collector_id, idempotency_key)
        if earlier is None:
            raise
        return replay(earlier)
    public_id = str(uuid.uuid4())
    sealed = crypto.seal_batch(material, plaintext, batch_id=public_id, person_id=person.id,
                               category_key=category.key)
    received_at = utcnow()
    # A plain INSERT rather than an ORM object and a flush: nothing here reads the row
    # back, and the unit of work would double the cost of storing it.
    stored = db.connection().scalar(_insert_batch_statement(db.get_bind().dialect.name), {
        "public_id": public_id, "person_id": person.id, "category_key": category.key,
        "data_key_id": key.id, "collector_id": collector_id,
        "idempotency_key": idempotency_key, "collected_from": collected_from,
        "collected_to": collected_to, "received_at": received_at, "dss_level": dss_level,
        "event_count": len(events), "compressed_size": sealed.compressed_size,
        "nonce": sealed.nonce, "ciphertext": sealed.ciphertext})
    if stored is None:
        earlier = _earlier_batch(collector_id, idempotency_key)
        if earlier is None:  # purged or erased since the insert saw it: rare, and harmless
            raise VaultError("a batch with this idempotency key was deleted while this one "
                             "was being stored; send it again")
        return replay(earlier)
    return IngestResult(public_id, created=True, event_count=len(events),
                        received_at=received_at)

