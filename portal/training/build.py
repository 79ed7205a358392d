"""Building snapshots: parts taken by workers with leases, streamed from the vault to Parquet.

A queued snapshot is planned into parts (one category for a range of people each). Any number
of worker processes (``portal training work``) take parts with a lease, build each by
streaming batches one at a time through :mod:`portal.training.rules` into an encrypted Parquet
file, and record the part and its people's counts in one transaction. A worker that dies
keeps its lease until it expires; another then builds the part again from the start. The
worker that finishes the last part seals the snapshot: totals, the audit entry, the manifest
and the state ``ready`` are written together, so a snapshot is never ready half-written.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from flask import current_app
from sqlalchemy import delete, func, select, update

from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record
from portal.catalog.models import Category
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import db, get_engine, utcnow
from portal.training import files, lineage
from portal.training.keys import SnapshotKey, open_snapshot_key
from portal.training.manifest import seal_snapshot
from portal.training.models import (
    ExclusionReason,
    OutdatedReason,
    PartState,
    SnapshotHolding,
    SnapshotPart,
    SnapshotState,
    TrainingSnapshot,
)
from portal.training.rules import (
    INCLUDED,
    REASONS,
    PartRules,
    deletion_holds,
    live_keys,
    moments_ms,
    person_reasons,
    person_spans,
)
from portal.vault.keys import configured_master_key, unwrap
from portal.vault.models import CollectedBatch, DataKey
from portal.vault.reading import decrypt_batch

log = logging.getLogger(__name__)

#: Setting: how long a worker holds a part before another may take it (seconds).
PART_LEASE = "TRAINING_PART_LEASE_SECONDS"
#: Setting: how many people one part covers.
PART_PEOPLE = "TRAINING_PART_PEOPLE"
#: A part that failed this many times fails its snapshot.
MAX_ATTEMPTS = 3
#: Rows per Parquet row group: the most a worker holds in memory at once.
ROW_GROUP_ROWS = 65_536
#: How the audit log names the reader.
READER = "training pipeline"


class LeaseLost(Exception):
    """Another worker took the part over (this worker's lease had expired)."""


def default_owner() -> str:
    """Name this worker process for its leases: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


# --- planning --------------------------------------------------------------------------------

def plan_snapshots() -> int:
    """Split each queued snapshot into parts; return how many snapshots were planned.

    The snapshot moves to ``building`` with its parts in one transaction; a guarded update
    makes sure two workers planning at once do not both plan it.
    """
    planned = 0
    for snapshot_id in list(db.scalars(select(TrainingSnapshot.id)
                                       .where(TrainingSnapshot.state == SnapshotState.QUEUED)
                                       .order_by(TrainingSnapshot.requested_at))):
        claimed = db.execute(update(TrainingSnapshot)
                             .where(TrainingSnapshot.id == snapshot_id,
                                    TrainingSnapshot.state == SnapshotState.QUEUED)
                             .values(state=SnapshotState.BUILDING)
                             .execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        snapshot = db.get_one(TrainingSnapshot, snapshot_id, populate_existing=True)
        size = int(current_app.config.get(PART_PEOPLE, 2000))
        number = 0
        for category_key in snapshot.categories:
            people = list(db.scalars(
                select(CollectedBatch.person_id).distinct()
                .join(DataKey, DataKey.id == CollectedBatch.data_key_id)
                .where(CollectedBatch.category_key == category_key,
                       DataKey.destroyed_at.is_(None),
                       CollectedBatch.collected_to >= snapshot.collected_from,
                       CollectedBatch.collected_from < snapshot.collected_to)
                .order_by(CollectedBatch.person_id)))
            for start in range(0, len(people), size):
                chunk = people[start:start + size]
                number += 1
                db.add(SnapshotPart(snapshot_id=snapshot.id, number=number,
                                    category_key=category_key, first_person_id=chunk[0],
                                    last_person_id=chunk[-1]))
        db.flush()
        if number == 0:
            _finish(snapshot)
        planned += 1
    return planned


# --- leases ----------------------------------------------------------------------------------

def take_part(owner: str) -> SnapshotPart | None:
    """Lease the next part waiting (or whose lease expired) to ``owner``; None if none waits.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers never wait on each other's part; the
    guarded update makes the take safe on SQLite too. A part taken for the fourth time fails
    its snapshot instead.
    """
    now = utcnow()
    lease = dt.timedelta(seconds=_lease_seconds())
    waiting = ((SnapshotPart.state == PartState.PENDING)
               | ((SnapshotPart.state == PartState.LEASED)
                  & (SnapshotPart.lease_expires_at < now)))
    query = (select(SnapshotPart.id).join(TrainingSnapshot)
             .where(waiting, TrainingSnapshot.state == SnapshotState.BUILDING)
             .order_by(TrainingSnapshot.requested_at, SnapshotPart.number).limit(8))
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=SnapshotPart, skip_locked=True)
    for part_id in list(db.scalars(query)):
        taken = db.execute(update(SnapshotPart)
                           .where(SnapshotPart.id == part_id, waiting)
                           .values(state=PartState.LEASED, lease_owner=owner,
                                   lease_expires_at=now + lease,
                                   attempts=SnapshotPart.attempts + 1)
                           .execution_options(synchronize_session=False))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            continue
        part = db.get_one(SnapshotPart, part_id, populate_existing=True)
        if part.attempts > MAX_ATTEMPTS:
            # Its last worker stopped (killed, or lost the database) before recording it.
            fail_snapshot(part.snapshot, f"part {part.number} was not finished after "
                                         f"{MAX_ATTEMPTS} attempts: "
                                         f"{part.error or 'the worker stopped'}")
            continue
        return part
    return None


def fail_snapshot(snapshot: TrainingSnapshot, reason: str) -> None:
    """Give up on a snapshot: state ``failed``, its files and counts removed."""
    snapshot.state = SnapshotState.FAILED
    snapshot.failed_reason = reason
    db.execute(update(SnapshotPart).where(SnapshotPart.snapshot_id == snapshot.id,
                                          SnapshotPart.state != PartState.DONE)
               .values(state=PartState.FAILED, lease_owner="", lease_expires_at=None)
               .execution_options(synchronize_session=False))
    db.execute(delete(SnapshotHolding).where(SnapshotHolding.snapshot_id == snapshot.id))
    db.flush()
    files.remove_snapshot_files(snapshot)


def _release(part_id: int, owner: str, error: str) -> None:
    """Give a part that failed back (its attempt counted); the snapshot fails at the last."""
    part = db.get_one(SnapshotPart, part_id, populate_existing=True)
    if part.lease_owner != owner or part.state is not PartState.LEASED:
        return
    part.error = error
    if part.attempts >= MAX_ATTEMPTS:
        fail_snapshot(part.snapshot, f"part {part.number} failed {part.attempts} times: {error}")
        return
    part.state = PartState.PENDING
    part.lease_owner = ""
    part.lease_expires_at = None
    db.flush()


def _lease_seconds() -> int:
    return int(current_app.config.get(PART_LEASE, 300))


class _Lease:
    """Keeps a part's lease alive while a worker builds it.

    Renewed on a connection of its own (committed at once), a third of the lease before it
    would run out, so a long part is not taken over while its worker is alive; a worker that
    finds its lease taken over stops at once.
    """

    def __init__(self, part_id: int, owner: str) -> None:
        self.part_id = part_id
        self.owner = owner
        self.seconds = _lease_seconds()
        self.renewed = time.monotonic()

    def keep(self) -> None:
        """Renew the lease if a third of it has passed; raise :class:`LeaseLost` if it is gone."""
        if time.monotonic() - self.renewed < self.seconds / 3:
            return
        with get_engine().begin() as connection:
            renewed = connection.execute(
                update(SnapshotPart)
                .where(SnapshotPart.id == self.part_id, SnapshotPart.lease_owner == self.owner,
                       SnapshotPart.state == PartState.LEASED)
                .values(lease_expires_at=utcnow() + dt.timedelta(seconds=self.seconds)))
        if renewed.rowcount != 1:
            raise LeaseLost(f"the lease of part {self.part_id} was taken over")
        self.renewed = time.monotonic()


# --- building one part -----------------------------------------------------------------------

class _Chunk:
    """Opened batches gathered until a row group's worth, then judged and written together.

    Judging records a batch at a time would cost a dozen small Arrow calls per batch; a chunk
    of up to :data:`ROW_GROUP_ROWS` records pays them once, and holds no more than that.
    """

    def __init__(self, rules: PartRules, writer: pq.ParquetWriter) -> None:
        self.rules = rules
        self.writer = writer
        self.batches: list[bytes] = []
        self.owners: list[int] = []
        self.size = 0
        self.written = 0

    def add(self, person_id: int, plain: bytes, count: int) -> None:
        """Add one opened batch of ``person_id`` (``count`` events); write once full."""
        self.batches.append(plain)
        self.owners.append(person_id)
        self.size += count
        if self.size >= ROW_GROUP_ROWS:
            self.write()

    def write(self, *, last: bool = False) -> None:
        """Judge the records gathered, count them per person, write those included."""
        rules = self.rules
        if self.batches:
            events, counts = rules.events(self.batches)
            people = np.repeat(np.array(self.owners, dtype=np.int64), counts)
            moments = moments_ms(events.column("t"))
            codes = rules.judge(people, events, moments)
            for person_id, where in person_spans(people):
                tally = rules.tally(person_id)
                counted = np.bincount(codes[where] + 2, minlength=len(REASONS) + 2)
                tally.included += int(counted[INCLUDED + 2])
                for index in np.flatnonzero(counted[2:]):
                    tally.excluded[REASONS[index].value] += int(counted[index + 2])
            included = codes == INCLUDED
            if included.any():
                self.writer.write_table(rules.rows(people, events, moments, included),
                                        row_group_size=ROW_GROUP_ROWS)
                self.written += int(included.sum())
            self.batches, self.owners, self.size = [], [], 0
        if last and self.written == 0:
            # An empty part still has its file, with the columns, so every part reads alike.
            self.writer.write_table(rules.schema.empty_table())


def build_part(part: SnapshotPart, owner: str) -> None:
    """Build one leased part: its file, its counts, and (if it was the last) the snapshot.

    Batches are read a few at a time (a server-side cursor on PostgreSQL) and decrypted one at
    a time; rows go out in row groups of :data:`ROW_GROUP_ROWS`, so memory stays flat.
    """
    snapshot = part.snapshot
    key = open_snapshot_key(snapshot)
    category = db.get_one(Category, part.category_key)
    person_ids = list(db.scalars(
        select(DataKey.person_id).where(DataKey.category_key == part.category_key,
                                        DataKey.person_id.between(part.first_person_id,
                                                                  part.last_person_id),
                                        DataKey.destroyed_at.is_(None))
        .order_by(DataKey.person_id)))
    keys = live_keys(person_ids, part.category_key)
    rules = PartRules(snapshot, key, category, person_ids, now=utcnow())
    relative = f"{part.category_key}/part-{part.number:05d}.parquet"
    path = files.snapshot_folder(snapshot) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = files.EncryptedWriter(path, key, aad=files.file_aad(snapshot, relative))
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), rules.schema,
                              compression="zstd")
    master = configured_master_key()
    material: tuple[str, bytes] | None = None
    lease = _Lease(part.id, owner)
    batches = [] if not keys else db.execute(
        select(CollectedBatch.id, CollectedBatch.public_id, CollectedBatch.person_id,
               CollectedBatch.category_key,
               CollectedBatch.data_key_id, CollectedBatch.dss_level,
               CollectedBatch.event_count, CollectedBatch.collected_to,
               CollectedBatch.nonce, CollectedBatch.ciphertext)
        .where(CollectedBatch.data_key_id.in_(list(keys)),
               CollectedBatch.collected_to >= snapshot.collected_from,
               CollectedBatch.collected_from < snapshot.collected_to)
        .order_by(CollectedBatch.person_id, CollectedBatch.collected_from, CollectedBatch.id)
        .execution_options(yield_per=16))
    chunk = _Chunk(rules, writer)
    opened: dict[int, int] = {}  # batch id -> person: to see at the end if any was erased
    for batch in batches:
        lease.keep()
        reason = rules.batch_reason(batch.person_id, batch.dss_level, batch.collected_to)
        if reason is not None:
            rules.tally(batch.person_id).excluded[reason.value] += batch.event_count
            continue
        if material is None or material[0] != batch.data_key_id:
            material = (batch.data_key_id, unwrap(master, keys[batch.data_key_id]))
        chunk.add(batch.person_id, decrypt_batch(material[1], batch), batch.event_count)
        opened[batch.id] = batch.person_id
    chunk.write(last=True)
    _record_part(part, owner, rules, writer, sink, relative, chunk.written, opened)


def _record_part(part: SnapshotPart, owner: str, rules: PartRules, writer: pq.ParquetWriter,
                 sink: files.EncryptedWriter, relative: str, written: int,
                 opened: dict[int, int]) -> None:
    """Publish the part's file and record it, its people's counts and its end together.

    The part's row is locked and its lease checked before the file is closed (which puts it
    in place), so a worker whose lease was taken over never replaces the other's file.
    """
    # The changes feed's lock, then the snapshot's row, then the part's: every worker (and
    # every marking and retirement, lineage.lock_feed) takes them in this order.
    lineage.lock_feed()
    snapshot = db.scalars(_snapshot_locked(part.snapshot_id)).one()
    locked = select(SnapshotPart).where(SnapshotPart.id == part.id)
    if db.get_bind().dialect.name == "postgresql":
        locked = locked.with_for_update()
    current = db.scalars(locked.execution_options(populate_existing=True)).one()
    if current.state is not PartState.LEASED or current.lease_owner != owner:
        raise LeaseLost(f"part {part.number} was taken over by {current.lease_owner or 'nobody'}")
    writer.close()
    if not sink.closed:
        sink.close()
    db.execute(delete(SnapshotHolding).where(
        SnapshotHolding.snapshot_id == part.snapshot_id,
        SnapshotHolding.category_key == part.category_key,
        SnapshotHolding.person_id.between(part.first_person_id, part.last_person_id)))
    db.add_all(SnapshotHolding(snapshot_id=part.snapshot_id, person_id=person_id,
                               category_key=part.category_key, included=tally.included,
                               excluded=dict(sorted(tally.excluded.items())))
               for person_id, tally in sorted(rules.tallies.items())
               if tally.included or tally.excluded)
    _mark_changed_while_read(snapshot, rules, opened)
    current.state = PartState.DONE
    current.path = relative
    current.rows = written
    current.size = sink.size
    current.sha256 = sink.sha256
    current.finished_at = utcnow()
    current.lease_expires_at = None
    current.error = ""
    db.flush()
    left = db.scalar(select(func.count()).select_from(SnapshotPart)
                     .where(SnapshotPart.snapshot_id == snapshot.id,
                            SnapshotPart.state != PartState.DONE))
    if left == 0 and snapshot.state is SnapshotState.BUILDING:
        _finish(snapshot, rules.key)


def _mark_changed_while_read(snapshot: TrainingSnapshot, rules: PartRules,
                             opened: dict[int, int]) -> None:
    """Mark outdated the holdings just recorded of people who left since the rules were read.

    The rules read consent, objections and deletion holds when the part started; a person
    who withdrew, objected, asked for deletion or had records erased (a batch opened is gone
    or its key destroyed) while it was built was let in, and the
    marking of that change (lineage) found no holding of this part to mark: without this, the
    snapshot would end ready holding them, unmarked. So the people included are checked
    again here, after the holdings are written and before the commit, as of now: on
    PostgreSQL under the feed's lock (taken first in ``_record_part``), which every marking
    takes before it looks for holdings, so a change that commits later finds these holdings
    itself; on SQLite after this unit of work's first write, which holds the one write lock.
    Marked like the change's own marking would have (the client is told, the person sees it);
    models keep what they learned, the rules keep them out of every later snapshot.
    """
    included = sorted(person_id for person_id, tally in rules.tallies.items()
                      if tally.included)
    if not included:
        return
    category = rules.category
    gone: dict[OutdatedReason, set[int]] = {}
    for person_id, reason in person_reasons(snapshot, category, included).items():
        if reason is ExclusionReason.OBJECTION:
            gone.setdefault(OutdatedReason.OBJECTED, set()).add(person_id)
            continue
        status = db.get(ConsentStatus, (person_id, category.key), populate_existing=True)
        expired = status is not None and status.state is ConsentState.EXPIRED
        gone.setdefault(OutdatedReason.EXPIRED if expired else OutdatedReason.WITHDRAWN,
                        set()).add(person_id)
    # Erased since: a batch opened is gone, or its key destroyed (an executed request has no
    # hold any more; a retention purge never had one).
    batch_ids = sorted(opened)
    kept: set[int] = set()
    for start in range(0, len(batch_ids), 500):
        kept.update(db.scalars(
            select(CollectedBatch.id).join(DataKey, DataKey.id == CollectedBatch.data_key_id)
            .where(CollectedBatch.id.in_(batch_ids[start:start + 500]),
                   DataKey.destroyed_at.is_(None))))
    erased = {opened[batch_id] for batch_id in batch_ids if batch_id not in kept}
    if erased & set(included):
        gone.setdefault(OutdatedReason.ERASED, set()).update(erased & set(included))
    for person_id, holds in deletion_holds(included).items():
        # A request that reaches this category and the snapshot's period: its records are
        # to be erased (an erasure already done leaves its approved request's hold).
        if any(hold.covers_category(category.key)
               and (hold.since is None or hold.since < snapshot.collected_to)
               and (hold.until is None or hold.until >= snapshot.collected_from)
               for hold in holds):
            gone.setdefault(OutdatedReason.ERASED, set()).add(person_id)
    for reason, people in sorted(gone.items()):
        lineage.mark_outdated_for(people, category.key, reason, snapshot_id=snapshot.id)


def _snapshot_locked(snapshot_id: int) -> Any:
    # Locked so that two workers finishing the last two parts at once cannot both see the
    # other's part unfinished (and nobody seal the snapshot) or both seal it. Taken before
    # the holdings are inserted, and FOR NO KEY UPDATE: their foreign key's KEY SHARE lock on
    # this row then never meets another worker's lock the other way round (no deadlock).
    query = (select(TrainingSnapshot).where(TrainingSnapshot.id == snapshot_id)
             .execution_options(populate_existing=True))
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(key_share=True)
    return query


# --- finishing a snapshot --------------------------------------------------------------------

def _totals(snapshot: TrainingSnapshot) -> tuple[dict[str, Any], list[int]]:
    """Sum the holdings: totals over everyone and per category; the people included."""
    included = 0
    excluded: Counter[str] = Counter()
    per_category: dict[str, dict[str, Any]] = {
        key: {"included": 0, "excluded": Counter()} for key in snapshot.categories}
    people: set[int] = set()
    holdings = db.execute(
        select(SnapshotHolding.person_id, SnapshotHolding.category_key,
               SnapshotHolding.included, SnapshotHolding.excluded)
        .where(SnapshotHolding.snapshot_id == snapshot.id)
        .execution_options(yield_per=1000))
    for person_id, category_key, count, reasons in holdings:
        included += count
        excluded.update(reasons)
        entry = per_category.setdefault(category_key, {"included": 0, "excluded": Counter()})
        entry["included"] += count
        entry["excluded"].update(reasons)
        if count:
            people.add(person_id)
    totals = {"included": included, "excluded": dict(sorted(excluded.items())),
              "people": len(people),
              "categories": {key: {"included": entry["included"],
                                   "excluded": dict(sorted(entry["excluded"].items()))}
                             for key, entry in per_category.items()}}
    return totals, sorted(people)


def _finish(snapshot: TrainingSnapshot, key: SnapshotKey | None = None) -> None:
    """Seal a snapshot whose parts are all done: totals, audit entry, manifest, ``ready``.

    One transaction with the last part: the snapshot is never ready unless all is written.
    The audit entry is queued here, at the end of the read, because the read only becomes
    something a client can take with this transaction (a failed build hands out nothing).
    """
    totals, people = _totals(snapshot)
    snapshot.totals = totals
    if people:
        record("training.snapshot", action=AuditAction.READ, role=AuditRole.SYSTEM,
               actor_name=READER, subjects=people,
               detail={"snapshot": snapshot.number, "purpose": snapshot.purpose_key})
    seal_snapshot(snapshot, key or open_snapshot_key(snapshot))
    snapshot.state = SnapshotState.READY
    snapshot.ready_at = utcnow()
    db.flush()


# --- the worker ------------------------------------------------------------------------------

def work(owner: str, *, until_idle: bool = True) -> int:
    """Plan queued snapshots and build parts as ``owner``; return how many parts it built.

    ``until_idle``: go on until no part waits; otherwise build at most one. Commits after
    each step (this is a command's or a test's unit of work, not a request's).
    """
    built = 0
    while True:
        plan_snapshots()
        db.commit()
        part = take_part(owner)
        db.commit()
        if part is None:
            return built
        part_id, number = part.id, part.number
        try:
            build_part(part, owner)
            db.commit()
            built += 1
        except LeaseLost as exc:
            db.rollback()
            log.warning("training part given up: %s", exc)
        except Exception as exc:
            db.rollback()
            # The type and the message only: neither holds collected content.
            log.exception("training part %s failed", number)
            _release(part_id, owner, f"{type(exc).__name__}: {exc}"[:2000])
            db.commit()
        if not until_idle:
            return built
