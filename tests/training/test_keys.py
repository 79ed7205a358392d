"""A snapshot's key: wrapped by the master key, moved by a rotation, destroyed for good."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from portal import create_app
from portal.catalog.notices import current_notice
from portal.db import commit, db, get_engine
from portal.training.keys import destroy_snapshot_key, new_snapshot_key, open_snapshot_key
from portal.training.models import TrainingClient, TrainingSnapshot
from portal.vault.crypto import MasterKey
from portal.vault.errors import VaultIntegrityError
from tests.support.batches import recent
from tests.support.config import TEST_MASTER_KEY

pytestmark = pytest.mark.usefixtures("ctx")


def _snapshot(number: int) -> TrainingSnapshot:
    client = db.scalar(select(TrainingClient)) or TrainingClient(
        name="trainer", purposes=["assistant_workflows"], scopes=["snapshots"],
        token_hash="0" * 64)
    notice = current_notice()
    assert notice is not None
    snapshot = TrainingSnapshot(public_id=f"00000000-0000-4000-8000-{number:012d}",
                                number=number, client=client, purpose_key="assistant_workflows",
                                categories=["pointer"], collected_from=recent(120),
                                collected_to=recent(60), max_dss_level=2,
                                notice_version_id=notice.id)
    new_snapshot_key(snapshot)
    db.add(snapshot)
    db.flush()
    return snapshot


def test_pseudonyms_are_keyed_per_snapshot() -> None:
    first, second = _snapshot(1), _snapshot(2)
    one, two = open_snapshot_key(first), open_snapshot_key(second)
    assert one.pseudonym(7) == open_snapshot_key(first).pseudonym(7)
    assert one.pseudonym(7) != two.pseudonym(7)
    assert one.pseudonym(7) != one.pseudonym(8)
    assert one.pseudonym(7).startswith("s-") and len(one.pseudonym(7)) == 18
    # The file key and the pseudonym key are not the same key.
    assert one.file_key != one._pseudonym_key


def test_a_destroyed_key_opens_nothing() -> None:
    snapshot = _snapshot(1)
    destroy_snapshot_key(snapshot)
    assert snapshot.wrapped_key == b""
    with pytest.raises(VaultIntegrityError, match="was retired"):
        open_snapshot_key(snapshot)


def test_a_key_moved_to_another_snapshot_does_not_open() -> None:
    first, second = _snapshot(1), _snapshot(2)
    second.wrapped_key = first.wrapped_key
    with pytest.raises(VaultIntegrityError, match="does not open"):
        open_snapshot_key(second)


def test_a_master_key_rotation_rewraps_snapshot_keys_too(
        app: Flask, settings: dict[str, Any], tmp_path: Path) -> None:
    snapshot, retired = _snapshot(1), _snapshot(2)
    destroy_snapshot_key(retired)
    commit()
    pseudonym = open_snapshot_key(snapshot).pseudonym(42)
    new_key = base64.b64encode(os.urandom(32)).decode()
    key_file = tmp_path / "new"
    key_file.write_text(new_key + "\n")
    result = app.test_cli_runner().invoke(
        args=["vault", "rotate-master-key", "--new-key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    assert "Also re-wrapped, training snapshot keys: 1." in result.output
    db.expire_all()
    assert snapshot.master_key_id == MasterKey.from_base64(new_key).key_id
    assert retired.wrapped_key == b""
    assert retired.master_key_id == MasterKey.from_base64(TEST_MASTER_KEY).key_id
    # The old key no longer opens it; the new one gives the same key (same pseudonyms).
    with pytest.raises(VaultIntegrityError, match="master key"):
        open_snapshot_key(snapshot)
    rotated = create_app({**settings, "MASTER_KEY": new_key})
    try:
        with rotated.app_context():
            moved = db.get(TrainingSnapshot, snapshot.id)
            assert moved is not None
            assert open_snapshot_key(moved).pseudonym(42) == pseudonym
    finally:
        get_engine(rotated).dispose()
