"""The signed manifest of a snapshot: its claims, and checking it (and the files) offline."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from joserfc.jwk import ECKey
from sqlalchemy import select

from portal.db import commit, db
from portal.training.manifest import (
    ManifestFile,
    manifest_files,
    seal_snapshot,
    verify_files,
    verify_manifest,
)
from portal.training.models import PartState, SnapshotPart, TrainingSnapshot
from tests.support.training_files import decrypt_snapshot, small_sealable_snapshot


@pytest.fixture
def sealed(app: Flask, catalog: int, tmp_path: Path) -> tuple[str, Path]:
    """A sealed snapshot's manifest (compact JWS) and the folder its files were downloaded to."""
    with app.app_context():
        snapshot, key = small_sealable_snapshot()
        token = seal_snapshot(snapshot, key)
        commit()
        folder = tmp_path / "download"
        decrypt_snapshot(snapshot, key, folder)
    return token, folder


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload)
                                                                                   % 4)))
    return claims


def _verify(runner: FlaskCliRunner, path: Path, *more: str) -> tuple[int, str]:
    result = runner.invoke(args=["training", "verify", str(path), *more])
    return result.exit_code, result.output


def test_the_manifest_states_counts_notice_and_every_file(app: Flask, sealed: tuple[str, Path]
                                                          ) -> None:
    token, folder = sealed
    claims = _claims(token)
    assert claims["type"] == "training-manifest"
    assert claims["snapshot"]["number"] == 1
    assert claims["snapshot"]["categories"] == ["keystrokes", "conversations"]
    assert claims["snapshot"]["maxDssLevel"] == 2
    assert claims["noticeVersions"] == [1]
    assert claims["counts"]["included"] == 12
    assert claims["counts"]["rows"] == {"keystrokes": 8, "conversations": 4}
    assert claims["counts"]["excluded"]["no_consent"] == 40
    assert claims["counts"]["excluded"]["above_max_dss"] == 0
    assert [item["path"] for item in claims["files"]] == [
        "keystrokes/part-00001.parquet", "keystrokes/part-00002.parquet",
        "conversations/part-00003.parquet", "croissant.json"]
    for item in claims["files"]:
        assert (folder / item["path"]).stat().st_size == item["size"]
    assert verify_files(claims, folder) == []
    with app.app_context():
        snapshot = db.scalars(select(TrainingSnapshot)).one()
        assert snapshot.manifest_jws == token
        assert manifest_files(snapshot) == [ManifestFile(**item) for item in claims["files"]]
        check = verify_manifest(token)
        assert check.valid, check.reason
        assert check.summary.startswith("training dataset 1 (")


def test_portal_training_verify_checks_signature_and_files(app: Flask, sealed: tuple[str, Path],
                                                           tmp_path: Path) -> None:
    token, folder = sealed
    runner = app.test_cli_runner()
    manifest = tmp_path / "manifest.jws"
    manifest.write_text(token)
    code, output = _verify(runner, manifest)
    assert code == 0, output
    assert output.startswith("VALID: training dataset 1 (")
    assert "12 records included, 45 left out, 4 files, notice version 1" in output

    jwks = tmp_path / "jwks.json"
    jwks.write_text(app.test_client().get("/.well-known/jwks.json").get_data(as_text=True))
    code, output = _verify(runner, manifest, "--key", str(jwks), "--files", str(folder))
    assert code == 0, output
    assert "all 4 files match" in output
    # The receipts command knows this kind of document too.
    result = runner.invoke(args=["receipts", "verify", str(manifest)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("VALID: training dataset 1 (")


def test_an_altered_file_fails(app: Flask, sealed: tuple[str, Path], tmp_path: Path) -> None:
    token, folder = sealed
    manifest = tmp_path / "manifest.jws"
    manifest.write_text(token)
    part = folder / "keystrokes" / "part-00002.parquet"
    content = bytearray(part.read_bytes())
    content[100] ^= 0x01
    part.write_bytes(bytes(content))
    (folder / "croissant.json").unlink()
    code, output = _verify(app.test_cli_runner(), manifest, "--files", str(folder))
    assert code == 1
    assert output.splitlines() == [
        "INVALID: the manifest is valid, but the files are not the ones it lists:",
        "  keystrokes/part-00002.parquet: its SHA-256 differs from the manifest's",
        "  croissant.json: missing"]


def test_an_altered_manifest_fails(app: Flask, sealed: tuple[str, Path], tmp_path: Path) -> None:
    token, _ = sealed
    header, _, signature = token.split(".")
    claims = _claims(token)
    claims["counts"]["excluded"]["no_consent"] = 0
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    manifest = tmp_path / "manifest.jws"
    manifest.write_text(f"{header}.{forged}.{signature}")
    runner = app.test_cli_runner()
    code, output = _verify(runner, manifest)
    assert code == 1
    assert output.startswith("INVALID: the signature does not verify")

    other = tmp_path / "other-key.json"
    other.write_text(json.dumps(ECKey.generate_key("P-256", private=False).as_dict()))
    manifest.write_text(token)
    code, output = _verify(runner, manifest, "--key", str(other))
    assert (code, output.split(" (")[0]) == (1, "INVALID: the signature does not verify with "
                                                "the given key")
    manifest.write_text("not a manifest")
    assert _verify(runner, manifest)[0] == 1


def test_a_signed_document_of_another_kind_is_not_a_manifest(app: Flask, catalog: int) -> None:
    from portal.consent.receipts import sign_document

    with app.app_context():
        token = sign_document({"type": "deletion-certificate", "version": 1})
        check = verify_manifest(token)
        assert not check.valid
        assert "not a training dataset manifest" in check.reason
        broken = sign_document({"type": "training-manifest", "version": 1, "files": []})
        check = verify_manifest(broken)
        assert not check.valid and "missing or malformed" in check.reason


def test_a_snapshot_with_parts_not_done_is_not_sealed(app: Flask, catalog: int) -> None:
    with app.app_context():
        snapshot, key = small_sealable_snapshot()
        db.add(SnapshotPart(snapshot_id=snapshot.id, number=4, category_key="keystrokes",
                            first_person_id=9, last_person_id=9, state=PartState.LEASED))
        db.flush()
        with pytest.raises(ValueError, match=r"parts not done: \[4\]"):
            seal_snapshot(snapshot, key)
        assert snapshot.manifest_jws is None
        # Before sealing, only the parts done so far are listed.
        assert [item.path for item in manifest_files(snapshot)] == [
            "keystrokes/part-00001.parquet", "keystrokes/part-00002.parquet",
            "conversations/part-00003.parquet"]
