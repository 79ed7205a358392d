"""Crypto-shredding, deleting batches, and the retention purge."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy import select, update

from portal.audit.models import AuditRole
from portal.audit.service import detail_of, entries_concerning
from portal.db import commit, db
from portal.vault import crypto
from portal.vault.erasure import delete_batches, destroy_data_keys, purge_expired
from portal.vault.keys import configured_master_key
from portal.vault.models import CollectedBatch, DataKey
from portal.vault.reading import held_summary, read_own_batches
from tests.support.batches import iso, keystroke_events, recent
from tests.support.factories import create_person, grant
from tests.support.vault import ingest, stored

pytestmark = pytest.mark.usefixtures("ctx")


def test_shredding_makes_a_copy_taken_before_unreadable() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    grant(alex, "pointer")
    batch = ingest(alex, "keystrokes", keystroke_events("shred me"))
    ingest(alex, "pointer", [{"t": iso(recent(1)), "x": 3, "y": 4, "screen": 1, "app": "Mail"}])
    commit()
    # What a copy of the tables (a replica, a dump, a stolen disk) holds before the erasure.
    row = db.scalars(select(CollectedBatch)
                     .where(CollectedBatch.public_id == batch.public_id)).one()
    copied = (row.nonce, row.ciphertext, row.person_id, row.category_key, row.public_id)
    master = configured_master_key()

    def open_copy() -> bytes:
        key = db.scalars(select(DataKey).where(DataKey.id == row.data_key_id)
                         .execution_options(populate_existing=True)).one()
        material = crypto.unwrap_data_key(master, key.wrapped_key, key_id=key.id,
                                          person_id=key.person_id,
                                          category_key=key.category_key)
        return crypto.open_batch(material, copied[0], copied[1], batch_id=copied[4],
                                 person_id=copied[2], category_key=copied[3], max_size=1 << 20)

    assert b"shred me" in open_copy()
    assert destroy_data_keys(alex.id, "keystrokes") == 1
    commit()
    with pytest.raises(crypto.DecryptionFailed):
        open_copy()
    key = db.get(DataKey, row.data_key_id)
    assert key is not None and key.wrapped_key == b"" and key.destroyed
    # The person's other category is untouched; the shredded one is gone from every view.
    assert [b.category_key for b in read_own_batches(alex)] == ["pointer"]
    assert set(held_summary(alex.id)) == {"pointer"}
    assert destroy_data_keys(alex.id, "keystrokes") == 0


def test_after_shredding_new_batches_get_a_new_key() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    ingest(alex, "keystrokes", keystroke_events("before"))
    destroy_data_keys(alex.id, "keystrokes")
    delete_batches(alex.id, "keystrokes")
    ingest(alex, "keystrokes", keystroke_events("after"))
    commit()
    keys = db.scalars(select(DataKey).order_by(DataKey.created_at)).all()
    assert [key.destroyed for key in keys] == [True, False]
    assert [b.events[0]["keys"] for b in read_own_batches(alex)] == ["after"]


def test_delete_batches_by_person_category_and_period() -> None:
    alex, bea = create_person("sub-alex", email=False), create_person("sub-bea", email=False)
    for person in (alex, bea):
        grant(person, "keystrokes")
        grant(person, "pointer")
    old = ingest(alex, "keystrokes", keystroke_events("old", start=recent(300)))
    ingest(alex, "keystrokes", keystroke_events("new", start=recent(10)))
    ingest(alex, "pointer", [{"t": iso(recent(200)), "x": 1, "y": 1, "screen": 1, "app": "A"}])
    ingest(bea, "keystrokes", keystroke_events("bea"))
    commit()

    assert delete_batches(alex.id, "keystrokes", until=recent(200)) == 1
    assert old.public_id not in {b.public_id for b in read_own_batches(alex)}
    assert delete_batches(alex.id) == 2
    commit()
    assert list(read_own_batches(alex)) == []
    assert len(list(read_own_batches(bea))) == 1


def _age(public_id: str, days: float) -> None:
    """Move a batch's collection window into the past (the dates are metadata, not content)."""
    end = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    db.execute(update(CollectedBatch).where(CollectedBatch.public_id == public_id)
               .values(collected_from=end - dt.timedelta(hours=1), collected_to=end))
    commit()


def test_purge_removes_only_batches_past_their_categorys_retention() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    expired = ingest(alex, "keystrokes", keystroke_events("31 days old"))
    kept = ingest(alex, "keystrokes", keystroke_events("29 days old"))
    review = ingest(alex, "performance", [{"t": iso(recent(1)), "review_period": "2025-H2",
                                           "rating": "meets", "reviewer_id": "p-a81d44c09e17",
                                           "summary": "Fine."}], dss_level=4)
    commit()
    _age(expired.public_id, 31)
    _age(kept.public_id, 29)
    _age(review.public_id, 400)  # kept for 730 days

    report = purge_expired(dry_run=True)
    assert [(p.category_key, p.batches, p.events) for p in report] == [("keystrokes", 1, 1)]
    assert stored()[0] == 3
    report = purge_expired()
    commit()
    assert [(p.category_key, p.batches, p.retention_days) for p in report] == [
        ("keystrokes", 1, 30)]
    assert {b.public_id for b in read_own_batches(alex)} == {kept.public_id, review.public_id}
    assert purge_expired() == []


def test_the_purge_command_says_what_it_removed(app: Flask) -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    grant(alex, "pointer")
    for days in (35, 40):
        _age(ingest(alex, "keystrokes", keystroke_events("x")).public_id, days)
    _age(ingest(alex, "pointer", [{"t": iso(recent(1)), "x": 1, "y": 1, "screen": 1,
                                   "app": "A"}]).public_id, 100)
    ingest(alex, "pointer", [{"t": iso(recent(1)), "x": 1, "y": 1, "screen": 1, "app": "A"}])
    commit()
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["vault", "purge-expired", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    oldest = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40, hours=1)).date().isoformat()
    assert f"Would remove 2 batches (2 events) of keystrokes kept 30 days: collected {oldest}" \
        in dry.output
    assert "Would remove 1 batch (1 event) of pointer kept 90 days" in dry.output
    assert "Would remove 3 batches in all." in dry.output
    assert stored()[0] == 4

    done = runner.invoke(args=["vault", "purge-expired"])
    assert done.exit_code == 0, done.output
    assert "Removed 3 batches in all." in done.output
    db.rollback()
    assert stored()[0] == 1
    # Each category's purge is in the audit log, naming whose data went; a dry run is not.
    entries = [(entry.what, entry.actor_role, detail_of(entry)["category"])
               for entry in entries_concerning(alex.id)]
    assert sorted(entries) == [("vault.purge_expired", AuditRole.OPERATOR, "keystrokes"),
                               ("vault.purge_expired", AuditRole.OPERATOR, "pointer")]
    again = runner.invoke(args=["vault", "purge-expired"])
    assert "Nothing is past its retention period." in again.output
