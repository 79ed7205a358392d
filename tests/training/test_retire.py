"""Retiring a snapshot destroys its key and files, with a signed certificate each person's access
log points to; a second retirement is refused; old snapshots retire by the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from portal.audit.models import AuditEntry, AuditSubject
from portal.config import ConfigError, load_settings
from portal.consent import receipts
from portal.db import commit, db, utcnow
from portal.training import keys, lineage
from portal.training.models import SnapshotEvent, SnapshotState, TrainingSnapshot
from portal.vault.errors import VaultIntegrityError
from tests.support.factories import create_person
from tests.support.training import make_client
from tests.support.training_lineage import (
    DAY,
    create_model,
    create_snapshot,
    folder_of,
)

KEYS = "keystrokes"
FILES = ("keystrokes/part-00001.parquet", "pointer/part-00002.parquet", "croissant.json")


def _fresh(snapshot_id: int) -> TrainingSnapshot:
    found = db.get(TrainingSnapshot, snapshot_id, populate_existing=True)
    assert found is not None
    return found


def _verify(app: Flask, token: str) -> receipts.ReceiptCheck:
    keyset = receipts.load_keys(receipts.public_jwks(app))
    return receipts.verify_document(token, keyset, receipts.document_checks(app))


def test_retiring_destroys_key_and_files_and_issues_a_certificate(app: Flask, ctx: None) -> None:
    alex, blake, casey = (create_person(f"sub-{name}") for name in ("alex", "blake", "casey"))
    training = make_client()
    snapshot = create_snapshot(training, {(alex.id, KEYS): 5, (blake.id, "pointer"): 2,
                                          (casey.id, KEYS): 0}, files=FILES)
    model = create_model(training, [snapshot], name="assistant", version="3")
    commit()
    folder = folder_of(snapshot)
    assert sorted(path.name for path in folder.rglob("*") if path.is_file()) == sorted(
        name.rsplit("/", 1)[-1] for name in FILES)
    keys.open_snapshot_key(snapshot)  # opens before

    token = lineage.retire_snapshot(snapshot, by="Privacy team")
    assert folder.exists()  # the files go with the commit, never before
    commit()

    assert not folder.exists()
    retired = _fresh(snapshot.id)
    assert retired.state is SnapshotState.RETIRED
    assert retired.retired_by == "Privacy team"
    assert retired.retired_at is not None
    assert retired.certificate_jws == token
    with pytest.raises(VaultIntegrityError):
        keys.open_snapshot_key(retired)
    check = _verify(app, token)
    assert check.valid, check.reason
    claims = check.claims
    assert claims["type"] == "training-retirement-certificate"
    assert claims["snapshot"]["id"] == snapshot.public_id
    assert claims["snapshot"]["number"] == snapshot.number
    assert claims["snapshot"]["purpose"] == "assistant"
    assert claims["retired"]["by"] == "Privacy team"
    assert claims["destroyed"]["snapshotKey"] is True
    assert sorted(item["path"] for item in claims["destroyed"]["files"]) == sorted(FILES)
    assert [(item["id"], item["version"]) for item in claims["models"]] == [
        (model.public_id, "3")]
    assert "sub-alex" not in token and "Alex" not in str(claims)
    # Each person it held (with records included) sees it in their access log.
    entry = db.scalar(select(AuditEntry).where(AuditEntry.what == "training.retire"))
    assert entry is not None
    subjects = set(db.scalars(select(AuditSubject.person_id)
                              .where(AuditSubject.entry_id == entry.id)))
    assert subjects == {alex.id, blake.id}
    [event] = db.scalars(select(SnapshotEvent))
    assert event.kind.value == "retired"


def test_a_tampered_certificate_does_not_verify(app: Flask, ctx: None) -> None:
    training = make_client()
    snapshot = create_snapshot(training, {(create_person("sub-alex").id, KEYS): 1})
    token = lineage.retire_snapshot(snapshot, by="tests")
    commit()
    header, payload, signature = token.split(".")
    forged = ".".join((header, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"),
                       signature))
    assert not _verify(app, forged).valid


def test_a_second_retirement_is_refused_and_changes_nothing(app: Flask, ctx: None) -> None:
    training = make_client()
    snapshot = create_snapshot(training, {(create_person("sub-alex").id, KEYS): 1})
    first = lineage.retire_snapshot(snapshot, by="First")
    commit()
    before = _fresh(snapshot.id)
    retired_at = before.retired_at
    with pytest.raises(lineage.RetirementRefused) as refused:
        lineage.retire_snapshot(before, by="Second")
    assert refused.value.code == "already_retired"
    assert "already retired" in refused.value.message
    assert "nothing was changed" in refused.value.message
    db.rollback()
    after = _fresh(snapshot.id)
    assert (after.retired_by, after.retired_at, after.certificate_jws) == (
        "First", retired_at, first)
    assert len(list(db.scalars(select(SnapshotEvent)))) == 1


def test_a_snapshot_still_being_built_is_not_retired(app: Flask, ctx: None) -> None:
    training = make_client()
    snapshot = create_snapshot(training, {(create_person("sub-alex").id, KEYS): 1},
                               state=SnapshotState.BUILDING)
    commit()
    with pytest.raises(lineage.RetirementRefused) as refused:
        lineage.retire_snapshot(snapshot, by="tests")
    assert refused.value.code == "still_building"
    db.rollback()
    assert _fresh(snapshot.id).state is SnapshotState.BUILDING
    keys.open_snapshot_key(_fresh(snapshot.id))


def test_the_retire_command_by_number_or_public_id(app: Flask, ctx: None) -> None:
    training = make_client()
    alex = create_person("sub-alex")
    by_number = create_snapshot(training, {(alex.id, KEYS): 1}, files=FILES[:1])
    by_id = create_snapshot(training, {(alex.id, KEYS): 1})
    commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["training", "retire", str(by_number.number)])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert _verify(app, token).valid
    assert not folder_of(by_number).exists()
    result = runner.invoke(args=["training", "retire", by_id.public_id, "--by", "Ops"])
    assert result.exit_code == 0, result.output
    assert _fresh(by_id.id).retired_by == "Ops"
    again = runner.invoke(args=["training", "retire", by_id.public_id])
    assert again.exit_code == 1
    assert "already retired" in again.stderr
    unknown = runner.invoke(args=["training", "retire", "999"])
    assert unknown.exit_code == 2
    assert "No training dataset '999'" in unknown.stderr
    entry = db.scalar(select(AuditEntry).where(AuditEntry.what == "training.retire",
                                               AuditEntry.actor_name == "Ops"))
    assert entry is not None and entry.actor_role.value == "operator"


@pytest.fixture
def max_age_60(settings: dict[str, Any]) -> None:
    settings["TRAINING_SNAPSHOT_MAX_AGE_DAYS"] = 60


def test_retire_expired_honours_the_setting(max_age_60: None, app: Flask, ctx: None) -> None:
    training = make_client()
    alex = create_person("sub-alex")
    now = utcnow()
    old = create_snapshot(training, {(alex.id, KEYS): 1}, requested_at=now - 61 * DAY)
    old_failed = create_snapshot(training, {(alex.id, KEYS): 1}, requested_at=now - 90 * DAY,
                                 state=SnapshotState.FAILED)
    young = create_snapshot(training, {(alex.id, KEYS): 1}, requested_at=now - 59 * DAY)
    commit()
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["training", "retire-expired", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"Would retire 2 training datasets older than 60 days: {old.number}, " \
           f"{old_failed.number}." in dry.output
    assert _fresh(old.id).state is SnapshotState.READY
    result = runner.invoke(args=["training", "retire-expired"])
    assert result.exit_code == 0, result.output
    assert {_fresh(found.id).state for found in (old, old_failed)} == {SnapshotState.RETIRED}
    assert _fresh(young.id).state is SnapshotState.READY
    assert _fresh(old.id).retired_by == "portal training retire-expired"
    assert "No training dataset is older than 60 days." in runner.invoke(
        args=["training", "retire-expired"]).output


@pytest.fixture
def max_age_0(settings: dict[str, Any]) -> None:
    settings["TRAINING_SNAPSHOT_MAX_AGE_DAYS"] = 0


def test_retire_expired_does_nothing_when_the_setting_is_zero(
        max_age_0: None, app: Flask, ctx: None) -> None:
    training = make_client()
    ancient = create_snapshot(training, {(create_person("sub-alex").id, KEYS): 1},
                              requested_at=utcnow() - 3000 * DAY)
    commit()
    assert lineage.retire_expired_snapshots() == []
    result = app.test_cli_runner().invoke(args=["training", "retire-expired"])
    assert "never retired by age" in result.output
    assert _fresh(ancient.id).state is SnapshotState.READY


def test_the_default_max_age_is_90_days_and_bad_values_are_refused(tmp_path: Path) -> None:
    good = {"PORTAL_SECRET_KEY": "s" * 40,
            "PORTAL_MASTER_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "PORTAL_OIDC_ISSUER": "https://login.example.com/realms/staff",
            "PORTAL_OIDC_CLIENT_ID": "consent-portal",
            "PORTAL_OIDC_CLIENT_SECRET": "client-secret-value"}
    assert load_settings(tmp_path, good).TRAINING_SNAPSHOT_MAX_AGE_DAYS == 90
    assert load_settings(tmp_path, good | {"PORTAL_TRAINING_SNAPSHOT_MAX_AGE_DAYS": "0"}
                         ).TRAINING_SNAPSHOT_MAX_AGE_DAYS == 0
    for bad in ("-1", "100000", "soon"):
        with pytest.raises(ConfigError, match="TRAINING_SNAPSHOT_MAX_AGE_DAYS"):
            load_settings(tmp_path, good | {"PORTAL_TRAINING_SNAPSHOT_MAX_AGE_DAYS": bad})
