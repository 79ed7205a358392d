"""What training datasets hold, told to the person, the DPO and the privacy administrator.

Counts, dates, purposes and states only: these rows hold no collected content. The person's
view (:func:`describe_training_for`) is keyed by their own id; the administrator's
(:func:`describe_snapshots`) names no one.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record
from portal.auth.models import Person
from portal.catalog.document import FALLBACK_LANGUAGE
from portal.catalog.notices import current_notice
from portal.consent.service import category_titles
from portal.db import db
from portal.training.models import (
    ExclusionReason,
    SnapshotHolding,
    SnapshotState,
    TrainedModel,
    TrainedModelSnapshot,
    TrainingSnapshot,
)

#: The state people read beside the stored ones: a snapshot a withdrawal, objection or erasure
#: touched, not yet retired.
OUTDATED = "outdated"


@dataclass(frozen=True)
class ModelTrained:
    """A model a training client registered as trained on a dataset."""

    public_id: str
    name: str
    version: str
    registered_at: dt.datetime


@dataclass(frozen=True)
class CategoryHeld:
    """One category of the person's records in one dataset: used, and left out by reason."""

    key: str
    title: str
    included: int
    #: (reason, count), largest first; only reasons with records.
    excluded: list[tuple[str, int]]
    outdated_at: dt.datetime | None = None
    outdated_reason: str | None = None

    @property
    def excluded_total(self) -> int:
        """Return how many records were left out for any reason."""
        return sum(count for _reason, count in self.excluded)


@dataclass(frozen=True)
class DatasetHeld:
    """One training dataset as it concerns one person."""

    number: int
    purpose_key: str
    purpose_name: str
    purpose_description: str
    collected_from: dt.datetime
    collected_to: dt.datetime
    made_at: dt.datetime
    state: str
    outdated_at: dt.datetime | None
    retired_at: dt.datetime | None
    categories: list[CategoryHeld]
    models: list[ModelTrained] = field(default_factory=list)

    @property
    def included(self) -> int:
        """Return how many of the person's records the dataset holds."""
        return sum(category.included for category in self.categories)


@dataclass(frozen=True)
class SnapshotSummary:
    """One dataset for the privacy administrator: counts over everyone, no one named."""

    number: int
    client_name: str
    purpose_key: str
    purpose_name: str
    categories: list[tuple[str, str, int]]  # (key, title, records included)
    collected_from: dt.datetime
    collected_to: dt.datetime
    max_dss_level: int
    requested_at: dt.datetime
    state: str
    stored_state: str
    outdated_at: dt.datetime | None
    retired_at: dt.datetime | None
    people: int
    included: int
    excluded: list[tuple[str, int]]
    models: list[ModelTrained]


def purpose_texts(language: str) -> dict[str, tuple[str, str]]:
    """Return each training purpose's (name, description) in ``language``, from the notice.

    Read defensively: a notice published before purposes were part of the catalog has none,
    and callers then show the purpose's key.
    """
    notice = current_notice()
    purposes = (notice.document.get("training_purposes") if notice else None) or {}
    texts: dict[str, tuple[str, str]] = {}
    if not isinstance(purposes, dict):
        return texts
    for key, by_language in purposes.items():
        if not isinstance(by_language, dict):
            continue
        chosen = by_language.get(language) or by_language.get(FALLBACK_LANGUAGE) or {}
        if isinstance(chosen, dict):
            texts[str(key)] = (str(chosen.get("name") or key), str(chosen.get("description", "")))
    return texts


def purpose_name(key: str, language: str) -> str:
    """Return a training purpose's name in ``language`` (its key if the notice has none)."""
    return purpose_texts(language).get(key, (key, ""))[0]


def shown_state(snapshot: TrainingSnapshot) -> str:
    """Return the state people read: retired first, then outdated, else the stored state."""
    if snapshot.state == SnapshotState.RETIRED:
        return str(SnapshotState.RETIRED)
    if snapshot.outdated_at is not None:
        return OUTDATED
    return str(snapshot.state)


def category_titles_in(language: str) -> dict[str, str]:
    """Return each category's title in ``language``, as the notice in force words it."""
    notice = current_notice()
    return category_titles(notice.id, language) if notice else {}


def _ordered_reasons(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Return the reasons with records, most records first (ties in the enum's order)."""
    order = {reason.value: position for position, reason in enumerate(ExclusionReason)}
    return sorted(((str(reason), int(count)) for reason, count in counts.items() if count),
                  key=lambda item: (-item[1], order.get(item[0], len(order)), item[0]))


def _excluded_from_holdings(snapshot_id: int) -> dict[str, int]:
    """Add up the reasons over a snapshot's holdings (for one built before totals were kept)."""
    counts: dict[str, int] = defaultdict(int)
    for excluded in db.scalars(select(SnapshotHolding.excluded)
                               .where(SnapshotHolding.snapshot_id == snapshot_id)
                               .execution_options(yield_per=1000)):
        for reason, count in (excluded or {}).items():
            counts[reason] += int(count)
    return dict(counts)


def models_trained_on(snapshot_ids: Iterable[int]) -> dict[int, list[ModelTrained]]:
    """Return, per snapshot id, the models registered as trained on it, oldest first.

    Every id asked for is a key (with no models, an empty list).
    """
    wanted = sorted(set(snapshot_ids))
    found: dict[int, list[ModelTrained]] = {snapshot_id: [] for snapshot_id in wanted}
    if not wanted:
        return found
    rows = db.execute(
        select(TrainedModelSnapshot.snapshot_id, TrainedModel)
        .join(TrainedModel, TrainedModel.id == TrainedModelSnapshot.model_id)
        .where(TrainedModelSnapshot.snapshot_id.in_(wanted))
        .order_by(TrainedModel.registered_at, TrainedModel.id))
    for snapshot_id, model in rows:
        found[snapshot_id].append(ModelTrained(model.public_id, model.name, model.version,
                                               model.registered_at))
    return found


def describe_training_for(person_id: int, language: str) -> list[DatasetHeld]:
    """Return every training dataset that holds or left out records of the person, newest first.

    Only the person's own holdings are read; the datasets' totals over everyone are not.
    """
    holdings = list(db.scalars(select(SnapshotHolding)
                               .where(SnapshotHolding.person_id == person_id)))
    if not holdings:
        return []
    by_snapshot: dict[int, list[SnapshotHolding]] = defaultdict(list)
    for holding in holdings:
        by_snapshot[holding.snapshot_id].append(holding)
    snapshots = db.scalars(select(TrainingSnapshot)
                           .where(TrainingSnapshot.id.in_(list(by_snapshot)))
                           .order_by(TrainingSnapshot.number.desc()))
    models = models_trained_on(by_snapshot)
    titles = category_titles_in(language)
    purposes = purpose_texts(language)
    described = []
    for snapshot in snapshots:
        positions = {key: position for position, key in enumerate(snapshot.categories or [])}
        categories = [
            CategoryHeld(key=holding.category_key,
                         title=titles.get(holding.category_key, holding.category_key),
                         included=holding.included,
                         excluded=_ordered_reasons(holding.excluded or {}),
                         outdated_at=holding.outdated_at,
                         outdated_reason=(str(holding.outdated_reason)
                                          if holding.outdated_reason else None))
            for holding in sorted(by_snapshot[snapshot.id],
                                  key=lambda item: (positions.get(item.category_key, 99),
                                                    item.category_key))]
        name, description = purposes.get(snapshot.purpose_key, (snapshot.purpose_key, ""))
        described.append(DatasetHeld(
            number=snapshot.number, purpose_key=snapshot.purpose_key, purpose_name=name,
            purpose_description=description, collected_from=snapshot.collected_from,
            collected_to=snapshot.collected_to,
            made_at=snapshot.ready_at or snapshot.requested_at, state=shown_state(snapshot),
            outdated_at=snapshot.outdated_at, retired_at=snapshot.retired_at,
            categories=categories, models=models.get(snapshot.id, [])))
    return described


def count_read_of(person_id: int, snapshot_number: int) -> dict[str, int]:
    """Return how many of the person's records of each category a snapshot read."""
    rows = db.execute(
        select(SnapshotHolding.category_key, SnapshotHolding.included)
        .join(TrainingSnapshot, TrainingSnapshot.id == SnapshotHolding.snapshot_id)
        .where(TrainingSnapshot.number == snapshot_number,
               SnapshotHolding.person_id == person_id, SnapshotHolding.included > 0)
        .order_by(SnapshotHolding.category_key)).all()
    return dict(rows)


def describe_snapshots(language: str) -> list[SnapshotSummary]:
    """Return every snapshot with its counts over everyone and its models, newest first."""
    snapshots = list(db.scalars(select(TrainingSnapshot)
                                .order_by(TrainingSnapshot.number.desc())))
    ids = [snapshot.id for snapshot in snapshots]
    included: dict[int, dict[str, int]] = defaultdict(dict)
    people: dict[int, int] = {}
    if ids:
        for snapshot_id, key, total in db.execute(
                select(SnapshotHolding.snapshot_id, SnapshotHolding.category_key,
                       func.sum(SnapshotHolding.included))
                .where(SnapshotHolding.snapshot_id.in_(ids))
                .group_by(SnapshotHolding.snapshot_id, SnapshotHolding.category_key)):
            included[snapshot_id][key] = int(total or 0)
        people = dict(db.execute(
            select(SnapshotHolding.snapshot_id,
                   func.count(func.distinct(SnapshotHolding.person_id)))
            .where(SnapshotHolding.snapshot_id.in_(ids), SnapshotHolding.included > 0)
            .group_by(SnapshotHolding.snapshot_id)).all())
    models = models_trained_on(ids)
    titles = category_titles_in(language)
    purposes = purpose_texts(language)
    summaries = []
    for snapshot in snapshots:
        per_category = included.get(snapshot.id, {})
        totals = snapshot.totals or {}
        summaries.append(SnapshotSummary(
            number=snapshot.number, client_name=snapshot.client.name,
            purpose_key=snapshot.purpose_key,
            purpose_name=purposes.get(snapshot.purpose_key, (snapshot.purpose_key, ""))[0],
            categories=[(key, titles.get(key, key), per_category.get(key, 0))
                        for key in snapshot.categories or []],
            collected_from=snapshot.collected_from, collected_to=snapshot.collected_to,
            max_dss_level=snapshot.max_dss_level, requested_at=snapshot.requested_at,
            state=shown_state(snapshot), stored_state=str(snapshot.state),
            outdated_at=snapshot.outdated_at, retired_at=snapshot.retired_at,
            people=people.get(snapshot.id, 0),
            included=int(totals.get("included", sum(per_category.values()))),
            excluded=_ordered_reasons(totals["excluded"] if "excluded" in totals
                                      else _excluded_from_holdings(snapshot.id)),
            models=models.get(snapshot.id, [])))
    return summaries


def view_my_training(person: Person, language: str) -> list[DatasetHeld]:
    """Return the person's own training datasets, audited as a view of their own data.

    Audited before anything is read, like "My data": if the entry cannot be written, nothing
    is shown.
    """
    record("my_data.view", action=AuditAction.READ, role=AuditRole.SUBJECT,
           subjects=person.id, actor=person, detail={"page": "training"})
    return describe_training_for(person.id, language)
