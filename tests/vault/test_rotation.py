"""Rotating the master key re-wraps data keys and leaves every ciphertext as it was."""

from __future__ import annotations

import base64
import os
from pathlib import Path
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
from tests.support.batches import iso, keystroke_events, recent
from tests.support.config import TEST_MASTER_KEY
from tests.support.factories import create_person, grant
from tests.support.vault import ingest

pytestmark = pytest.mark.usefixtures("ctx")


def _snapshot() -> tuple[dict[str, tuple[bytes, bytes]], dict[str, tuple[bytes, str]]]:
    db.expire_all()
    batches = {b.public_id: (b.nonce, b.ciphertext) for b in db.scalars(select(CollectedBatch))}
    keys = {k.id: (k.wrapped_key, k.master_key_id) for k in db.scalars(select(DataKey))}
    return batches, keys


def _key_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    return str(path)


def test_rotation_rewraps_every_live_key_and_touches_no_ciphertext(
        app: Flask, settings: dict[str, Any], tmp_path: Path) -> None:
    alex, bea = create_person("sub-alex", email=False), create_person("sub-bea", email=False)
    for person in (alex, bea):
        grant(person, "keystrokes")
        ingest(person, "keystrokes", keystroke_events(f"{person.subject} typed this"))
    ingest(alex, "sensitivity_ratings", [{"t": iso(recent(1)), "document_id": "doc-7c2e91f0b4a3",
                                          "dss_level": 3, "classifier": "dss-classifier 3.2"}])
    grant(alex, "pointer")
    ingest(alex, "pointer", [{"t": iso(recent(1)), "x": 1, "y": 1, "screen": 1, "app": "A"}])
    db.execute(update(DataKey).where(DataKey.category_key == "pointer")
               .values(wrapped_key=b"", destroyed_at=recent(0)))
    commit()
    expected = {person.subject: [b.events for b in read_own_batches(person)]
                for person in (alex, bea)}
    batches_before, keys_before = _snapshot()
    new_key = base64.b64encode(os.urandom(32)).decode()
    new_id = MasterKey.from_base64(new_key).key_id
    old_id = MasterKey.from_base64(TEST_MASTER_KEY).key_id

    result = app.test_cli_runner().invoke(args=[
        "vault", "rotate-master-key", "--new-key-file", _key_file(tmp_path, "new", new_key)])
    assert result.exit_code == 0, result.output
    assert (f"Re-wrapped 3 data keys from master key {old_id} to {new_id}; 0 were already "
            "under the new key; 1 destroyed key has nothing left to wrap. No ciphertext was "
            "touched.") in result.output
    assert "set PORTAL_MASTER_KEY to the new key" in result.output

    batches_after, keys_after = _snapshot()
    assert batches_after == batches_before
    for key_id, (wrapped, master_id) in keys_after.items():
        if wrapped:
            assert master_id == new_id and wrapped != keys_before[key_id][0]
        else:
            assert master_id == old_id
    # The portal, still configured with the old key, no longer opens anything.
    with pytest.raises(VaultIntegrityError, match="finish the master-key rotation"):
        list(read_own_batches(alex))

    rotated = create_app({**settings, "MASTER_KEY": new_key})
    try:
        with rotated.app_context():
            assert {person.subject: [b.events for b in read_own_batches(person)]
                    for person in (alex, bea)} == expected
            # Running it again with the new key configured is refused: nothing to do.
            same = rotated.test_cli_runner().invoke(args=[
                "vault", "rotate-master-key", "--new-key-file",
                _key_file(tmp_path, "same", new_key)])
            assert same.exit_code == 1
            assert "the new master key is the one already configured" in same.output
    finally:
        get_engine(rotated).dispose()

    # Interrupted and run again with the old key still configured: it finds nothing left.
    again = app.test_cli_runner().invoke(args=[
        "vault", "rotate-master-key", "--new-key-file", _key_file(tmp_path, "again", new_key)])
    assert again.exit_code == 0, again.output
    assert "Re-wrapped 0 data keys" in again.output and "3 were already" in again.output


def test_rotation_refuses_a_vault_with_keys_under_an_unknown_master(
        app: Flask, tmp_path: Path) -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    ingest(alex, "keystrokes", keystroke_events("x"))
    db.execute(update(DataKey).values(master_key_id="0123456789abcdef"))
    commit()
    _, before = _snapshot()
    result = app.test_cli_runner().invoke(args=[
        "vault", "rotate-master-key", "--new-key-file",
        _key_file(tmp_path, "new", base64.b64encode(os.urandom(32)).decode())])
    assert result.exit_code == 1
    assert "1 by 0123456789abcdef; nothing was changed" in result.output
    assert _snapshot()[1] == before


def test_rotation_refuses_a_malformed_key(app: Flask, tmp_path: Path) -> None:
    result = app.test_cli_runner().invoke(args=[
        "vault", "rotate-master-key", "--new-key-file", _key_file(tmp_path, "bad", "c2hvcnQ=")])
    assert result.exit_code == 2
    assert "The new key cannot be used: a master key must be base64 of 32 random bytes" \
        in result.output
    assert "c2hvcnQ=" not in result.output
