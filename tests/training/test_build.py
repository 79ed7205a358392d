"""Building snapshots: parts and leases shared by workers, the one audit entry, failures, and a
worker killed in the middle of a part."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from portal.audit.models import AuditAction, AuditEntry, AuditRole, AuditSubject
from portal.auth.models import Person
from portal.db import commit, db, utcnow
from portal.training import files
from portal.training.build import (
    MAX_ATTEMPTS,
    LeaseLost,
    build_part,
    plan_snapshots,
    take_part,
    work,
)
from portal.training.models import (
    PartState,
    SnapshotHolding,
    SnapshotPart,
    SnapshotState,
    TrainingSnapshot,
)
from portal.vault.models import CollectedBatch
from tests.support.batches import recent
from tests.support.config import portal_settings
from tests.support.factories import create_person, grant
from tests.support.identity import ISSUER
from tests.support.training import (
    ask_snapshot,
    holding,
    keystrokes,
    parts,
    ratings,
    read_dataset,
    reload,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """No identity provider; parts of two people, so a few people make several parts."""
    return {**portal_settings(database_url, ISSUER, "http://localhost"),
            "TRAINING_PART_PEOPLE": 2}


def people(count: int, *, consenting: bool = True) -> list[Person]:
    """Make people with two keystroke records each (and a harmless rating)."""
    made = []
    for index in range(count):
        someone = create_person(f"worker-test-{index}")
        grant(someone, "keystrokes")
        ratings(someone, (recent(600), 1))
        keystrokes(someone, recent(60), recent(59))
        made.append(someone)
    return made


def snapshot_of_keystrokes() -> TrainingSnapshot:
    snapshot = ask_snapshot(categories=["keystrokes"], collected_from=recent(24 * 60),
                            collected_to=recent(0) + dt.timedelta(minutes=1))
    commit()
    return snapshot


def expire_leases() -> None:
    """Let every lease run out (as the passing of TRAINING_PART_LEASE_SECONDS would)."""
    db.execute(update(SnapshotPart).where(SnapshotPart.state == PartState.LEASED)
               .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1)))
    commit()


def audit_entries() -> list[AuditEntry]:
    return list(db.scalars(select(AuditEntry).where(AuditEntry.what == "training.snapshot")))


def test_parts_are_shared_by_workers_and_the_snapshot_is_ready_only_at_the_end(
        ctx: None) -> None:
    crowd = people(5)
    snapshot = snapshot_of_keystrokes()

    assert work("a", until_idle=False) == 1
    assert work("b", until_idle=False) == 1

    done = parts(snapshot)
    assert [(part.first_person_id, part.last_person_id) for part in done] == [
        (crowd[0].id, crowd[1].id), (crowd[2].id, crowd[3].id), (crowd[4].id, crowd[4].id)]
    assert [(part.state, part.lease_owner) for part in done] == [
        (PartState.DONE, "a"), (PartState.DONE, "b"), (PartState.PENDING, "")]
    half = reload(snapshot)
    assert half.state is SnapshotState.BUILDING and half.totals == {} and half.ready_at is None
    assert audit_entries() == []

    assert work("a") == 1
    ready = reload(snapshot)
    assert ready.state is SnapshotState.READY and ready.ready_at is not None
    assert ready.totals["included"] == 10 and ready.totals["people"] == 5
    assert [part.rows for part in parts(snapshot)] == [4, 4, 2]
    assert all(part.size > 0 and len(part.sha256) == 64 for part in parts(snapshot))
    assert read_dataset(ready, "keystrokes").num_rows == 10
    assert work("a") == 0


def test_two_workers_taking_at_once_get_different_parts(ctx: None) -> None:
    people(6)
    snapshot = snapshot_of_keystrokes()
    work("planner", until_idle=False)  # plans, and builds the first part
    first = take_part("a")
    commit()
    second = take_part("b")
    commit()
    assert first is not None and second is not None
    assert first.id != second.id
    assert take_part("c") is None
    assert {part.lease_owner for part in parts(snapshot)} == {"planner", "a", "b"}


def test_an_expired_lease_is_taken_again_and_a_part_never_finished_fails_the_snapshot(
        ctx: None) -> None:
    people(1)
    snapshot = snapshot_of_keystrokes()
    work("planner", until_idle=False)
    db.execute(update(SnapshotPart).values(state=PartState.PENDING, attempts=0))
    db.execute(update(TrainingSnapshot).values(state=SnapshotState.BUILDING))
    commit()
    folder = files.snapshot_folder(snapshot)
    assert folder.exists()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        part = take_part(f"worker-{attempt}")
        commit()
        assert part is not None and part.attempts == attempt
        assert take_part("other") is None  # the lease holds while it runs
        expire_leases()

    assert take_part("last") is None
    commit()
    failed = reload(snapshot)
    assert failed.state is SnapshotState.FAILED
    assert "3 attempts" in failed.failed_reason
    assert not folder.exists()
    assert db.scalar(select(func.count()).select_from(SnapshotHolding)) == 0


def test_a_part_that_keeps_failing_fails_the_snapshot_and_removes_its_files(
        ctx: None) -> None:
    crowd = people(3)
    # The second part's batch no longer opens (altered in the database).
    db.execute(update(CollectedBatch).where(CollectedBatch.person_id == crowd[2].id,
                                            CollectedBatch.category_key == "keystrokes")
               .values(ciphertext=b"\x00" * 64))
    snapshot = snapshot_of_keystrokes()

    assert work("a") == 1  # the first part; the second fails three times
    failed = reload(snapshot)
    assert failed.state is SnapshotState.FAILED
    assert "VaultIntegrityError" in failed.failed_reason
    assert [part.state for part in parts(snapshot)] == [PartState.DONE, PartState.FAILED]
    assert parts(snapshot)[1].attempts == MAX_ATTEMPTS
    assert not files.snapshot_folder(snapshot).exists()
    assert db.scalar(select(func.count()).select_from(SnapshotHolding)) == 0
    assert audit_entries() == []


def test_one_audit_entry_names_everyone_included_and_nobody_else(ctx: None) -> None:
    included = people(3)
    left_out = create_person("left-out")
    grant(left_out, "keystrokes")
    keystrokes(left_out, recent(60))  # no ratings: nothing of theirs goes in
    snapshot = snapshot_of_keystrokes()
    work("a")

    [entry] = audit_entries()
    assert (entry.action, entry.actor_role, entry.actor_name) == (
        AuditAction.READ, AuditRole.SYSTEM, "training pipeline")
    assert json.loads(entry.detail) == {"snapshot": snapshot.number,
                                        "purpose": snapshot.purpose_key}
    subjects = set(db.scalars(select(AuditSubject.person_id)
                              .where(AuditSubject.entry_id == entry.id)))
    assert subjects == {someone.id for someone in included}
    assert holding(reload(snapshot), left_out, "keystrokes") == (0, {"ratings_missing": 1})


def test_a_snapshot_with_nothing_to_read_is_ready_and_empty(ctx: None) -> None:
    snapshot = snapshot_of_keystrokes()
    assert work("a") == 0
    ready = reload(snapshot)
    assert ready.state is SnapshotState.READY
    assert ready.totals == {"included": 0, "excluded": {}, "people": 0,
                            "categories": {"keystrokes": {"included": 0, "excluded": {}}}}
    assert audit_entries() == []


KILLED_WORKER = textwrap.dedent("""
    import json, os, signal, sys

    from portal import create_app
    from portal.training import build

    def killed(*args, **kwargs):
        # The file is written; the part is not yet recorded: the worst moment to die.
        os.kill(os.getpid(), signal.SIGKILL)

    build._record_part = killed
    app = create_app(json.loads(sys.argv[1]))
    with app.app_context():
        build.work("doomed")
""")


def test_a_killed_worker_leaves_nothing_ready_and_another_worker_redoes_its_part(
        app: Flask, ctx: None, settings: dict[str, Any]) -> None:
    crowd = people(2)
    snapshot = snapshot_of_keystrokes()

    result = subprocess.run([sys.executable, "-c", KILLED_WORKER, json.dumps(settings)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == -9, result.stderr

    db.expire_all()
    stuck = reload(snapshot)
    [part] = parts(snapshot)
    assert stuck.state is SnapshotState.BUILDING and stuck.manifest_jws is None
    assert (part.state, part.lease_owner, part.attempts) == (PartState.LEASED, "doomed", 1)
    assert db.scalar(select(func.count()).select_from(SnapshotHolding)) == 0
    assert not (files.snapshot_folder(snapshot) / "keystrokes/part-00001.parquet").exists()
    assert work("rescuer") == 0  # the lease still holds

    expire_leases()
    assert work("rescuer") == 1
    ready = reload(snapshot)
    [part] = parts(snapshot)
    assert ready.state is SnapshotState.READY
    assert (part.state, part.lease_owner, part.attempts) == (PartState.DONE, "rescuer", 2)
    assert ready.totals["included"] == 4
    assert [holding(ready, someone, "keystrokes") for someone in crowd] == [(2, {}), (2, {})]
    assert read_dataset(ready, "keystrokes").num_rows == 4
    assert len(audit_entries()) == 1


def test_the_work_command_builds_what_waits(app: Flask, ctx: None) -> None:
    people(1)
    snapshot = snapshot_of_keystrokes()
    result = app.test_cli_runner().invoke(args=["training", "work", "--once", "--owner", "cli"])
    assert result.exit_code == 0, result.output
    assert "built 1 part(s) as cli" in result.output
    db.expire_all()
    assert reload(snapshot).state is SnapshotState.READY


def test_a_worker_whose_lease_was_taken_over_records_nothing(ctx: None) -> None:
    people(1)
    snapshot = snapshot_of_keystrokes()
    plan_snapshots()
    commit()
    slow = take_part("slow")
    commit()
    assert slow is not None
    expire_leases()
    fast = take_part("fast")
    commit()
    assert fast is not None and fast.id == slow.id

    with pytest.raises(LeaseLost):
        build_part(slow, "slow")
    db.rollback()
    [part] = parts(snapshot)
    assert (part.state, part.lease_owner) == (PartState.LEASED, "fast")
    assert db.scalar(select(func.count()).select_from(SnapshotHolding)) == 0

    build_part(part, "fast")
    commit()
    assert reload(snapshot).state is SnapshotState.READY
    assert read_dataset(reload(snapshot), "keystrokes").num_rows == 2
