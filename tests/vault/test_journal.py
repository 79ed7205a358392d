"""The shred journal: a deletion stays done after a database backup taken before it is restored."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.audit.models import AuditEntry, AuditSubject
from portal.audit.service import access_log, detail_of
from portal.auth.models import Person
from portal.db import commit, db, get_engine
from portal.requests import service as requests
from portal.requests.models import DeletionScope
from portal.vault.erasure import destroy_data_keys, key_still_opens, live_key_ids
from portal.vault.journal import read_journal
from portal.vault.models import CollectedBatch
from portal.vault.reading import read_own_batches
from tests.support.batches import keystroke_events, recent
from tests.support.config import portal_settings
from tests.support.factories import create_person, grant
from tests.support.identity import DPO_GROUPS, ISSUER
from tests.support.postgres import PostgresCluster, _binary
from tests.support.vault import ingest


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "outside-the-database" / "shred-journal.jsonl"


@pytest.fixture
def settings(database_url: str, journal: Path) -> dict[str, Any]:
    journal.parent.mkdir()
    return {**portal_settings(database_url, ISSUER, "http://localhost"),
            "SHRED_JOURNAL": str(journal)}


Backup = Callable[[], Callable[[], None]]


@pytest.fixture
def backup(app: Flask, backend: str, database_url: str, tmp_path: Path,
           request: pytest.FixtureRequest) -> Backup:
    """Return a function that backs the database up and returns the function restoring it."""

    def take() -> Callable[[], None]:
        get_engine(app).dispose()
        if backend == "sqlite":
            live = Path(database_url.removeprefix("sqlite:///"))
            copy = tmp_path / "backup.sqlite3"
            shutil.copyfile(live, copy)

            def restore_file() -> None:
                get_engine(app).dispose()
                shutil.copyfile(copy, live)

            return restore_file
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        name = database_url.rpartition("/")[2]
        dump = cluster.folder / f"{name}.dump"  # where the cluster's owner may write
        libpq = cluster.url(name, driver=False)
        cluster._run(_binary("pg_dump"), "--format=custom", f"--file={dump}", libpq)

        def restore_dump() -> None:
            get_engine(app).dispose()
            cluster.drop_database(name)
            cluster.create_database(name)
            cluster._run(_binary("pg_restore"), "--exit-on-error", f"--dbname={libpq}",
                         str(dump))

        return restore_dump

    return take


def held(person_id: int) -> list[str]:
    """Return what the person can read of their keystrokes (the typed texts)."""
    subject = db.get(Person, person_id)
    assert subject is not None
    return [event["keys"] for batch in read_own_batches(subject, "keystrokes")
            for event in batch.events]


def deletions_logged() -> list[dict[str, Any]]:
    """Return the audit log's deletion entries ("requests.execute"), oldest first."""
    return [{"actor_name": entry.actor_name, "actor_role": str(entry.actor_role),
             "action": str(entry.action),
             "subjects": list(db.scalars(select(AuditSubject.person_id)
                                         .where(AuditSubject.entry_id == entry.id))),
             "detail": detail_of(entry)}
            for entry in db.scalars(select(AuditEntry).where(AuditEntry.what == "requests.execute")
                                    .order_by(AuditEntry.id))]


def test_a_restored_backup_is_shredded_again_by_the_replay(
        app: Flask, catalog: int, backup: Backup, journal: Path) -> None:
    with app.app_context():
        alex, dana = create_person("alex"), create_person("dana", groups=DPO_GROUPS)
        grant(alex, "keystrokes")
        ingest(alex, "keystrokes", keystroke_events("secret-typed", start=recent(30)))
        commit()
        alex_id, dana_id = alex.id, dana.id
        key_ids = live_key_ids(alex_id, "keystrokes")
        assert held(alex_id) == ["secret-typed"] and len(key_ids) == 1
    restore = backup()  # the nightly backup, taken before the employee's request

    with app.app_context():
        alex, dana = db.get(Person, alex_id), db.get(Person, dana_id)
        assert alex is not None and dana is not None
        deletion = requests.submit_deletion_request(alex, scope=DeletionScope.CATEGORIES,
                                                    categories=["keystrokes"])
        requests.approve_deletion(deletion, dpo=dana)
        commit()
        requests.execute_deletion(deletion, actor=dana)
        reference = deletion.reference
        assert held(alex_id) == []
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == 1
    assert {key: lines[0][key] for key in ("key_id", "person_id", "category", "request")} == {
        "key_id": key_ids[0], "person_id": alex_id, "category": "keystrokes",
        "request": reference}
    assert lines[0]["destroyed_at"].endswith("Z")

    restore()  # the disaster: the database comes back from that backup
    with app.app_context():
        assert held(alex_id) == ["secret-typed"]  # what a restore without the replay means

    runner = app.test_cli_runner()
    replayed = runner.invoke(args=["vault", "replay-shreds", str(journal)])
    assert replayed.exit_code == 0, replayed.output
    assert (f"Destroyed again key {key_ids[0]} (person {alex_id}, keystrokes, request "
            f"{reference}); deleted 1 batches it sealed.") in replayed.output
    assert "1 keys in the journal: 1 destroyed again, 0 already destroyed" in replayed.output
    with app.app_context():
        assert held(alex_id) == []
        assert not key_still_opens(key_ids[0])
        assert db.scalar(select(func.count()).select_from(CollectedBatch)) == 0
        # The restore took the deletion's audit entry back; the replay writes it again, as
        # the deletion path does, and Alex sees it in their access log.
        assert deletions_logged() == [{
            "actor_name": "portal vault replay-shreds", "actor_role": "operator",
            "action": "delete", "subjects": [alex_id],
            "detail": {"request": reference, "category": "keystrokes", "batches": 1,
                       "key": key_ids[0], "first_destroyed_at": lines[0]["destroyed_at"]}}]
        assert [entry.what for entry in access_log(alex_id).entries] == ["requests.execute"]
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output

    again = runner.invoke(args=["vault", "replay-shreds", str(journal)])
    assert again.exit_code == 0
    assert "1 keys in the journal: 0 destroyed again, 1 already destroyed" in again.output
    assert "Destroyed again key" not in again.output
    with app.app_context():
        assert len(deletions_logged()) == 1  # nothing destroyed, nothing logged


def test_only_committed_destructions_are_journalled(app: Flask, catalog: int,
                                                    journal: Path) -> None:
    with app.app_context():
        alex = create_person("alex")
        grant(alex, "keystrokes")
        ingest(alex, "keystrokes", keystroke_events("kept", start=recent(30)))
        commit()
        assert destroy_data_keys(alex.id, "keystrokes") == 1
        db.rollback()  # the deletion failed after shredding: nothing happened
        assert not journal.exists()
        assert live_key_ids(alex.id, "keystrokes")
        assert destroy_data_keys(alex.id, "keystrokes") == 1
        commit()
    entries, unreadable = read_journal(journal)
    assert [entry.category for entry in entries] == ["keystrokes"] and unreadable == 0
    assert entries[0].request is None  # no deletion request: shredded by another caller


def test_a_line_cut_short_is_skipped_and_reported(app: Flask, catalog: int,
                                                  journal: Path) -> None:
    journal.write_text('{"key_id": "00000000-0000-0000-0000-000000000000", "person_id": 1, '
                       '"category": "keystrokes", "destroyed_at": "2026-01-01T00:00:00Z", '
                       '"request": null}\n{"key_id": "1234')
    replayed = app.test_cli_runner().invoke(args=["vault", "replay-shreds", str(journal)])
    assert replayed.exit_code == 0, replayed.output
    assert "1 keys in the journal: 0 destroyed again, 0 already destroyed, 1 not in this " \
           "database." in replayed.output
    assert "1 lines of the journal could not be read" in replayed.output
