"""What may enter a training snapshot: the rules applied to each person and record at read time.

Checked when a part of the snapshot is built, not when it was asked for, so a withdrawal,
objection or deletion request that arrives in between is obeyed. A record is left out for the
first reason that applies, and counted under that reason (:class:`ExclusionReason`):

- the person's consent is not given under the snapshot's notice text (consent categories), or
  an objection is pending or upheld (other legal bases);
- a deletion request, pending or approved, covers it;
- its batch was collected at a DSS level above the snapshot's maximum;
- it is older than the category keeps records;
- for activity records: the person objected to their sensitivity ratings, has none in the
  period, or the record was made within :data:`WINDOW` of a DSS 3 or 4 document;
- in conversations: a message written by a colleague who is not in the snapshot themselves.

A batch that is left out whole is not even opened: its events count whole under the reason.
Deletion requests belong to a higher layer (``portal.requests``), which registers a reader of
its holds here (:func:`register_deletion_holds`).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Flask, current_app
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.models import Category, CategoryNotice, Objection, ObjectionState
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import db
from portal.training.keys import SnapshotKey
from portal.training.models import ExclusionReason, TrainingSnapshot
from portal.training.schema import PERSON_COLUMN, Column, columns
from portal.vault.checks import parse_timestamp
from portal.vault.keys import configured_master_key, unwrap
from portal.vault.models import CollectedBatch, DataKey
from portal.vault.reading import decrypt_batch

WINDOW = dt.timedelta(minutes=30)
"""How close to a sensitive document an activity record is left out of training.

An activity record (of any category but ``sensitivity_ratings``) whose time ``t`` lies within
30 minutes before or after the ``t`` of one of the same person's own ``sensitivity_ratings``
records rated DSS 3 or 4 (the moment they opened or edited that document) is left out, edges
included: exactly 30 minutes before or after is still left out. The notice
(``sensitivity_ratings`` purposes) and docs/training.md state the same window.
"""

#: The DSS levels of a document that keep nearby activity records out of training.
SENSITIVE_LEVELS = frozenset({3, 4})
RATINGS = "sensitivity_ratings"
CONVERSATIONS = "conversations"
#: How a conversation's author names the person who recorded it.
SELF_AUTHOR = "self"

#: Objections that keep a category out: not yet decided, or decided for the person.
_STANDING_OBJECTIONS = (ObjectionState.RECEIVED, ObjectionState.EXTENDED, ObjectionState.UPHELD)
_GIVEN = (ConsentState.GIVEN, ConsentState.RENEWED)
_HOLDS_EXTENSION = "portal.training.deletion_holds"


# --- deletion holds (filled in by portal.requests) -------------------------------------------

@dataclass(frozen=True)
class DeletionHold:
    """Records of a person a deletion request (pending or approved) covers.

    ``category_key`` None: every category; ``since``/``until`` None: the whole period.
    """

    person_id: int
    category_key: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def covers_category(self, category_key: str) -> bool:
        """Say whether the hold reaches records of ``category_key`` at all."""
        return self.category_key is None or self.category_key == category_key

    @property
    def whole_period(self) -> bool:
        """Say whether the hold covers every moment (no range)."""
        return self.since is None and self.until is None

    def covers(self, category_key: str, moment: dt.datetime) -> bool:
        """Say whether the hold covers a record of ``category_key`` made at ``moment``."""
        return (self.covers_category(category_key)
                and (self.since is None or moment >= self.since)
                and (self.until is None or moment <= self.until))


HoldReader = Callable[[Sequence[int]], Iterable[DeletionHold]]


def register_deletion_holds(app: Flask, reader: HoldReader) -> None:
    """Have snapshots obey the deletion holds ``reader`` returns for a list of person ids."""
    app.extensions.setdefault(_HOLDS_EXTENSION, []).append(reader)


def deletion_holds(person_ids: Sequence[int]) -> dict[int, list[DeletionHold]]:
    """Return the deletion holds of ``person_ids`` from every registered reader."""
    found: dict[int, list[DeletionHold]] = {}
    if not person_ids:
        return found
    for reader in current_app.extensions.get(_HOLDS_EXTENSION, []):
        for hold in reader(person_ids):
            found.setdefault(hold.person_id, []).append(hold)
    return found


# --- who is in, per category -----------------------------------------------------------------

def _notice_hash(notice_version_id: int, category_key: str) -> str | None:
    section = db.get(CategoryNotice, (notice_version_id, category_key))
    return section.content_sha256 if section is not None else None


def person_reasons(snapshot: TrainingSnapshot, category: Category,
                   person_ids: Sequence[int]) -> dict[int, ExclusionReason]:
    """Return, for those of ``person_ids`` whose records of ``category`` are all out, why.

    Consent categories: consent given (or renewed) under a notice whose text for the category
    is the snapshot notice's text; anything else (withdrawn, refused, expired, never given, or
    given under another text) is ``NO_CONSENT``. Other legal bases: an objection received,
    extended or upheld is ``OBJECTION``; a dismissed one is not.
    """
    if not person_ids:
        return {}
    if category.needs_consent:
        wanted = _notice_hash(snapshot.notice_version_id, category.key)
        statuses = db.execute(
            select(ConsentStatus.person_id, ConsentStatus.notice_version_id)
            .where(ConsentStatus.person_id.in_(person_ids),
                   ConsentStatus.category_key == category.key,
                   ConsentStatus.state.in_(_GIVEN))).all()
        hashes: dict[int, str | None] = {}
        given = set()
        for person_id, version_id in statuses:
            if version_id not in hashes:
                hashes[version_id] = _notice_hash(version_id, category.key)
            if wanted is not None and hashes[version_id] == wanted:
                given.add(person_id)
        return {person_id: ExclusionReason.NO_CONSENT for person_id in person_ids
                if person_id not in given}
    return dict.fromkeys(objecting(category.key, person_ids), ExclusionReason.OBJECTION)


def objecting(category_key: str, person_ids: Sequence[int]) -> set[int]:
    """Return those of ``person_ids`` with an objection to ``category_key`` that still stands."""
    if not person_ids:
        return set()
    return set(db.scalars(
        select(Objection.person_id).where(Objection.person_id.in_(person_ids),
                                          Objection.category_key == category_key,
                                          Objection.state.in_(_STANDING_OBJECTIONS))))


# --- sensitivity ratings ---------------------------------------------------------------------

@dataclass
class Ratings:
    """What the people of a part's own sensitivity ratings say, for the window rule."""

    #: People with at least one rating in the period widened by the window.
    rated: set[int] = field(default_factory=set)
    #: Per person, the sorted moments they opened or edited a DSS 3-4 document.
    sensitive: dict[int, list[dt.datetime]] = field(default_factory=dict)
    #: People who object to their ratings (pending or upheld).
    objected: set[int] = field(default_factory=set)

    def near_sensitive(self, person_id: int, moment: dt.datetime) -> bool:
        """Say whether ``moment`` lies within :data:`WINDOW` of a DSS 3-4 rating (edges in)."""
        moments = self.sensitive.get(person_id)
        if not moments:
            return False
        index = bisect.bisect_left(moments, moment - WINDOW)
        return index < len(moments) and moments[index] <= moment + WINDOW


def read_ratings(snapshot: TrainingSnapshot, person_ids: Sequence[int]) -> Ratings:
    """Read the sensitivity ratings of ``person_ids`` around the snapshot's period.

    Only the moments and levels are kept, never a document id.
    """
    ratings = Ratings(objected=objecting(RATINGS, person_ids))
    if not person_ids:
        return ratings
    since, until = snapshot.collected_from - WINDOW, snapshot.collected_to + WINDOW
    master = configured_master_key()
    keys = {key.id: key for key in db.scalars(
        select(DataKey).where(DataKey.person_id.in_(person_ids), DataKey.category_key == RATINGS,
                              DataKey.destroyed_at.is_(None)))}
    if not keys:
        return ratings
    rows = db.execute(
        select(CollectedBatch.public_id, CollectedBatch.person_id, CollectedBatch.category_key,
               CollectedBatch.data_key_id, CollectedBatch.nonce, CollectedBatch.ciphertext)
        .where(CollectedBatch.data_key_id.in_(list(keys)),
               CollectedBatch.collected_to >= since, CollectedBatch.collected_from <= until)
        .order_by(CollectedBatch.person_id, CollectedBatch.id)
        .execution_options(yield_per=16))
    materials: dict[str, bytes] = {}
    for row in rows:
        if row.data_key_id not in materials:
            materials = {row.data_key_id: unwrap(master, keys[row.data_key_id])}
        for event in orjson.loads(decrypt_batch(materials[row.data_key_id], row)):
            moment = parse_timestamp(str(event.get("t", "")))
            if moment is None or not since <= moment <= until:
                continue
            ratings.rated.add(row.person_id)
            if event.get("dss_level") in SENSITIVE_LEVELS:
                ratings.sensitive.setdefault(row.person_id, []).append(moment)
    for moments in ratings.sensitive.values():
        moments.sort()
    return ratings


# --- colleagues in conversations -------------------------------------------------------------

class Colleagues:
    """Who a workplace pseudonym in a conversation is, and whether they are in the snapshot.

    A colleague's message stays only if that colleague would themselves be included for
    ``conversations`` in this snapshot (consent given under its notice, no deletion hold).
    Looked up as pseudonyms appear and remembered for the part.
    """

    def __init__(self, snapshot: TrainingSnapshot, category: Category) -> None:
        self._snapshot = snapshot
        self._category = category
        self._people: dict[str, int | None] = {}
        self._out: dict[int, ExclusionReason] = {}
        self._holds: dict[int, list[DeletionHold]] = {}

    def learn(self, pseudonyms: Iterable[str]) -> None:
        """Look up the workplace pseudonyms not seen yet."""
        new = sorted({name for name in pseudonyms if name not in self._people})
        if not new:
            return
        found: dict[str, int] = {name: person_id for name, person_id in db.execute(
            select(Person.workplace_pseudonym, Person.id)
            .where(Person.workplace_pseudonym.in_(new)))}
        for name in new:
            self._people[name] = found.get(name)
        ids = list(found.values())
        self._out.update(person_reasons(self._snapshot, self._category, ids))
        for person_id, holds in deletion_holds(ids).items():
            self._holds.setdefault(person_id, []).extend(holds)

    def person(self, pseudonym: str) -> int | None:
        """Return the id of the person a workplace pseudonym names (None: nobody)."""
        return self._people.get(pseudonym)

    def included(self, pseudonym: str, moment: dt.datetime) -> bool:
        """Say whether colleague ``pseudonym`` is in the snapshot for a message at ``moment``."""
        person_id = self._people.get(pseudonym)
        if person_id is None or person_id in self._out:
            return False
        return not any(hold.covers(self._category.key, moment)
                       for hold in self._holds.get(person_id, ()))


# --- one part --------------------------------------------------------------------------------

@dataclass
class Tally:
    """One person's counts in one category: records included, and left out by reason."""

    included: int = 0
    excluded: Counter[str] = field(default_factory=Counter)


class PartRules:
    """The rules for one category and the people of one part, read once as the part starts."""

    def __init__(self, snapshot: TrainingSnapshot, key: SnapshotKey, category: Category,
                 person_ids: Sequence[int], *, now: dt.datetime) -> None:
        self.snapshot = snapshot
        self.key = key
        self.category = category
        self.columns: list[Column] = columns(category.event_schema)
        self.cutoff = now - dt.timedelta(days=category.retention_days)
        self.out = person_reasons(snapshot, category, person_ids)
        self.holds = deletion_holds(person_ids)
        self.activity = category.key != RATINGS
        self.ratings = read_ratings(snapshot, person_ids) if self.activity else Ratings()
        self.colleagues = (Colleagues(snapshot, category) if category.key == CONVERSATIONS
                           else None)
        self.tallies: dict[int, Tally] = {}

    def tally(self, person_id: int) -> Tally:
        """Return the person's counts, made on first use."""
        found = self.tallies.get(person_id)
        if found is None:
            found = self.tallies[person_id] = Tally()
        return found

    def batch_reason(self, person_id: int, dss_level: int,
                     collected_to: dt.datetime) -> ExclusionReason | None:
        """Return why a whole batch stays out (unopened), or None to open it."""
        person_out = self.out.get(person_id)
        if person_out is not None:
            return person_out
        if any(hold.whole_period and hold.covers_category(self.category.key)
               for hold in self.holds.get(person_id, ())):
            return ExclusionReason.DELETION_REQUEST
        if dss_level > self.snapshot.max_dss_level:
            return ExclusionReason.ABOVE_MAX_DSS
        if collected_to < self.cutoff:
            return ExclusionReason.PAST_RETENTION
        if self.activity:
            if person_id in self.ratings.objected:
                return ExclusionReason.RATINGS_OBJECTED
            if person_id not in self.ratings.rated:
                return ExclusionReason.RATINGS_MISSING
        return None

    def event_reason(self, person_id: int, event: Mapping[str, Any],
                     moment: dt.datetime) -> ExclusionReason | None:
        """Return why one record of an opened batch stays out, or None to include it."""
        if any(hold.covers(self.category.key, moment) for hold in self.holds.get(person_id, ())):
            return ExclusionReason.DELETION_REQUEST
        if moment < self.cutoff:
            return ExclusionReason.PAST_RETENTION
        if self.activity and self.ratings.near_sensitive(person_id, moment):
            return ExclusionReason.SENSITIVE_DOCUMENT
        if self.colleagues is not None:
            author = str(event.get("author", SELF_AUTHOR))
            if author != SELF_AUTHOR and not self.colleagues.included(author, moment):
                return ExclusionReason.COLLEAGUE_NOT_CONSENTED
        return None

    def prepare(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Look up the colleagues a batch's conversation names (before its events are judged)."""
        if self.colleagues is None:
            return
        names: set[str] = set()
        for event in events:
            author = event.get("author")
            if isinstance(author, str) and author != SELF_AUTHOR:
                names.add(author)
            names.update(name for name in event.get("participants") or ()
                         if isinstance(name, str))
        self.colleagues.learn(names)

    def pseudonym_of(self, owner_id: int, name: str) -> str:
        """Return the snapshot pseudonym for a name in a conversation (never a workplace one)."""
        if name == SELF_AUTHOR:
            return self.key.pseudonym(owner_id)
        assert self.colleagues is not None
        person_id = self.colleagues.person(name)
        if person_id is None:
            return self.key.unmatched_pseudonym(name)
        return self.key.pseudonym(person_id)

    def row(self, person_id: int, event: Mapping[str, Any],
            moment: dt.datetime) -> dict[str, Any]:
        """Return the dataset row of an included record, people under snapshot pseudonyms."""
        row: dict[str, Any] = {}
        for column in self.columns:
            if column.name == PERSON_COLUMN:
                row[PERSON_COLUMN] = self.key.pseudonym(person_id)
            elif column.name == "t":
                row["t"] = moment
            else:
                row[column.name] = event.get(column.name)
        if self.colleagues is not None:
            if "author" in row:
                row["author"] = self.pseudonym_of(person_id, str(row["author"]))
            if row.get("participants") is not None:
                row["participants"] = [self.pseudonym_of(person_id, str(name))
                                       for name in row["participants"]]
        for column in self.columns:
            value = row.get(column.name)
            if column.croissant_type == "sc:DateTime" and isinstance(value, str):
                row[column.name] = parse_timestamp(value)
        return row
