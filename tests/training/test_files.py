"""Snapshot files at rest: encrypted in chunks under the snapshot's key, refused when touched."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flask import Flask

from portal.config import ConfigError, load_settings
from portal.training.files import (
    CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    EncryptedWriter,
    SnapshotFileError,
    file_aad,
    read_decrypted,
    remove_snapshot_files,
    snapshot_file,
    snapshot_folder,
)
from portal.training.keys import SnapshotKey
from portal.vault.errors import VaultIntegrityError
from tests.support.training_files import create_snapshot

AAD = b'["portal.training.snapshot-file.v1","snapshot","keystrokes/part-00001.parquet"]'
SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE


@pytest.fixture
def key() -> SnapshotKey:
    return SnapshotKey(os.urandom(32))


def _write(path: Path, key: SnapshotKey, data: bytes, *, aad: bytes = AAD,
           pieces: int = 7) -> EncryptedWriter:
    with EncryptedWriter(path, key, aad=aad) as writer:
        step = max(1, len(data) // pieces)
        for start in range(0, len(data), step):
            writer.write(data[start:start + step])
    return writer


def _read(path: Path, key: SnapshotKey, *, aad: bytes = AAD) -> bytes:
    return b"".join(read_decrypted(path, key, aad=aad))


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1,
                                  2 * CHUNK_SIZE + CHUNK_SIZE // 2])
def test_what_is_written_reads_back(tmp_path: Path, key: SnapshotKey, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "keystrokes" / "part-00001.parquet"
    writer = _write(path, key, data)
    assert (writer.size, writer.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert writer.closed and writer.tell() == size
    assert _read(path, key) == data
    # Whole chunks, each with its tag, after the header; the last chunk is never empty
    # unless the file is.
    chunks = max(1, -(-size // CHUNK_SIZE))
    assert path.stat().st_size == HEADER_SIZE + size + chunks * TAG_SIZE
    assert data[:64] not in path.read_bytes() or size == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Nothing left under a temporary name.
    assert [item.name for item in path.parent.iterdir()] == ["part-00001.parquet"]


def test_two_files_of_one_key_never_share_a_nonce(tmp_path: Path, key: SnapshotKey) -> None:
    data = b"same content" * 1000
    first = _write(tmp_path / "a", key, data).path.read_bytes()
    second = _write(tmp_path / "b", key, data).path.read_bytes()
    assert first[:8] == second[:8]  # the format's magic
    assert first[8:HEADER_SIZE] != second[8:HEADER_SIZE]  # the random nonce prefix
    assert first[HEADER_SIZE:] != second[HEADER_SIZE:]


def _three_chunks(tmp_path: Path, key: SnapshotKey) -> tuple[Path, bytes]:
    path = tmp_path / "keystrokes" / "part-00001.parquet"
    data = os.urandom(2 * CHUNK_SIZE + 1000)
    _write(path, key, data)
    return path, path.read_bytes()


def _refused(path: Path, key: SnapshotKey, *, aad: bytes = AAD) -> str:
    with pytest.raises(SnapshotFileError) as caught:
        _read(path, key, aad=aad)
    assert isinstance(caught.value, VaultIntegrityError)
    return str(caught.value)


def test_a_changed_byte_is_refused(tmp_path: Path, key: SnapshotKey) -> None:
    path, sealed = _three_chunks(tmp_path, key)
    for offset in (HEADER_SIZE + 10, HEADER_SIZE + SEALED_CHUNK + 5, len(sealed) - 1, 9):
        altered = bytearray(sealed)
        altered[offset] ^= 0x01
        path.write_bytes(bytes(altered))
        assert "does not open" in _refused(path, key)
    altered = bytearray(sealed)
    altered[0] ^= 0x01
    path.write_bytes(bytes(altered))
    assert "not a snapshot file" in _refused(path, key)


def test_a_file_cut_short_is_refused(tmp_path: Path, key: SnapshotKey) -> None:
    path, sealed = _three_chunks(tmp_path, key)
    # At a chunk boundary every remaining chunk is whole: only the "last chunk" flag in the
    # associated data shows that the end is missing.
    for length in (HEADER_SIZE + SEALED_CHUNK, HEADER_SIZE + 2 * SEALED_CHUNK,
                   len(sealed) - 1, HEADER_SIZE + 5, HEADER_SIZE, 3):
        path.write_bytes(sealed[:length])
        _refused(path, key)


def test_chunks_swapped_or_dropped_are_refused(tmp_path: Path, key: SnapshotKey) -> None:
    path, sealed = _three_chunks(tmp_path, key)
    header = sealed[:HEADER_SIZE]
    first = sealed[HEADER_SIZE:HEADER_SIZE + SEALED_CHUNK]
    second = sealed[HEADER_SIZE + SEALED_CHUNK:HEADER_SIZE + 2 * SEALED_CHUNK]
    last = sealed[HEADER_SIZE + 2 * SEALED_CHUNK:]
    for body in (second + first + last, first + last, second + last, first + first + last):
        path.write_bytes(header + body)
        _refused(path, key)


def test_a_file_under_another_name_or_key_is_refused(tmp_path: Path, key: SnapshotKey) -> None:
    path, _ = _three_chunks(tmp_path, key)
    assert "does not open at chunk 0" in _refused(
        path, key, aad=AAD.replace(b"part-00001", b"part-00002"))
    _refused(path, SnapshotKey(os.urandom(32)))
    # The nonce prefix of another file of the same key and name does not fit either.
    other = tmp_path / "other.parquet"
    _write(other, key, b"x" * 100)
    swapped = other.read_bytes()[:HEADER_SIZE] + path.read_bytes()[HEADER_SIZE:]
    path.write_bytes(swapped)
    _refused(path, key)


def test_a_failed_write_leaves_nothing_and_keeps_the_earlier_file(tmp_path: Path,
                                                                  key: SnapshotKey) -> None:
    path = tmp_path / "part.parquet"
    _write(path, key, b"the earlier version")
    writer = EncryptedWriter(path, key, aad=AAD)

    def fail_half_way() -> None:
        with writer:
            writer.write(os.urandom(CHUNK_SIZE + 10))
            raise RuntimeError("the worker failed half way")

    with pytest.raises(RuntimeError):
        fail_half_way()
    assert writer.closed and not writer.sha256
    assert _read(path, key) == b"the earlier version"
    assert [item.name for item in tmp_path.iterdir()] == ["part.parquet"]
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_pyarrow_writes_parquet_through_it(tmp_path: Path, key: SnapshotKey) -> None:
    table = pa.table({"person": [f"s-{index:016x}" for index in range(50_000)],
                      "duration_ms": list(range(50_000)),
                      # Random text: Parquet cannot compress it below several chunks.
                      "keys": [os.urandom(32).hex() for _ in range(50_000)]})
    path = tmp_path / "keystrokes" / "part-00001.parquet"
    writer = EncryptedWriter(path, key, aad=AAD)
    sink = pa.PythonFile(writer, mode="w")
    with pq.ParquetWriter(sink, table.schema) as parquet:
        for start in range(0, table.num_rows, 10_000):  # row groups streamed one at a time
            parquet.write_table(table.slice(start, 10_000))
    sink.close()
    assert writer.closed and writer.size > CHUNK_SIZE  # several chunks
    plaintext = _read(path, key)
    assert hashlib.sha256(plaintext).hexdigest() == writer.sha256
    read = pq.read_table(pa.BufferReader(plaintext))
    assert read.equals(table)
    assert pq.ParquetFile(pa.BufferReader(plaintext)).metadata.num_row_groups == 5


def test_the_folder_of_a_snapshot(app: Flask, catalog: int, tmp_path: Path,
                                  key: SnapshotKey) -> None:
    with app.app_context():
        snapshot, _ = create_snapshot(["keystrokes"])
        folder = snapshot_folder(snapshot)
        assert folder == Path(app.instance_path) / "training" / snapshot.public_id
        assert snapshot_file(snapshot, "keystrokes/part-00001.parquet") == (
            folder / "keystrokes" / "part-00001.parquet")
        for wrong in ("../other/x.parquet", "/etc/passwd", "keystrokes/../../x", "", "a//b"):
            with pytest.raises(ValueError, match="not a plain relative path"):
                snapshot_file(snapshot, wrong)
            with pytest.raises(ValueError, match="not a plain relative path"):
                file_aad(snapshot, wrong)
        assert file_aad(snapshot, "a.parquet") != file_aad(snapshot, "b.parquet")

        _write(snapshot_file(snapshot, "keystrokes/part-00001.parquet"), key, b"rows")
        remove_snapshot_files(snapshot)
        assert not folder.exists()
        remove_snapshot_files(snapshot)  # again: nothing to do

        app.config["TRAINING_STORAGE_DIR"] = str(tmp_path / "shared")
        assert snapshot_folder(snapshot) == tmp_path / "shared" / snapshot.public_id


@pytest.mark.parametrize(("value", "message"), [
    ("relative/training", "must be an absolute path"),
    ("{file}", "is not a folder"),
])
def test_the_storage_setting_is_checked(tmp_path: Path, value: str, message: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    environment = {
        "PORTAL_DEMO": "1",
        "PORTAL_TRAINING_STORAGE_DIR": value.format(file=a_file),
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environment)
    assert f"PORTAL_TRAINING_STORAGE_DIR: {message}" in str(caught.value)
    accepted = load_settings(tmp_path, environment | {"PORTAL_TRAINING_STORAGE_DIR": str(tmp_path)})
    assert Path(accepted.TRAINING_STORAGE_DIR) == tmp_path
