"""Giving, withdrawing, refusing and expiring consent; the ledger's upkeep and its checks.

Every change appends one event to the hash-chained ledger and updates the derived state in the
same transaction. Appends are serialised by locking the chain-head row first, so concurrent
requests in any number of processes cannot fork the chain or decide on a stale state.
Functions here only flush; the request or command commits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, func, select, type_coerce, update

from portal.auth.models import Person, Role
from portal.catalog.models import Category, CategoryNotice, NoticeVersion
from portal.catalog.notices import current_notice
from portal.consent import chain
from portal.consent.models import (
    ActorRole,
    ConsentChainHead,
    ConsentEvent,
    ConsentMethod,
    ConsentState,
    ConsentStatus,
)
from portal.db import db, utcnow
from portal.signals import collection_stopped

HEAD_ID = 1


class NotAConsentCategory(ValueError):
    """The category is collected on another legal basis: there is no consent to change."""


class NoticeChanged(ValueError):
    """The notice text the person saw is no longer the current one for the category."""


# --- reading ---------------------------------------------------------------------------------

def current_states(person_id: int) -> dict[str, ConsentStatus]:
    """Return the person's current state per category key (absent: never decided)."""
    rows = db.scalars(select(ConsentStatus).where(ConsentStatus.person_id == person_id))
    return {row.category_key: row for row in rows}


def category_notice(category_key: str, notice_version_id: int) -> CategoryNotice | None:
    """Return a category's part of a notice version."""
    return db.get(CategoryNotice, (notice_version_id, category_key))


def notice_still_current(category: Category, seen: NoticeVersion) -> bool:
    """Say whether the text of ``category`` in ``seen`` is the text in force now.

    Compared by content hash, so a newer version that left this category unchanged does not
    make a person read the same text twice.
    """
    current = current_notice()
    if current is None:
        return False
    now_part = category_notice(category.key, current.id)
    seen_part = category_notice(category.key, seen.id)
    return (now_part is not None and seen_part is not None
            and now_part.content_sha256 == seen_part.content_sha256)


def category_text(content: Mapping[str, Any], locale: str) -> dict[str, Any]:
    """Return a category notice's texts in ``locale`` (English, then any language, if absent)."""
    texts = content.get("text", content)
    if not isinstance(texts, Mapping) or not texts:
        return {}
    chosen = texts.get(locale) or texts.get("en") or next(iter(texts.values()))
    return dict(chosen) if isinstance(chosen, Mapping) else {}


def category_titles(notice_version_id: int, locale: str) -> dict[str, str]:
    """Return each category's title as a notice version words it, in ``locale``."""
    parts = db.scalars(select(CategoryNotice)
                       .where(CategoryNotice.notice_version_id == notice_version_id))
    return {part.category_key: str(category_text(part.content, locale).get("title")
                                   or part.category_key) for part in parts}


@dataclass(frozen=True)
class HistoryPage:
    """One page of a person's consent history, newest first."""

    events: list[ConsentEvent]
    page: int
    pages: int
    total: int


def history(person_id: int, *, page: int = 1, per_page: int = 25) -> HistoryPage:
    """Return a page of every change of the person's consent, newest first."""
    total = db.scalar(select(func.count()).select_from(ConsentEvent)
                      .where(ConsentEvent.person_id == person_id)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    events = list(db.scalars(
        select(ConsentEvent).where(ConsentEvent.person_id == person_id)
        .order_by(ConsentEvent.id.desc()).offset((page - 1) * per_page).limit(per_page)))
    return HistoryPage(events, page, pages, total)


def find_own_event(person_id: int, receipt_id: str) -> ConsentEvent | None:
    """Return the event behind a receipt id, only if it is about ``person_id``."""
    try:
        receipt_id = str(uuid.UUID(receipt_id))
    except ValueError:
        return None
    return db.scalar(select(ConsentEvent).where(ConsentEvent.receipt_id == receipt_id,
                                                ConsentEvent.person_id == person_id))


# --- appending -------------------------------------------------------------------------------

def _lock_head() -> ConsentChainHead:
    """Take the ledger's write lock and return the head as it is now."""
    if db.get_bind().dialect.name == "sqlite":
        # pysqlite begins a transaction only at the first write; writing the head first takes
        # SQLite's single write lock before anything is read, so the head and every state read
        # after it are current, and other writers wait (busy_timeout) until we commit.
        db.execute(update(ConsentChainHead.__table__).where(ConsentChainHead.id == HEAD_ID)
                   .values(length=ConsentChainHead.length))
    head = db.scalars(select(ConsentChainHead).where(ConsentChainHead.id == HEAD_ID)
                      .with_for_update().execution_options(populate_existing=True)).one()
    return head


def _status_now(person_id: int, category_key: str) -> ConsentStatus | None:
    # populate_existing: a copy loaded before the lock was taken may be stale.
    return db.scalar(select(ConsentStatus).where(ConsentStatus.person_id == person_id,
                                                 ConsentStatus.category_key == category_key)
                     .execution_options(populate_existing=True))


def actor_role_of(person: Person, actor: Person | None) -> ActorRole:
    """Name the capacity in which ``actor`` changes ``person``'s consent."""
    if actor is None:
        return ActorRole.SYSTEM
    if actor.id == person.id:
        return ActorRole.SUBJECT
    if actor.has_role(Role.DPO):
        return ActorRole.DPO
    return ActorRole.ADMIN


def _append(head: ConsentChainHead, *, person_id: int, category_key: str,
            notice_version_id: int, state: ConsentState, actor_id: int | None,
            actor_role: ActorRole, method: ConsentMethod,
            previous: ConsentStatus | None) -> ConsentEvent:
    """Append one event under the held head lock, and move the derived state with it."""
    now = utcnow()
    event = ConsentEvent(
        id=head.length + 1, receipt_id=str(uuid.uuid4()), person_id=person_id,
        category_key=category_key, notice_version_id=notice_version_id, state=state,
        occurred_at=now, actor_id=actor_id, actor_role=actor_role, method=method)
    leaf = chain.leaf_hash(event.leaf_fields())
    link = chain.chain_hash(bytes.fromhex(head.chain_hash), leaf)
    event.leaf_hash, event.chain_hash = leaf.hex(), link.hex()
    head.length, head.chain_hash, head.updated_at = event.id, event.chain_hash, now
    db.add(event)
    db.flush()
    was_collecting = previous is not None and previous.state.allows_collection
    if previous is None:
        db.add(ConsentStatus(person_id=person_id, category_key=category_key, state=state,
                             notice_version_id=notice_version_id, since=now, event_id=event.id))
    else:
        previous.state, previous.notice_version_id = state, notice_version_id
        previous.since, previous.event_id = now, event.id
    db.flush()
    if was_collecting and not state.allows_collection:
        collection_stopped.send(event)
    return event


def _require_consent_category(category: Category) -> None:
    if not category.needs_consent:
        raise NotAConsentCategory(category.key)


def grant_consent(person: Person, category: Category, *, notice_version: NoticeVersion,
                  method: ConsentMethod, actor: Person | None) -> ConsentEvent | None:
    """Record that ``person`` gives consent under the notice they saw.

    After a material change (state expired) this is the renewal. Returns the event, or
    ``None`` when consent was already given (nothing is recorded twice).

    :raise NotAConsentCategory: the category is not collected on consent.
    :raise NoticeChanged: the category's text changed since ``notice_version``.
    """
    _require_consent_category(category)
    head = _lock_head()
    # Checked under the lock: a notice published meanwhile would otherwise slip through.
    if not notice_still_current(category, notice_version):
        raise NoticeChanged(category.key)
    status = _status_now(person.id, category.key)
    if status is not None and status.state.allows_collection:
        return None
    state = (ConsentState.RENEWED if status is not None and status.state is ConsentState.EXPIRED
             else ConsentState.GIVEN)
    return _append(head, person_id=person.id, category_key=category.key,
                   notice_version_id=notice_version.id, state=state,
                   actor_id=actor.id if actor else None,
                   actor_role=actor_role_of(person, actor), method=method, previous=status)


def _version_for_stop(category: Category, notice_version: NoticeVersion | None,
                      status: ConsentStatus | None) -> int:
    if notice_version is not None:
        return notice_version.id
    current = current_notice()
    if current is not None and category_notice(category.key, current.id) is not None:
        return current.id
    assert status is not None
    return status.notice_version_id


def withdraw_consent(person: Person, category: Category, *,
                     notice_version: NoticeVersion | None = None, method: ConsentMethod,
                     actor: Person | None) -> ConsentEvent | None:
    """Record that ``person`` withdraws consent; ``None`` when none was given.

    Never refused for a stale notice: withdrawing must stay as easy as giving (GDPR Art. 7(3)),
    and stopping collection cannot rest on text the person did not read. The event records the
    version the person saw, else the current one.
    """
    _require_consent_category(category)
    head = _lock_head()
    status = _status_now(person.id, category.key)
    if status is None or not status.state.allows_collection:
        return None
    return _append(head, person_id=person.id, category_key=category.key,
                   notice_version_id=_version_for_stop(category, notice_version, status),
                   state=ConsentState.WITHDRAWN, actor_id=actor.id if actor else None,
                   actor_role=actor_role_of(person, actor), method=method, previous=status)


def refuse_consent(person: Person, category: Category, *,
                   notice_version: NoticeVersion | None = None, method: ConsentMethod,
                   actor: Person | None) -> ConsentEvent | None:
    """Record that ``person`` says no: before ever deciding, or declining after a material change.

    Returns ``None`` when there is nothing to refuse (consent is given: that is a withdrawal,
    which needs its own, explicit action; or it was already withdrawn or refused).
    """
    _require_consent_category(category)
    head = _lock_head()
    status = _status_now(person.id, category.key)
    if status is not None and status.state is not ConsentState.EXPIRED:
        return None
    return _append(head, person_id=person.id, category_key=category.key,
                   notice_version_id=_version_for_stop(category, notice_version, status),
                   state=ConsentState.REFUSED, actor_id=actor.id if actor else None,
                   actor_role=actor_role_of(person, actor), method=method, previous=status)


def withdraw_all(person: Person, *, method: ConsentMethod,
                 actor: Person | None) -> list[ConsentEvent]:
    """Withdraw every consent ``person`` has given, in one transaction; return the events."""
    head = _lock_head()
    given = db.scalars(select(ConsentStatus)
                       .where(ConsentStatus.person_id == person.id)
                       .order_by(ConsentStatus.category_key)
                       .execution_options(populate_existing=True)).all()
    current = current_notice()
    events = []
    for status in given:
        if not status.state.allows_collection:
            continue
        version_id = status.notice_version_id
        if current is not None and category_notice(status.category_key, current.id):
            version_id = current.id
        events.append(_append(head, person_id=person.id, category_key=status.category_key,
                              notice_version_id=version_id, state=ConsentState.WITHDRAWN,
                              actor_id=actor.id if actor else None,
                              actor_role=actor_role_of(person, actor), method=method,
                              previous=status))
    return events


def expire_consents_for_material_change(category_key: str, notice_version: NoticeVersion, *,
                                        actor: Person | None) -> int:
    """End every current consent for a category whose notice changed materially.

    Called when ``notice_version`` is published, in the same transaction: collection stops
    for everyone until each person confirms under the new text (or declines). Returns how many
    consents expired.
    """
    head = _lock_head()
    statuses = db.scalars(select(ConsentStatus)
                          .where(ConsentStatus.category_key == category_key)
                          .order_by(ConsentStatus.person_id)
                          .execution_options(populate_existing=True)).all()
    expired = 0
    for status in statuses:
        if not status.state.allows_collection:
            continue
        _append(head, person_id=status.person_id, category_key=category_key,
                notice_version_id=notice_version.id, state=ConsentState.EXPIRED,
                actor_id=actor.id if actor else None,
                actor_role=ActorRole.ADMIN if actor else ActorRole.SYSTEM,
                method=ConsentMethod.SYSTEM, previous=status)
        expired += 1
    return expired


def end_consents_for_notice(notice: NoticeVersion, *, ending: Mapping[str, str],
                            actor: Person | None, **_: Any) -> dict[str, int]:
    """End the consents of each category a newly published notice changed materially or removed.

    The receiver of :data:`portal.signals.notice_published`; returns how many consents ended
    per category.
    """
    return {key: expire_consents_for_material_change(key, notice, actor=actor) for key in ending}


def expired_consents(notice: NoticeVersion) -> dict[str, int]:
    """Count, per category, the consents that ``notice`` ended and that still wait for an answer."""
    rows = db.execute(
        select(ConsentStatus.category_key, func.count())
        .where(ConsentStatus.notice_version_id == notice.id,
               ConsentStatus.state == ConsentState.EXPIRED)
        .group_by(ConsentStatus.category_key))
    return {key: count for key, count in rows}


def active_consents(category_key: str) -> int:
    """Count the consents that allow collection for a category now."""
    return db.scalar(
        select(func.count()).select_from(ConsentStatus)
        .where(ConsentStatus.category_key == category_key,
               ConsentStatus.state.in_([ConsentState.GIVEN, ConsentState.RENEWED]))) or 0


# --- upkeep and checks -----------------------------------------------------------------------

def _ledger_rows() -> Iterator[dict[str, Any]]:
    """Stream the ledger in chain order as plain rows.

    Enums are read as text: a tampered row may hold a value that is no member, and the check
    must report it rather than fail to read it.
    """
    table = ConsentEvent.__table__
    columns = [type_coerce(column, String).label(column.name)
               if column.name in {"state", "actor_role", "method"} else column
               for column in table.c]
    result = db.execute(select(*columns).order_by(table.c.id).execution_options(yield_per=1000))
    for row in result.mappings():
        yield dict(row)


def verify_ledger() -> chain.Verdict:
    """Check the whole chain; the verdict names the first broken link and what is wrong."""
    head = db.scalar(select(ConsentChainHead).where(ConsentChainHead.id == HEAD_ID))
    if head is None:
        return chain.Verdict(False, 0, "", None, "the chain-head row is missing")
    return chain.verify_chain(_ledger_rows(), expected_length=head.length,
                              expected_head=head.chain_hash)


@dataclass
class RebuildReport:
    """What ``rebuild_state`` found: the derived table was identical, or what differed."""

    rows: int
    missing: list[tuple[int, str]] = field(default_factory=list)
    extra: list[tuple[int, str]] = field(default_factory=list)
    changed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Say whether the table already equalled what the ledger says."""
        return not (self.missing or self.extra or self.changed)


def rebuild_state() -> RebuildReport:
    """Recompute ``consent_status`` from the ledger, replace it, and report the differences."""
    _lock_head()  # no append may slip in between reading the ledger and writing the state
    derived: dict[tuple[int, str], tuple[str, int, dt.datetime, int]] = {}
    for row in _ledger_rows():
        derived[(row["person_id"], row["category_key"])] = (
            row["state"], row["notice_version_id"], row["occurred_at"], row["id"])
    existing = {(status.person_id, status.category_key): status
                for status in db.scalars(select(ConsentStatus)
                                         .execution_options(populate_existing=True))}
    report = RebuildReport(rows=len(derived))
    for key, status in existing.items():
        if key not in derived:
            report.extra.append(key)
        elif derived[key] != (str(status.state), status.notice_version_id, status.since,
                              status.event_id):
            report.changed.append(key)
        else:
            continue
        db.delete(status)
    report.missing = [key for key in derived if key not in existing]
    # Deleted first and rewritten whole, so that no unique event_id collides on the way.
    db.flush()
    for key in [*report.changed, *report.missing]:
        state, version_id, since, event_id = derived[key]
        db.add(ConsentStatus(person_id=key[0], category_key=key[1], state=ConsentState(state),
                             notice_version_id=version_id, since=since, event_id=event_id))
    db.flush()
    report.missing.sort()
    report.extra.sort()
    report.changed.sort()
    return report
