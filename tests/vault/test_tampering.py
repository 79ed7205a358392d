"""Stored content opens only in its own row, for its own person and category, with the right key."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from portal import create_app
from portal.db import commit, db, get_engine
from portal.vault.crypto import MasterKey
from portal.vault.errors import VaultIntegrityError
from portal.vault.models import CollectedBatch, DataKey
from portal.vault.reading import read_own_batches
from tests.support.batches import keystroke_events
from tests.support.factories import create_person, grant
from tests.support.vault import ingest

pytestmark = pytest.mark.usefixtures("ctx")


def _batch(public_id: str) -> CollectedBatch:
    return db.scalars(select(CollectedBatch).where(CollectedBatch.public_id == public_id)
                      .execution_options(populate_existing=True)).one()


def _copy_content(source: str, target: str) -> None:
    """Overwrite ``target``'s nonce and ciphertext with ``source``'s, as an attacker with SQL."""
    original = _batch(source)
    db.execute(update(CollectedBatch).where(CollectedBatch.public_id == target)
               .values(nonce=original.nonce, ciphertext=original.ciphertext))
    commit()


def test_ciphertext_moved_to_another_row_of_the_same_person_does_not_open() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    first = ingest(alex, "keystrokes", keystroke_events("first"))
    second = ingest(alex, "keystrokes", keystroke_events("second"))
    commit()
    _copy_content(first.public_id, second.public_id)
    with pytest.raises(VaultIntegrityError, match=second.public_id):
        list(read_own_batches(alex))


def test_ciphertext_moved_to_another_person_does_not_open() -> None:
    alex, bea = create_person("sub-alex", email=False), create_person("sub-bea", email=False)
    for person in (alex, bea):
        grant(person, "keystrokes")
    alex_batch = ingest(alex, "keystrokes", keystroke_events("alex's secret"))
    bea_batch = ingest(bea, "keystrokes", keystroke_events("bea's"))
    commit()
    _copy_content(alex_batch.public_id, bea_batch.public_id)
    with pytest.raises(VaultIntegrityError):
        list(read_own_batches(bea))


def test_a_row_relabelled_to_another_category_does_not_open_even_under_the_same_key() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    batch = ingest(alex, "keystrokes", keystroke_events("typed"))
    commit()
    db.execute(update(CollectedBatch).where(CollectedBatch.public_id == batch.public_id)
               .values(category_key="pointer"))
    commit()
    with pytest.raises(VaultIntegrityError, match="category pointer"):
        list(read_own_batches(alex))


def test_wrapped_keys_swapped_between_people_do_not_open() -> None:
    alex, bea = create_person("sub-alex", email=False), create_person("sub-bea", email=False)
    for person in (alex, bea):
        grant(person, "keystrokes")
    ingest(alex, "keystrokes", keystroke_events("alex"))
    ingest(bea, "keystrokes", keystroke_events("bea"))
    commit()
    alex_key, bea_key = (db.scalars(select(DataKey).where(DataKey.person_id == person.id)).one()
                         for person in (alex, bea))
    alex_wrap, bea_wrap = alex_key.wrapped_key, bea_key.wrapped_key
    for key, wrap in ((alex_key, bea_wrap), (bea_key, alex_wrap)):
        db.execute(update(DataKey).where(DataKey.id == key.id).values(wrapped_key=wrap))
    commit()
    for person in (alex, bea):
        with pytest.raises(VaultIntegrityError, match="does not open"):
            list(read_own_batches(person))


@pytest.fixture
def other_master_app(settings: dict[str, Any]) -> Iterator[Flask]:
    """The same database, served with another master key."""
    other = base64.b64encode(os.urandom(32)).decode()
    application = create_app({**settings, "MASTER_KEY": other})
    yield application
    get_engine(application).dispose()


def test_the_wrong_master_key_opens_nothing(app: Flask, other_master_app: Flask) -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    ingest(alex, "keystrokes", keystroke_events("kept"))
    commit()
    with other_master_app.app_context():
        with pytest.raises(VaultIntegrityError, match="wrapped by master key"):
            list(read_own_batches(alex))
        # Even with the fingerprint forged to match, AES-GCM refuses the wrong key.
        forged = MasterKey.from_base64(other_master_app.config["MASTER_KEY"]).key_id
        db.execute(update(DataKey).values(master_key_id=forged))
        with pytest.raises(VaultIntegrityError, match="does not open"):
            list(read_own_batches(alex))
        # Nor can it add to the person's data under a key it cannot open.
        db.rollback()
        with pytest.raises(VaultIntegrityError):
            ingest(alex, "keystrokes", keystroke_events("more"))
