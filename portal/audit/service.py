"""Record accesses to personal data in the audit log, check the log, and list a person's log.

:func:`record` queues an entry on the current unit of work; the entries are chained and
written when that unit of work commits, under the log's head lock taken last of all locks
(so it cannot deadlock with the consent ledger's or the vault's) and held only for the
instant of the append. If they cannot be written the commit fails, and with it the request:
nothing read reaches its reader unless its audit entry is saved (audit writes fail closed).
Requests commit before they send their body, streamed downloads included; commands must
commit before they print or write anything they read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event, func, insert, or_, select, update
from sqlalchemy.orm import Session, SessionTransaction

from portal.audit.models import AuditAction, AuditChainHead, AuditEntry, AuditRole, AuditSubject
from portal.audit.wording import WHAT
from portal.auth.models import Person
from portal.db import db, get_engine, utcnow
from portal.hashchain import LeafFormat, Verdict, chain_hash, leaf_hash, verify_chain

HEAD_ID = 1
PENDING = "portal.audit.pending"
AUDIT_LOG = LeafFormat(
    fields=("id", "reference", "occurred_at", "actor_id", "actor_name", "actor_role", "action",
            "what", "purpose", "detail", "subject_count", "subjects_digest"),
    version=1, noun="entry", plural="entries", log="audit log")
MAX_PURPOSE = 1000
MAX_DETAIL = 4000

Detail = Mapping[str, str | int | None]


def subjects_digest(person_ids: Iterable[int]) -> str:
    """Return the SHA-256 (hex) of the sorted, distinct ids, comma-separated, in decimal."""
    ordered = sorted(set(person_ids))
    return hashlib.sha256(",".join(map(str, ordered)).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class PendingEntry:
    """An entry queued on the unit of work, chained and written when it commits."""

    occurred_at: dt.datetime
    actor_id: int | None
    actor_name: str
    actor_role: AuditRole
    action: AuditAction
    what: str
    purpose: str
    detail: str
    subject_ids: tuple[int, ...]


def _encode_detail(detail: Detail | None) -> str:
    if not detail:
        return "{}"
    for name, value in detail.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | str)):
            raise TypeError(f"audit detail {name!r} must be a string, an integer or None")
    encoded = json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(encoded) > MAX_DETAIL:
        raise ValueError(f"audit detail is longer than {MAX_DETAIL} characters")
    return encoded


def record(what: str, *, action: AuditAction, role: AuditRole,
           subjects: int | Iterable[int] | None, actor: Person | None = None,
           actor_name: str | None = None, purpose: str = "",
           detail: Detail | None = None) -> PendingEntry:
    """Queue an audit entry on the current unit of work; it is written when that commits.

    Call it *before* reading: a mistake here (an unknown ``what``, a missing actor) raises
    at once, so the read never happens. ``subjects`` are the ids of the people whose data is
    concerned. ``actor`` is the person acting; commands and the system name themselves in
    ``actor_name`` instead. ``detail`` holds small facts (a format, a count), never content.
    """
    if what not in WHAT:
        raise ValueError(f"unknown audit key {what!r}: add it to portal.audit.wording.WHAT")
    if actor is None and role not in {AuditRole.SYSTEM, AuditRole.OPERATOR}:
        raise ValueError(f"an audit entry in the role {role} needs the person acting")
    name = actor.display_name if actor is not None else (actor_name or "")
    if not name:
        raise ValueError("an audit entry needs the actor's name")
    if len(purpose) > MAX_PURPOSE:
        raise ValueError(f"the purpose is longer than {MAX_PURPOSE} characters")
    if subjects is None:
        subject_ids: tuple[int, ...] = ()
    elif isinstance(subjects, int):
        subject_ids = (subjects,)
    else:
        subject_ids = tuple(sorted(set(subjects)))
    entry = PendingEntry(utcnow(), actor.id if actor is not None else None, name[:255], role,
                         action, what, purpose, _encode_detail(detail), subject_ids)
    if not db.in_transaction():
        # The entry belongs to this transaction: begin it now, so that a rollback before any
        # other work still discards the entry instead of leaving it for a later commit.
        db.begin()
    db.info.setdefault(PENDING, []).append(entry)
    return entry


def _lock_head(session: Session) -> AuditChainHead:
    if session.get_bind().dialect.name == "sqlite":
        # Take SQLite's write lock before reading the head (see portal.consent.service).
        session.execute(update(AuditChainHead).where(AuditChainHead.id == HEAD_ID)
                        .values(updated_at=utcnow()))
    head = session.scalars(select(AuditChainHead).where(AuditChainHead.id == HEAD_ID)
                           .with_for_update()).one()
    return head


def _append_pending(session: Session) -> None:
    """Chain and write the entries queued on ``session`` (a ``before_commit`` hook)."""
    pending: list[PendingEntry] = session.info.pop(PENDING, [])
    if not pending:
        return
    head = _lock_head(session)
    previous = bytes.fromhex(head.chain_hash)
    subject_rows: list[dict[str, int]] = []
    for item in pending:
        entry = AuditEntry(
            id=head.length + 1, reference=str(uuid.uuid4()), occurred_at=item.occurred_at,
            actor_id=item.actor_id,
            actor_name=item.actor_name, actor_role=item.actor_role, action=item.action,
            what=item.what, purpose=item.purpose, detail=item.detail,
            subject_count=len(item.subject_ids), subjects_digest=subjects_digest(item.subject_ids))
        leaf = leaf_hash(entry.leaf_fields(), AUDIT_LOG)
        previous = chain_hash(previous, leaf)
        entry.leaf_hash, entry.chain_hash = leaf.hex(), previous.hex()
        head.length, head.chain_hash, head.updated_at = entry.id, entry.chain_hash, utcnow()
        session.add(entry)
        subject_rows.extend({"entry_id": entry.id, "person_id": person_id}
                            for person_id in item.subject_ids)
    session.flush()
    if subject_rows:
        session.execute(insert(AuditSubject), subject_rows)


def _discard_pending(session: Session, transaction: SessionTransaction) -> None:
    # Whatever ends the transaction (commit, rollback, close), what it queued ends with it.
    if transaction.parent is None:
        session.info.pop(PENDING, None)


def install_commit_hooks() -> None:
    """Make every session write its queued entries at commit and drop them at rollback."""
    if not event.contains(Session, "before_commit", _append_pending):
        event.listen(Session, "before_commit", _append_pending)
        event.listen(Session, "after_transaction_end", _discard_pending)


# --- checking --------------------------------------------------------------------------------

def _entry_rows(entries: Session, subjects: Connection,
                altered: set[int]) -> Iterator[dict[str, Any]]:
    """Stream the log in chain order, each entry's digest recomputed from its subject rows."""
    subject_rows = subjects.execute(
        select(AuditSubject.entry_id, AuditSubject.person_id)
        .order_by(AuditSubject.entry_id, AuditSubject.person_id)
        .execution_options(yield_per=10_000))
    pending = next(subject_rows, None)
    for entry in entries.scalars(select(AuditEntry).order_by(AuditEntry.id)
                                 .execution_options(yield_per=1_000)):
        ids: list[int] = []
        while pending is not None and pending.entry_id <= entry.id:
            if pending.entry_id == entry.id:
                ids.append(pending.person_id)
            pending = next(subject_rows, None)
        row = {**entry.leaf_fields(), "leaf_hash": entry.leaf_hash,
               "chain_hash": entry.chain_hash}
        if len(ids) != entry.subject_count or subjects_digest(ids) != entry.subjects_digest:
            altered.add(entry.id)
            row["subject_count"], row["subjects_digest"] = len(ids), subjects_digest(ids)
        yield row


def verify_log() -> Verdict:
    """Check the whole audit log; the verdict names the first broken link and what is wrong."""
    engine = get_engine()
    with engine.connect() as entries, engine.connect() as subjects:
        head = entries.execute(select(AuditChainHead.length, AuditChainHead.chain_hash)
                               .where(AuditChainHead.id == HEAD_ID)).one_or_none()
        if head is None:
            return Verdict(False, 0, "", None, "the chain-head row is missing", AUDIT_LOG)
        with Session(bind=entries) as session:
            altered: set[int] = set()
            verdict = verify_chain(_entry_rows(session, subjects, altered),
                                   AUDIT_LOG, expected_length=head.length,
                                   expected_head=head.chain_hash)
    if not verdict.ok and verdict.broken_id in altered:
        return Verdict(False, verdict.count, verdict.head, verdict.broken_id,
                       "the people it concerns were changed (its subject rows do not match its "
                       "hash)", AUDIT_LOG)
    return verdict


# --- a person's access log -------------------------------------------------------------------

@dataclass(frozen=True)
class AccessLogPage:
    """One page of a person's access log, newest first."""

    entries: list[AuditEntry]
    page: int
    pages: int
    total: int


def _concerning(person_id: int, *, others_only: bool) -> Any:
    query = (select(AuditEntry)
             .join(AuditSubject, AuditSubject.entry_id == AuditEntry.id)
             .where(AuditSubject.person_id == person_id))
    if others_only:
        query = query.where(or_(AuditEntry.actor_id.is_(None), AuditEntry.actor_id != person_id))
    return query


def access_log(person_id: int, *, page: int = 1, per_page: int = 25) -> AccessLogPage:
    """Return a page of the accesses to the person's data by anyone other than themselves."""
    query = _concerning(person_id, others_only=True)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    entries = list(db.scalars(query.order_by(AuditEntry.id.desc())
                              .limit(per_page).offset((page - 1) * per_page)))
    return AccessLogPage(entries, page, pages, total)


def entries_concerning(person_id: int, *, others_only: bool = False) -> Iterator[AuditEntry]:
    """Stream every entry concerning the person, oldest first (for their data download)."""
    yield from db.scalars(_concerning(person_id, others_only=others_only)
                          .order_by(AuditEntry.id).execution_options(yield_per=500))


def detail_of(entry: AuditEntry) -> dict[str, Any]:
    """Return an entry's detail as a dictionary."""
    value: dict[str, Any] = json.loads(entry.detail)
    return value
