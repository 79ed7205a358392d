"""A snapshot's files at rest: encrypted in chunks under the snapshot's own key.

MERGE NOTE (H1): a minimal local version of H2's interface (``snapshot_folder``,
``EncryptedWriter``, ``read_decrypted``, ``file_aad``, ``remove_snapshot_files``), written
only so that the build can be tested in this branch; H2's module replaces it at merge.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from portal.training.keys import SnapshotKey
from portal.training.models import TrainingSnapshot

CHUNK_SIZE = 1024 * 1024
_NONCE = 12
_TAG = 16
_SEALED_CHUNK = _NONCE + CHUNK_SIZE + _TAG


class TamperedFile(Exception):
    """A snapshot file was altered, truncated or reordered."""


def snapshot_folder(snapshot: TrainingSnapshot) -> Path:
    """Return the folder of a snapshot's files (``<instance>/training/<public_id>``)."""
    base = current_app.config.get("TRAINING_STORAGE_DIR") or Path(current_app.instance_path,
                                                                   "training")
    return Path(base) / snapshot.public_id


def file_aad(snapshot: TrainingSnapshot, relative_path: str) -> bytes:
    """Return the associated data binding a file's chunks to its snapshot and path."""
    return f"portal.training.file.v1\x00{snapshot.public_id}\x00{relative_path}".encode()


def _chunk_aad(aad: bytes, number: int, final: bool) -> bytes:
    return aad + struct.pack(">QB", number, 1 if final else 0)


class EncryptedWriter:
    """A write-only binary file that encrypts in 1 MiB chunks and appears on close."""

    def __init__(self, path: Path, key: SnapshotKey, *, aad: bytes) -> None:
        self._path = path
        # Unique per writer: a worker whose lease was taken over may still be writing.
        self._temporary = path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(4).hex()}"
                                         ".partial")
        self._file = self._temporary.open("wb")
        self._cipher = AESGCM(key.file_key)
        self._aad = aad
        self._buffer = bytearray()
        self._chunks = 0
        self._digest = hashlib.sha256()
        self.size = 0
        self.sha256 = ""
        self.closed = False

    def writable(self) -> bool:
        """Say that the file can be written."""
        return True

    def readable(self) -> bool:
        """Say that it cannot be read."""
        return False

    def seekable(self) -> bool:
        """Say that it cannot seek (written once, in order)."""
        return False

    def tell(self) -> int:
        """Return the plaintext bytes written so far."""
        return self.size

    def write(self, data: Any) -> int:
        """Buffer ``data``; seal each full chunk."""
        view = memoryview(data).cast("B")
        self._digest.update(view)
        self._buffer += view
        self.size += len(view)
        while len(self._buffer) >= CHUNK_SIZE:
            self._seal(bytes(self._buffer[:CHUNK_SIZE]), final=False)
            del self._buffer[:CHUNK_SIZE]
        return len(view)

    def _seal(self, plain: bytes, *, final: bool) -> None:
        nonce = os.urandom(_NONCE)
        self._file.write(nonce + self._cipher.encrypt(
            nonce, plain, _chunk_aad(self._aad, self._chunks, final)))
        self._chunks += 1

    def flush(self) -> None:
        """Flush the sealed chunks to the file."""
        self._file.flush()

    def close(self) -> None:
        """Seal the last chunk and put the file in place."""
        if self.closed:
            return
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary, self._path)
        self.sha256 = self._digest.hexdigest()
        self.closed = True


def read_decrypted(path: Path, key: SnapshotKey, *, aad: bytes) -> Iterator[bytes]:
    """Yield a file's plaintext chunk by chunk; raise :class:`TamperedFile` on any change."""
    cipher = AESGCM(key.file_key)
    with path.open("rb") as sealed:
        number = 0
        while True:
            block = sealed.read(_SEALED_CHUNK)
            final = len(block) < _SEALED_CHUNK
            if final and len(block) < _NONCE + _TAG:
                raise TamperedFile(f"{path.name}: truncated")
            try:
                yield cipher.decrypt(block[:_NONCE], block[_NONCE:],
                                     _chunk_aad(aad, number, final))
            except InvalidTag:
                raise TamperedFile(f"{path.name}: chunk {number} does not open") from None
            if final:
                if sealed.read(1):
                    raise TamperedFile(f"{path.name}: data after the final chunk")
                return
            number += 1


def remove_snapshot_files(snapshot: TrainingSnapshot) -> None:
    """Remove the snapshot's folder and everything in it."""
    shutil.rmtree(snapshot_folder(snapshot), ignore_errors=True)
