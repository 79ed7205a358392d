"""Lineage of training snapshots: marking them outdated, retiring them, and who they reached.

When a person withdraws, objects or has records erased, every snapshot still holding those
records is marked outdated (per holding, and on the snapshot) and its client is told, by a
signed webhook and in its changes feed, without learning who or how many. Retiring a
snapshot destroys its key (so every copy of its files and pseudonyms becomes unreadable),
removes its files and issues a signed certificate of retirement; each person it held sees
the retirement in their access log. Which snapshots and models hold a person's records is
read in :mod:`portal.training.overview`.

This is what keeps the notice's promise about training honest: what was withdrawn is not
used in any new snapshot (the rules, :mod:`portal.training.rules`), snapshots already made
are flagged and their clients told at once, and models trained before keep what they
learned, which the certificate of retirement and the person's page say plainly.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Select, select, text, update

from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record
from portal.consent import receipts
from portal.consent.models import ConsentEvent, ConsentState
from portal.db import after_commit, db, utcnow
from portal.hashchain import format_time
from portal.training import keys, webhooks
from portal.training.files import snapshot_folder
from portal.training.models import (
    OutdatedReason,
    SnapshotEvent,
    SnapshotEventKind,
    SnapshotHolding,
    SnapshotState,
    TrainingClient,
    TrainingSnapshot,
)
from portal.training.overview import ModelTrained, models_trained_on
from portal.training.rules import RATINGS

CERTIFICATE_TYPE = "training-retirement-certificate"
CERTIFICATE_VERSION = 1
#: The audit key of a retirement (portal.audit.wording.WHAT): each person held sees it.
RETIRE_AUDIT = "training.retire"
#: States a snapshot may be retired from: a snapshot being built still has workers writing.
RETIRABLE = frozenset({SnapshotState.READY, SnapshotState.FAILED})
#: Where a unit of work remembers the snapshots it already announced (``Session.info``).
_ANNOUNCED = "portal.training.announced"
#: People per query when a purge erases many at once (bound parameters stay few).
_CHUNK = 500


# --- marking outdated ----------------------------------------------------------------------

def mark_outdated(person_id: int, category_key: str | None, reason: OutdatedReason, *,
                  since: dt.datetime | None = None,
                  until: dt.datetime | None = None) -> list[TrainingSnapshot]:
    """Mark outdated every snapshot (not retired) holding records of the person's category.

    ``category_key`` ``None``: every category. ``since``/``until`` narrow it to snapshots whose
    period of collection overlaps the records concerned (an erased period). Each holding
    keeps the first time and reason it was marked, and so does the snapshot; its client is
    told once per snapshot per unit of work. Flushes; returns the snapshots marked.
    """
    return mark_outdated_for((person_id,), category_key, reason, since=since, until=until)


def mark_outdated_for(person_ids: Iterable[int], category_key: str | None,
                      reason: OutdatedReason, *, since: dt.datetime | None = None,
                      until: dt.datetime | None = None,
                      snapshot_id: int | None = None) -> list[TrainingSnapshot]:
    """Mark outdated the snapshots holding records of any of these people (see mark_outdated).

    ``snapshot_id``: that snapshot only (a part just recorded, see ``build._record_part``).
    """
    people = sorted(set(person_ids))
    marked: dict[int, TrainingSnapshot] = {}
    if not people:
        return []
    # The feed's lock first, then rows: the one order every marking, retirement and part
    # recording takes. Taken before looking for holdings, not only once some are found: a
    # part being recorded holds it from before it inserts its holdings until it commits, so
    # this search either waits for them (and finds them) or the part, waiting in turn, sees
    # this change when it checks its people again (build._mark_changed_while_read).
    lock_feed()
    for start in range(0, len(people), _CHUNK):
        chunk = people[start:start + _CHUNK]
        criteria = _holding_criteria(chunk, category_key)
        if snapshot_id is not None:
            criteria.append(SnapshotHolding.snapshot_id == snapshot_id)
        snapshot_ids = list(db.scalars(
            _overlapping(select(SnapshotHolding.snapshot_id).distinct()
                         .join(TrainingSnapshot,
                               TrainingSnapshot.id == SnapshotHolding.snapshot_id)
                         .where(*criteria, TrainingSnapshot.state != SnapshotState.RETIRED),
                         since, until)))
        if not snapshot_ids:
            continue
        now = utcnow()
        db.execute(update(SnapshotHolding)
                   .where(*criteria, SnapshotHolding.snapshot_id.in_(snapshot_ids),
                          SnapshotHolding.outdated_at.is_(None))
                   .values(outdated_at=now, outdated_reason=reason)
                   .execution_options(synchronize_session="fetch"))
        db.execute(update(TrainingSnapshot)
                   .where(TrainingSnapshot.id.in_(snapshot_ids),
                          TrainingSnapshot.outdated_at.is_(None))
                   .values(outdated_at=now)
                   .execution_options(synchronize_session="fetch"))
        for snapshot in db.scalars(select(TrainingSnapshot)
                                   .where(TrainingSnapshot.id.in_(snapshot_ids))):
            marked[snapshot.id] = snapshot
    db.flush()
    for snapshot_id in sorted(marked):
        _announce_outdated(marked[snapshot_id], reason)
    return [marked[snapshot_id] for snapshot_id in sorted(marked)]


def _holding_criteria(person_ids: Sequence[int], category_key: str | None) -> list[Any]:
    criteria = [SnapshotHolding.person_id.in_(list(person_ids)), SnapshotHolding.included > 0]
    if category_key is not None:
        criteria.append(SnapshotHolding.category_key == category_key)
    return criteria


def _overlapping(query: Select[Any], since: dt.datetime | None,
                 until: dt.datetime | None) -> Select[Any]:
    """Keep the snapshots whose period of collection overlaps [since, until]."""
    if since is not None:
        query = query.where(TrainingSnapshot.collected_to > since)
    if until is not None:
        query = query.where(TrainingSnapshot.collected_from < until)
    return query


def lock_feed() -> None:
    """Hold the changes feed until the commit, so cursors become visible in order.

    A client polling ``after=N`` must never find an event numbered below N appear later.
    PostgreSQL: an EXCLUSIVE table lock (readers go on) taken before the id is drawn from the
    sequence, so ids commit in order. SQLite has one writer at a time already.

    It also orders marking against the recording of a snapshot's parts (``build``), which
    takes it first: a withdrawal, objection or erasure and a part holding that person are
    never both unaware of each other.
    """
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("LOCK TABLE training_snapshot_event IN EXCLUSIVE MODE"))


def _announced() -> dict[int, tuple[SnapshotEvent, Any]]:
    """Return the outdated events this unit of work already wrote, by snapshot id."""
    transaction = db.get_transaction()
    kept = db.info.get(_ANNOUNCED)
    if kept is None or kept[0] is not transaction:
        kept = (transaction, {})
        db.info[_ANNOUNCED] = kept
    announced: dict[int, tuple[SnapshotEvent, Any]] = kept[1]
    return announced


def _announce_outdated(snapshot: TrainingSnapshot, reason: OutdatedReason) -> None:
    """Write the snapshot's outdated event and notice, once per unit of work."""
    announced = _announced()
    if snapshot.id in announced:
        # Several people, or a withdrawal and an erasure, in one transaction: one notice.
        event, delivery = announced[snapshot.id]
        if str(reason) not in event.reasons:
            event.reasons = sorted({*event.reasons, str(reason)})
            db.flush()
            if delivery is not None:
                webhooks.rewrite_notice(delivery, event)
        return
    event = _write_event(snapshot, SnapshotEventKind.OUTDATED, [str(reason)])
    announced[snapshot.id] = (event, webhooks.enqueue_snapshot_notice(event))


def _write_event(snapshot: TrainingSnapshot, kind: SnapshotEventKind,
                 reasons: list[str]) -> SnapshotEvent:
    lock_feed()
    event = SnapshotEvent(snapshot_id=snapshot.id, kind=kind, reasons=reasons,
                          occurred_at=utcnow())
    event.snapshot = snapshot
    db.add(event)
    db.flush()
    return event


# --- the receivers (connected in portal.training.init_app) ---------------------------------

#: A consent change that ends collection, and the reason a snapshot holding it is outdated.
_ENDED = {ConsentState.WITHDRAWN: OutdatedReason.WITHDRAWN,
          ConsentState.REFUSED: OutdatedReason.WITHDRAWN,
          ConsentState.EXPIRED: OutdatedReason.EXPIRED}


def _consent_ended(event: ConsentEvent, **_kwargs: Any) -> None:
    mark_outdated(event.person_id, event.category_key,
                  _ENDED.get(event.state, OutdatedReason.WITHDRAWN))


def _reaches(category_key: str | None) -> str | None:
    """Return which of a person's holdings a change to ``category_key`` reaches.

    Their sensitivity ratings are what showed which of their activity records were safe to
    let in (portal.training.rules): an objection to them, or their erasure, reaches every
    category (``None``), as a new snapshot would leave all their activity records out.
    """
    return None if category_key == RATINGS else category_key


def _objection_filed(objection: Any, **_kwargs: Any) -> None:
    mark_outdated(objection.person_id, _reaches(objection.category_key),
                  OutdatedReason.OBJECTED)


def _records_erased(_sender: object, *, person_ids: Sequence[int], category_key: str | None,
                    since: dt.datetime | None = None, until: dt.datetime | None = None,
                    **_kwargs: Any) -> None:
    mark_outdated_for(person_ids, _reaches(category_key), OutdatedReason.ERASED, since=since,
                      until=until)


def connect_receivers(app: Flask) -> None:
    """Mark snapshots on withdrawal, objection and erasure; send and verify what lineage issues.

    Receivers run in the sender's unit of work and only flush.
    """
    from portal.api.webhooks import register_recipients
    from portal.signals import collection_stopped, objection_filed, records_erased

    collection_stopped.connect(_consent_ended)
    objection_filed.connect(_objection_filed)
    records_erased.connect(_records_erased)
    register_recipients(app, webhooks.find_training_client)
    # `portal receipts verify` checks certificates of retirement too.
    if CERTIFICATE_TYPE not in receipts.document_checks(app):
        receipts.register_document_check(app, CERTIFICATE_TYPE, check_certificate)


# --- retiring ------------------------------------------------------------------------------

class RetirementRefused(Exception):
    """A snapshot cannot be retired now; the message says why in plain words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def find_snapshot(reference: str) -> TrainingSnapshot | None:
    """Return the snapshot named by its number ("12") or its public id, if there is one."""
    reference = reference.strip()
    if reference.isascii() and reference.isdigit() and len(reference) <= 9:
        return db.scalar(select(TrainingSnapshot).where(TrainingSnapshot.number == int(reference)))
    return db.scalar(select(TrainingSnapshot).where(TrainingSnapshot.public_id == reference))


def _lock_snapshot(snapshot: TrainingSnapshot) -> TrainingSnapshot:
    """Re-read the snapshot under a row lock, so two retirements never both go ahead."""
    if db.get_bind().dialect.name == "sqlite":
        # Take SQLite's write lock before reading (see portal.consent.service._lock_head).
        db.execute(update(TrainingSnapshot).where(TrainingSnapshot.id == snapshot.id)
                   .values(state=TrainingSnapshot.state)
                   .execution_options(synchronize_session=False))
    return db.scalars(select(TrainingSnapshot).where(TrainingSnapshot.id == snapshot.id)
                      .with_for_update().execution_options(populate_existing=True)).one()


def _files_of(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    return [{"path": path.relative_to(folder).as_posix(), "size": path.stat().st_size}
            for path in sorted(folder.rglob("*")) if path.is_file()]


@dataclass(frozen=True)
class _RemoveFolder:
    """Remove a retired snapshot's folder once its retirement has committed."""

    folder: Path

    def __call__(self) -> None:
        # Already unreadable (the key is gone): removing the files is tidiness, not secrecy,
        # so it waits for the commit and a rollback leaves a snapshot whole.
        if self.folder.exists():
            shutil.rmtree(self.folder)


def retire_snapshot(snapshot: TrainingSnapshot, *, by: str,
                    role: AuditRole = AuditRole.SYSTEM) -> str:
    """Destroy the snapshot's key and files, mark it retired, and return its certificate.

    The certificate of retirement (a JWS signed with the receipt key) says what was
    destroyed, when, by whom, and which models were trained on the snapshot (they keep what
    they learned). Every person the snapshot held sees the retirement in their access log;
    the client is told by webhook and in its feed. The files go once the retirement has
    committed. Flushes.

    :raise RetirementRefused: already retired, or still being built.
    """
    if not by.strip():
        raise ValueError("a retirement needs the name of who retires it")
    lock_feed()
    snapshot = _lock_snapshot(snapshot)
    if snapshot.state is SnapshotState.RETIRED:
        raise RetirementRefused(
            "already_retired",
            f"Training dataset {snapshot.number} was already retired on "
            f"{snapshot.retired_at:%Y-%m-%d %H:%M} UTC by {snapshot.retired_by}; nothing "
            "was changed.")
    if snapshot.state not in RETIRABLE:
        raise RetirementRefused(
            "still_building",
            f"Training dataset {snapshot.number} is still {snapshot.state.value}: retire it "
            "once it is ready or has failed. Nothing was changed.")
    held = list(db.scalars(select(SnapshotHolding.person_id).distinct()
                           .where(SnapshotHolding.snapshot_id == snapshot.id,
                                  SnapshotHolding.included > 0)
                           .order_by(SnapshotHolding.person_id)))
    # Before the change, as every audited step: a mistake here stops it.
    record(RETIRE_AUDIT, action=AuditAction.DELETE, role=role, subjects=held, actor_name=by,
           detail={"snapshot": snapshot.number, "purpose": snapshot.purpose_key})
    folder = snapshot_folder(snapshot)
    files = _files_of(folder)
    now = utcnow()
    keys.destroy_snapshot_key(snapshot)
    snapshot.state = SnapshotState.RETIRED
    snapshot.retired_at = now
    snapshot.retired_by = by[:255]
    db.flush()
    claims = build_certificate(snapshot, files=files,
                               models=models_trained_on([snapshot.id])[snapshot.id],
                               certificate_id=str(uuid.uuid4()), issued_at=now)
    snapshot.certificate_jws = receipts.sign_document(claims)
    db.flush()
    event = _write_event(snapshot, SnapshotEventKind.RETIRED, [])
    webhooks.enqueue_snapshot_notice(event)
    after_commit(_RemoveFolder(folder))
    return snapshot.certificate_jws


def build_certificate(snapshot: TrainingSnapshot, *, files: list[dict[str, Any]],
                      models: Sequence[ModelTrained], certificate_id: str,
                      issued_at: dt.datetime) -> dict[str, Any]:
    """Return the claims of a snapshot's certificate of retirement (no person named)."""
    base_url = str(current_app.config["BASE_URL"])
    totals = snapshot.totals or {}
    return {
        "type": CERTIFICATE_TYPE,
        "version": CERTIFICATE_VERSION,
        "iss": base_url,
        "iat": int(issued_at.timestamp()),
        "jti": certificate_id,
        "publicKey": base_url + receipts.JWKS_PATH,
        "snapshot": {
            "id": snapshot.public_id, "number": snapshot.number,
            "purpose": snapshot.purpose_key, "categories": list(snapshot.categories),
            "collectedFrom": format_time(snapshot.collected_from),
            "collectedTo": format_time(snapshot.collected_to),
            "maxDssLevel": snapshot.max_dss_level, "client": snapshot.client.name,
            "requestedAt": format_time(snapshot.requested_at),
            "readyAt": format_time(snapshot.ready_at) if snapshot.ready_at else None,
            "outdatedAt": format_time(snapshot.outdated_at) if snapshot.outdated_at else None,
            "recordsIncluded": int(totals.get("included", 0)),
        },
        "retired": {"at": format_time(snapshot.retired_at or issued_at),
                    "by": snapshot.retired_by},
        "destroyed": {
            "snapshotKey": True,
            "files": files,
            "totals": {"files": len(files), "bytes": sum(int(item["size"]) for item in files)},
        },
        # Trained before the retirement: they keep what they learned (the notice says so).
        "models": [{"id": model.public_id, "name": model.name, "version": model.version,
                    "registeredAt": format_time(model.registered_at)} for model in models],
    }


def check_certificate(claims: dict[str, Any], signed_by: str) -> receipts.ReceiptCheck:
    """Check a certificate of retirement's claims for consistency (signature already checked)."""
    try:
        if claims["version"] != CERTIFICATE_VERSION:
            return receipts.ReceiptCheck(False, f"unknown certificate version "
                                                f"{claims['version']!r}")
        destroyed, snapshot = claims["destroyed"], claims["snapshot"]
        files = destroyed["files"]
        if (destroyed["totals"]["files"] != len(files)
                or destroyed["totals"]["bytes"] != sum(int(item["size"]) for item in files)):
            return receipts.ReceiptCheck(False, "the totals disagree with the listed files")
        if destroyed["snapshotKey"] is not True:
            return receipts.ReceiptCheck(False, "the certificate does not state the key "
                                                "destroyed")
        summary = (f"certificate of retirement {claims['jti']}: training dataset "
                   f"{int(snapshot['number'])} ({snapshot['id']}) for purpose "
                   f"{snapshot['purpose']}, key destroyed, {len(files)} files removed, "
                   f"{len(claims['models'])} models trained on it, retired "
                   f"{claims['retired']['at']} by {claims['retired']['by']}")
    except (KeyError, TypeError, ValueError) as exc:
        return receipts.ReceiptCheck(False, f"a required field is missing or malformed ({exc})")
    return receipts.ReceiptCheck(True, signed_by, claims, summary=summary)


def expired_snapshots(*, now: dt.datetime | None = None) -> list[TrainingSnapshot]:
    """Return the snapshots older than ``TRAINING_SNAPSHOT_MAX_AGE_DAYS`` (0: none ever)."""
    days = int(current_app.config.get("TRAINING_SNAPSHOT_MAX_AGE_DAYS") or 0)
    if days <= 0:
        return []
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    return list(db.scalars(select(TrainingSnapshot)
                           .where(TrainingSnapshot.state.in_(list(RETIRABLE)),
                                  TrainingSnapshot.requested_at < cutoff)
                           .order_by(TrainingSnapshot.number)))


def retire_expired_snapshots(*, now: dt.datetime | None = None,
                             by: str = "portal training retire-expired") -> list[int]:
    """Retire every snapshot older than the setting allows; return their numbers (flushes)."""
    retired = []
    for snapshot in expired_snapshots(now=now):
        retire_snapshot(snapshot, by=by, role=AuditRole.SYSTEM)
        retired.append(snapshot.number)
    return retired


# --- the changes feed ----------------------------------------------------------------------

@dataclass(frozen=True)
class SnapshotChange:
    """One entry of a training client's changes feed: no person, no count."""

    cursor: int
    snapshot_public_id: str
    number: int
    kind: SnapshotEventKind
    reasons: list[str]
    at: dt.datetime


def list_snapshot_changes(client: TrainingClient, after: int, limit: int) -> list[SnapshotChange]:
    """Return up to ``limit`` events of the client's snapshots after cursor ``after``, oldest first.

    The cursor is the event id; ids become visible in the order given (see :func:`lock_feed`),
    so a client polling with the last cursor it saw misses nothing and sees nothing twice.
    """
    rows = db.execute(select(SnapshotEvent, TrainingSnapshot.public_id, TrainingSnapshot.number)
                      .join(TrainingSnapshot, TrainingSnapshot.id == SnapshotEvent.snapshot_id)
                      .where(TrainingSnapshot.client_id == client.id, SnapshotEvent.id > after)
                      .order_by(SnapshotEvent.id).limit(limit))
    return [SnapshotChange(event.id, public_id, number, event.kind, list(event.reasons),
                           event.occurred_at) for event, public_id, number in rows]
