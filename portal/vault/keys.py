"""Data keys: the master key, each person's key per category, its wrapping, master-key rotation.

Envelope encryption: a batch is sealed with its person's data key for the category
(:mod:`portal.vault.crypto`), and the data key is stored wrapped by the master key from the
configuration. Shredding a data key (:func:`portal.vault.erasure.destroy_data_keys`) makes
everything it sealed unreadable.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from portal.db import db, utcnow
from portal.signals import master_key_rotating
from portal.vault import crypto
from portal.vault.errors import VaultError, VaultIntegrityError
from portal.vault.models import DataKey

#: How many data keys a master-key rotation re-wraps per locked chunk.
_ROTATION_CHUNK = 500


class LiveKey(NamedTuple):
    """The columns of a live data key that storing a batch needs (no ORM object)."""

    id: str
    person_id: int
    category_key: str
    master_key_id: str
    wrapped_key: bytes


def configured_master_key() -> crypto.MasterKey:
    """Return the master key from the configuration (``PORTAL_MASTER_KEY``)."""
    value = current_app.config.get("MASTER_KEY") or ""
    if not value:
        raise VaultError("PORTAL_MASTER_KEY is not set: the vault cannot open or seal anything")
    return crypto.MasterKey.from_base64(value)


def unwrap(master: crypto.MasterKey, key: DataKey | LiveKey) -> bytes:
    """Return the material of a data key, unwrapped with ``master``.

    :raise VaultIntegrityError: another master key wrapped it, or it does not open (altered,
        moved to another row, or destroyed).
    """
    if key.master_key_id != master.key_id:
        raise VaultIntegrityError(
            f"data key {key.id} is wrapped by master key {key.master_key_id}, but the "
            f"configured master key is {master.key_id}: finish the master-key rotation "
            "(`portal vault rotate-master-key`) or configure the key that wrapped it")
    try:
        return crypto.unwrap_data_key(master, key.wrapped_key, key_id=key.id,
                                      person_id=key.person_id, category_key=key.category_key)
    except crypto.DecryptionFailed as exc:
        raise VaultIntegrityError(str(exc)) from exc


def live_key(person_id: int, category_key: str, *, lock: bool) -> DataKey | None:
    """Return the live data key of (person, category), if there is one; ``lock``: share-lock it."""
    return db.scalar(_live_key_statement(lock),
                     {"person_id": person_id, "category_key": category_key})


@functools.cache
def _live_key_statement(lock: bool) -> Select[tuple[DataKey]]:
    # Built once, like the other statements that every batch runs: building a statement
    # costs about as much as SQLAlchemy's work to run one it has seen before.
    statement = (select(DataKey)
                 .where(DataKey.person_id == bindparam("person_id"),
                        DataKey.category_key == bindparam("category_key"),
                        DataKey.destroyed_at.is_(None))
                 .execution_options(populate_existing=True))
    if lock:
        # A share lock: shredding (an UPDATE of this row) waits until the batch commits, and
        # then deletes it with the rest; a key shredded first is no longer live here.
        statement = statement.with_for_update(read=True)
    return statement


def insert_for(dialect: str) -> Any:
    """Return the dialect's INSERT construct, the one with ``on_conflict_do_nothing``."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def data_key_for_writing(person_id: int, category_key: str) -> tuple[DataKey, bytes]:
    """Return the live data key of (person, category) and its material, making it if needed."""
    master = configured_master_key()
    key = live_key(person_id, category_key, lock=True)
    if key is None:
        key_id = str(uuid.uuid4())
        material = crypto.new_data_key()
        values = {"id": key_id, "person_id": person_id, "category_key": category_key,
                  "master_key_id": master.key_id, "created_at": utcnow(),
                  "wrapped_key": crypto.wrap_data_key(master, material, key_id=key_id,
                                                      person_id=person_id,
                                                      category_key=category_key)}
        insert = insert_for(db.get_bind().dialect.name)
        # Two first batches at once both try to make the key; the second one's insert does
        # nothing (after waiting for the first to commit) and both use the same key.
        db.execute(insert(DataKey).values(**values).on_conflict_do_nothing(
            index_elements=["person_id", "category_key"],
            index_where=DataKey.destroyed_at.is_(None)))
        key = live_key(person_id, category_key, lock=True)
        if key is None:
            raise VaultError(f"the data key of person {person_id} for {category_key} was "
                             "destroyed while this batch was being stored; send it again")
    return key, unwrap(master, key)


# --- master key rotation ---------------------------------------------------------------------

@dataclass(frozen=True)
class RotationReport:
    """What a master-key rotation did: which keys it re-wrapped, which it did not need to."""

    old_key_id: str
    new_key_id: str
    rewrapped: int
    already_new: int
    destroyed: int
    #: Other keys wrapped by the master key, re-wrapped by the packages that keep them
    #: (``portal.signals.master_key_rotating``): what they are, and how many.
    others: dict[str, int] = field(default_factory=dict)


def rotate_master_key(new: crypto.MasterKey) -> RotationReport:
    """Re-wrap every live data key from the configured master key to ``new``.

    The other keys wrapped by the master key (each training snapshot's) are re-wrapped in the
    same unit of work by the packages that keep them (``master_key_rotating``).

    Touches no ciphertext. Keys already wrapped by ``new`` are left alone, so the command can
    run again after an interruption. Refuses, changing nothing, when a live key is wrapped by
    a third master key (the result would be a vault that no single key opens).

    :raise VaultError: ``new`` is the configured key, or a key belongs to an unknown master.
    :raise VaultIntegrityError: a data key does not open with the configured master key.
    """
    current = configured_master_key()
    if new.key_id == current.key_id:
        raise VaultError("the new master key is the one already configured")
    live = DataKey.destroyed_at.is_(None)
    counts: dict[str, int] = {
        key_id: count for key_id, count in db.execute(
            select(DataKey.master_key_id, func.count()).where(live)
            .group_by(DataKey.master_key_id))}
    foreign = {key_id: count for key_id, count in counts.items()
               if key_id not in {current.key_id, new.key_id}}
    if foreign:
        raise VaultError("some data keys are wrapped by a master key that is neither the "
                         "configured one nor the new one: " + ", ".join(
                             f"{count} by {key_id}" for key_id, count in sorted(foreign.items()))
                         + "; nothing was changed")
    destroyed = db.scalar(select(func.count()).select_from(DataKey)
                          .where(DataKey.destroyed_at.is_not(None))) or 0
    ids = list(db.scalars(select(DataKey.id).where(live, DataKey.master_key_id == current.key_id)
                          .order_by(DataKey.id)))
    rewrapped = 0
    for start in range(0, len(ids), _ROTATION_CHUNK):
        chunk = ids[start:start + _ROTATION_CHUNK]
        # Locked so that a concurrent shredding or ingestion waits for the new wraps.
        keys = db.scalars(select(DataKey).where(DataKey.id.in_(chunk), live)
                          .with_for_update().execution_options(populate_existing=True))
        for key in keys:
            material = unwrap(current, key)
            key.wrapped_key = crypto.wrap_data_key(new, material, key_id=key.id,
                                                   person_id=key.person_id,
                                                   category_key=key.category_key)
            key.master_key_id = new.key_id
            rewrapped += 1
        db.flush()
    others: dict[str, int] = {}
    for _receiver, result in master_key_rotating.send(None, current=current, new=new):
        for kind, count in (result or {}).items():
            others[kind] = others.get(kind, 0) + count
    return RotationReport(old_key_id=current.key_id, new_key_id=new.key_id,
                          rewrapped=rewrapped, already_new=counts.get(new.key_id, 0),
                          destroyed=destroyed, others=others)
