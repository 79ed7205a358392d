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

import datetime as dt
import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from flask import Flask, current_app
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.models import Category, Objection, ObjectionState
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import db
from portal.training.keys import SnapshotKey
from portal.training.models import ExclusionReason, TrainingSnapshot
from portal.training.schema import PERSON_COLUMN, arrow_schema
from portal.vault.keys import LiveKey, configured_master_key, unwrap
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

def person_reasons(snapshot: TrainingSnapshot, category: Category,
                   person_ids: Sequence[int]) -> dict[int, ExclusionReason]:
    """Return, for those of ``person_ids`` whose records of ``category`` are all out, why.

    Consent categories: consent in force now, given or renewed (read at build time, not
    when the snapshot was asked for); anything else (withdrawn, refused, never given, or
    expired because a material change of the notice ended it) is ``NO_CONSENT``. A change of
    the notice that was not material leaves consent in force, as it does for collection: the
    person was told nothing that would change their choice. Other legal bases: an objection
    received, extended or upheld is ``OBJECTION``; a dismissed one is not.
    """
    if not person_ids:
        return {}
    if category.needs_consent:
        given = set(db.scalars(
            select(ConsentStatus.person_id)
            .where(ConsentStatus.person_id.in_(person_ids),
                   ConsentStatus.category_key == category.key,
                   ConsentStatus.state.in_(_GIVEN))))
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
    #: Per person, the sorted moments (ms since the epoch) they opened or edited a DSS 3-4
    #: document.
    sensitive: dict[int, np.ndarray] = field(default_factory=dict)
    #: People who object to their ratings (pending or upheld).
    objected: set[int] = field(default_factory=set)

    def near_sensitive(self, person_id: int, moments: np.ndarray) -> np.ndarray:
        """Say for each moment (ms) whether it lies within :data:`WINDOW` of a DSS 3-4 rating.

        Edges included: exactly 30 minutes before or after is near.
        """
        rated = self.sensitive.get(person_id)
        if rated is None or not len(rated):
            return np.zeros(len(moments), dtype=bool)
        window = _ms(WINDOW)
        # The first sensitive moment not before (t - window): near if it is not after t + window.
        index = np.searchsorted(rated, moments - window, side="left")
        found = index < len(rated)
        near = np.zeros(len(moments), dtype=bool)
        near[found] = rated[index[found]] <= moments[found] + window
        return near


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ms(value: dt.timedelta) -> int:
    return value // dt.timedelta(milliseconds=1)


def epoch_ms(moment: dt.datetime) -> int:
    """Return a moment as milliseconds since the epoch (the dataset's precision)."""
    return _ms(moment - _EPOCH)


def moments_ms(times: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Return RFC 3339 times (strings) as milliseconds since the epoch; -1 where missing.

    Sub-millisecond digits are cut, as in the dataset's ``t`` column.
    """
    if isinstance(times, pa.ChunkedArray):
        times = times.combine_chunks()
    parsed = pc.cast(times, pa.timestamp("us", tz="UTC")).cast(
        pa.timestamp("ms", tz="UTC"), safe=False).cast(pa.int64())
    return np.asarray(parsed.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


#: The columns of a ratings batch the window rule reads, as :func:`wrapped_events` reads them.
_RATING_FIELDS = pa.schema([("t", pa.string()), ("dss_level", pa.int64())])
#: How many opened ratings batches are read into columns at once.
_RATINGS_AT_ONCE = 4096


def live_keys(person_ids: Sequence[int], category_key: str) -> dict[str, LiveKey]:
    """Return the live data keys of ``person_ids`` for a category, by id (plain rows)."""
    if not person_ids:
        return {}
    return {row.id: LiveKey(*row) for row in db.execute(
        select(DataKey.id, DataKey.person_id, DataKey.category_key, DataKey.master_key_id,
               DataKey.wrapped_key)
        .where(DataKey.person_id.in_(person_ids), DataKey.category_key == category_key,
               DataKey.destroyed_at.is_(None)))}


def wrapped_events(batches: Sequence[bytes], fields: pa.Schema) -> tuple[pa.Table, np.ndarray]:
    """Return the events of opened batches as Arrow columns, and each batch's count.

    Each batch's plaintext is the canonical JSON array the vault sealed (compact: no line
    break, strings escaped), so ``{"e":[...]}`` makes one line of it, and Arrow's JSON
    reader turns many batches into columns at once, in C++: no Python object per event.
    Fields without a column are left out; missing ones are null.
    """
    lines = b"\n".join(b'{"e":' + plain + b"}" for plain in batches)
    table = pa_json.read_json(
        io.BytesIO(lines), read_options=pa_json.ReadOptions(block_size=1 << 22),
        parse_options=pa_json.ParseOptions(
            explicit_schema=pa.schema([("e", pa.list_(pa.struct(list(fields))))]),
            unexpected_field_behavior="ignore"))
    nested = table.column("e").combine_chunks()
    counts = np.asarray(nested.value_lengths().fill_null(0).to_numpy(zero_copy_only=False),
                        dtype=np.int64)
    return pa.Table.from_struct_array(nested.flatten()), counts


def read_ratings(snapshot: TrainingSnapshot, person_ids: Sequence[int]) -> Ratings:
    """Read the sensitivity ratings of ``person_ids`` around the snapshot's period.

    Only the moments and levels are kept, never a document id.
    """
    ratings = Ratings(objected=objecting(RATINGS, person_ids))
    keys = live_keys(person_ids, RATINGS)
    if not keys:
        return ratings
    since, until = snapshot.collected_from - WINDOW, snapshot.collected_to + WINDOW
    bounds = (epoch_ms(since), epoch_ms(until))
    master = configured_master_key()
    rows = db.execute(
        select(CollectedBatch.public_id, CollectedBatch.person_id, CollectedBatch.category_key,
               CollectedBatch.data_key_id, CollectedBatch.nonce, CollectedBatch.ciphertext)
        .where(CollectedBatch.data_key_id.in_(list(keys)),
               CollectedBatch.collected_to >= since, CollectedBatch.collected_from <= until)
        .order_by(CollectedBatch.person_id, CollectedBatch.id)
        .execution_options(yield_per=256))
    sensitive: dict[int, list[np.ndarray]] = {}
    opened: list[bytes] = []
    owners: list[int] = []

    def take_in() -> None:
        events, counts = wrapped_events(opened, _RATING_FIELDS)
        people = np.repeat(np.array(owners, dtype=np.int64), counts)
        moments = moments_ms(events.column("t"))
        levels = np.asarray(events.column("dss_level").combine_chunks().fill_null(0)
                            .to_numpy(zero_copy_only=False))
        inside = (moments >= bounds[0]) & (moments <= bounds[1])
        ratings.rated.update(int(person_id) for person_id in np.unique(people[inside]))
        flagged = inside & np.isin(levels, list(SENSITIVE_LEVELS))
        flagged_moments = moments[flagged]
        for person_id, where in person_spans(people[flagged]):
            sensitive.setdefault(person_id, []).append(flagged_moments[where])
        opened.clear()
        owners.clear()

    material: tuple[str, bytes] | None = None
    for row in rows:
        if material is None or material[0] != row.data_key_id:
            material = (row.data_key_id, unwrap(master, keys[row.data_key_id]))
        opened.append(decrypt_batch(material[1], row))
        owners.append(row.person_id)
        if len(opened) >= _RATINGS_AT_ONCE:
            take_in()
    if opened:
        take_in()
    ratings.sensitive = {person_id: np.sort(np.concatenate(parts))
                         for person_id, parts in sensitive.items()}
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


#: Codes of :meth:`PartRules.judge`: a record outside the period (not counted), one included;
#: any other code is the index of its reason in :data:`REASONS`.
OUTSIDE, INCLUDED = -2, -1
REASONS: tuple[ExclusionReason, ...] = tuple(ExclusionReason)


class PartRules:
    """The rules for one category and the people of one part, read once as the part starts.

    Records are judged a batch at a time, as Arrow columns (the speed of a snapshot is the
    speed of this loop): :meth:`judge` gives each record its code, :meth:`rows` the dataset's
    rows of those included.
    """

    def __init__(self, snapshot: TrainingSnapshot, key: SnapshotKey, category: Category,
                 person_ids: Sequence[int], *, now: dt.datetime) -> None:
        self.snapshot = snapshot
        self.key = key
        self.category = category
        self.schema = arrow_schema(category.event_schema)
        # As the vault holds them: times are still strings, no person column yet.
        self.raw_schema = pa.schema([
            pa.field(field.name, pa.string() if pa.types.is_timestamp(field.type)
                     else field.type)
            for field in self.schema if field.name != PERSON_COLUMN])
        self.period = (epoch_ms(snapshot.collected_from), epoch_ms(snapshot.collected_to))
        self.cutoff_time = now - dt.timedelta(days=category.retention_days)
        self.cutoff = epoch_ms(self.cutoff_time)
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
        if collected_to < self.cutoff_time:
            return ExclusionReason.PAST_RETENTION
        if self.activity:
            if person_id in self.ratings.objected:
                return ExclusionReason.RATINGS_OBJECTED
            if person_id not in self.ratings.rated:
                return ExclusionReason.RATINGS_MISSING
        return None

    def events(self, batches: Sequence[bytes]) -> tuple[pa.Table, np.ndarray]:
        """Return the events of opened batches as Arrow columns, and each batch's count."""
        return wrapped_events(batches, self.raw_schema)

    def judge(self, people: np.ndarray, events: pa.Table, moments: np.ndarray) -> np.ndarray:
        """Return each record's code: outside the period, included, or why it stays out.

        ``people`` holds each record's person id, the records of one person next to each
        other (batches come ordered by person); ``moments`` each record's time in ms.
        """
        codes = np.full(len(moments), INCLUDED, dtype=np.int8)
        codes[(moments < self.period[0]) | (moments >= self.period[1])] = OUTSIDE

        def leave_out(mask: np.ndarray, reason: ExclusionReason,
                      where: slice = slice(None)) -> None:
            part = codes[where]
            part[(part == INCLUDED) & mask] = REASONS.index(reason)

        spans = person_spans(people)
        for person_id, where in spans:
            for hold in self.holds.get(person_id, ()):
                if hold.covers_category(self.category.key):
                    covered = np.ones(where.stop - where.start, dtype=bool)
                    if hold.since is not None:
                        covered &= moments[where] >= epoch_ms(hold.since)
                    if hold.until is not None:
                        covered &= moments[where] <= epoch_ms(hold.until)
                    leave_out(covered, ExclusionReason.DELETION_REQUEST, where)
        leave_out(moments < self.cutoff, ExclusionReason.PAST_RETENTION)
        if self.activity:
            for person_id, where in spans:
                if person_id in self.ratings.sensitive:
                    leave_out(self.ratings.near_sensitive(person_id, moments[where]),
                              ExclusionReason.SENSITIVE_DOCUMENT, where)
        if self.colleagues is not None:
            authors = events.column("author").to_pylist()
            self._learn(events, authors)
            colleagues = self.colleagues
            dropped = np.array([
                author != SELF_AUTHOR and not colleagues.included(
                    str(author), _EPOCH + dt.timedelta(milliseconds=int(moment)))
                for author, moment in zip(authors, moments, strict=True)], dtype=bool)
            leave_out(dropped, ExclusionReason.COLLEAGUE_NOT_CONSENTED)
        return codes

    def _learn(self, events: pa.Table, authors: list[Any]) -> None:
        assert self.colleagues is not None
        names = {author for author in authors if isinstance(author, str)}
        for participants in events.column("participants").to_pylist():
            names.update(participants or ())
        names.discard(SELF_AUTHOR)
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

    def rows(self, people: np.ndarray, events: pa.Table, moments: np.ndarray,
             included: np.ndarray) -> pa.Table:
        """Return the dataset rows of the included records, people under snapshot pseudonyms."""
        kept = events.filter(pa.array(included))
        owners = people[included]
        known, index = np.unique(owners, return_inverse=True)
        arrays: list[pa.Array | pa.ChunkedArray] = []
        for name in self.schema.names:
            if name == PERSON_COLUMN:
                arrays.append(pa.array([self.key.pseudonym(int(person_id))
                                        for person_id in known], pa.string()).take(index))
            elif name == "t":
                arrays.append(pa.array(moments[included], pa.int64()).cast(
                    pa.timestamp("ms", tz="UTC")))
            elif pa.types.is_timestamp(self.schema.field(name).type):
                arrays.append(pc.cast(kept.column(name), pa.timestamp("us", tz="UTC")).cast(
                    self.schema.field(name).type, safe=False))
            elif self.colleagues is not None and name == "author":
                arrays.append(pa.array([
                    self.pseudonym_of(int(owner), str(author)) for owner, author
                    in zip(owners, kept.column(name).to_pylist(), strict=True)], pa.string()))
            elif self.colleagues is not None and name == "participants":
                arrays.append(pa.array([
                    None if names is None else [self.pseudonym_of(int(owner), str(each))
                                                for each in names]
                    for owner, names in zip(owners, kept.column(name).to_pylist(),
                                            strict=True)],
                    self.schema.field(name).type))
            else:
                arrays.append(kept.column(name))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def person_spans(people: np.ndarray) -> list[tuple[int, slice]]:
    """Return each person's id and the slice of their records (records grouped by person)."""
    if not len(people):
        return []
    starts = np.flatnonzero(np.r_[True, people[1:] != people[:-1]])
    ends = np.r_[starts[1:], len(people)]
    return [(int(people[start]), slice(int(start), int(end)))
            for start, end in zip(starts, ends, strict=True)]
