"""Training datasets made directly as rows, for the pages that show them.

The person's page, the admin's list, the DPO's section and the certificate only read what a
build left behind (snapshots, holdings, models, the audit entry of the read); these helpers
write those rows as a finished build would, without building from the vault. They work in the
caller's application context and flush.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record
from portal.auth.models import Person
from portal.catalog.document import content_sha256
from portal.catalog.models import CategoryNotice, NoticeVersion
from portal.catalog.notices import current_notice
from portal.db import db, utcnow
from portal.training.keys import destroy_snapshot_key, new_snapshot_key
from portal.training.models import (
    OutdatedReason,
    SnapshotHolding,
    SnapshotState,
    TrainedModel,
    TrainingClient,
    TrainingSnapshot,
)
from tests.support.training import make_client

PURPOSE = "task_assistant"
#: The purpose's wording as H3's catalog key ``training_purposes`` holds it.
PURPOSE_TEXTS = {
    PURPOSE: {
        "en": {"name": "Task assistant", "description": "Teach the internal assistant the "
                                                        "next step of a task."},
        "de": {"name": "Aufgabenassistent", "description": "Dem internen Assistenten den "
                                                           "nächsten Schritt beibringen."},
        "fr": {"name": "Assistant de tâches", "description": "Apprendre à l'assistant interne "
                                                             "l'étape suivante d'une tâche."},
    },
}


def name_training_purposes() -> None:
    """Publish a copy of the notice in force that names the test purpose in three languages.

    Notice versions are append-only, so the wording comes in a new version whose categories
    are unchanged (as the catalog's ``training_purposes`` would, once loaded). Call it before
    anyone gives consent.
    """
    notice = current_notice()
    assert notice is not None
    purposes = dict(notice.document.get("training_purposes") or {})
    purposes.setdefault(PURPOSE, PURPOSE_TEXTS[PURPOSE])
    document = {**notice.document, "training_purposes": purposes}
    copy = NoticeVersion(number=notice.number + 1, published_by_name="tests",
                         dpo_sign_off="DPO of the tests", change_summary={"en": "Purposes."},
                         document=document, document_sha256=content_sha256(document))
    db.add(copy)
    db.flush()
    for section in notice.sections:
        db.add(CategoryNotice(notice_version_id=copy.id, category_key=section.category_key,
                              position=section.position, content=section.content,
                              content_sha256=section.content_sha256))
    db.flush()


def add_client(name: str = "Assistant pipeline") -> TrainingClient:
    """Add a training client for the test purpose."""
    return make_client(name, purposes=[PURPOSE], scopes=["snapshots", "models"])


def add_snapshot(client: TrainingClient, number: int, *,
                 categories: Iterable[str] = ("keystrokes",), purpose: str = PURPOSE,
                 max_dss_level: int = 2, outdated: bool = False,
                 retired: bool = False, totals: Mapping[str, object] | None = None,
                 ) -> TrainingSnapshot:
    """Add a ready snapshot (or one marked outdated, or retired) for the past 30 days."""
    notice = current_notice()
    assert notice is not None
    now = utcnow()
    snapshot = TrainingSnapshot(
        number=number, client_id=client.id, purpose_key=purpose, categories=list(categories),
        collected_from=now - dt.timedelta(days=30), collected_to=now - dt.timedelta(days=1),
        max_dss_level=max_dss_level, notice_version_id=notice.id, state=SnapshotState.READY,
        ready_at=now, totals=dict(totals or {}))
    new_snapshot_key(snapshot)
    if outdated or retired:
        snapshot.outdated_at = now
    if retired:
        destroy_snapshot_key(snapshot)
        snapshot.state = SnapshotState.RETIRED
        snapshot.retired_at = now
        snapshot.retired_by = "tests"
    db.add(snapshot)
    db.flush()
    return snapshot


def hold(snapshot: TrainingSnapshot, person: Person, category: str, included: int,
         excluded: Mapping[str, int] | None = None,
         outdated_reason: OutdatedReason | None = None) -> SnapshotHolding:
    """Record what ``snapshot`` holds of ``person``'s records of ``category``."""
    holding = SnapshotHolding(snapshot_id=snapshot.id, person_id=person.id,
                              category_key=category, included=included,
                              excluded=dict(excluded or {}),
                              outdated_at=utcnow() if outdated_reason else None,
                              outdated_reason=outdated_reason)
    db.add(holding)
    db.flush()
    return holding


def add_model(client: TrainingClient, name: str, version: str,
              snapshots: Iterable[TrainingSnapshot]) -> TrainedModel:
    """Register a model as trained on ``snapshots``."""
    model = TrainedModel(client_id=client.id, name=name, version=version,
                         snapshots=list(snapshots))
    db.add(model)
    db.flush()
    return model


def record_read(snapshot: TrainingSnapshot, people: Iterable[Person]) -> None:
    """Write the audit entry a build writes when it reads the people's records."""
    record("training.snapshot", action=AuditAction.READ, role=AuditRole.SYSTEM,
           subjects=[person.id for person in people], actor_name="training pipeline",
           detail={"snapshot": snapshot.number, "purpose": snapshot.purpose_key})
