"""A snapshot's files at rest: where they live, and their encryption under the snapshot's key.

Every file of a snapshot (its Parquet parts, its ``croissant.json``) is written through
:class:`EncryptedWriter` and read back through :func:`read_decrypted`. The format, one file:

    header   MAGIC (8 bytes) | nonce prefix (8 random bytes, one per file)
    chunks   AES-256-GCM(file key, nonce = prefix | chunk number (4 bytes),
                         plaintext chunk of 1 MiB, associated data) -> ciphertext + 16-byte tag

The associated data of each chunk binds :func:`file_aad` (the snapshot's public id and the
file's path inside the snapshot), the chunk's number and whether it is the last chunk. So a
changed byte, chunks swapped or dropped, a file cut short at a chunk boundary (its new last
chunk was not sealed as the last), or a file copied to another name or another snapshot, all
fail to open. Only the last chunk is shorter than 1 MiB (it may be empty: an empty file is one
empty last chunk), which lets the reader find chunk boundaries without a length field.

Nonces: a random 64-bit prefix per file and a 32-bit counter per chunk never repeat under one
key (a snapshot writes thousands of files at most; a prefix collision is ~2^-40 likely even
at a million files), and a file can hold 2^32 chunks (4 PiB).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from portal.training.keys import SnapshotKey
from portal.training.models import TrainingSnapshot
from portal.vault import crypto
from portal.vault.errors import VaultIntegrityError

#: The plaintext of every chunk but the last is exactly this long.
CHUNK_SIZE = 1024 * 1024
TAG_SIZE = 16
MAGIC = b"PTSNAP\x00\x01"  # portal training snapshot file, format 1
PREFIX_SIZE = 8
HEADER_SIZE = len(MAGIC) + PREFIX_SIZE
MAX_CHUNKS = 2**32
#: Associated data label of a snapshot file (see portal.vault.crypto.associated_data).
FILE_CONTEXT = "portal.training.snapshot-file.v1"
#: Below the instance folder unless TRAINING_STORAGE_DIR says otherwise.
DEFAULT_FOLDER = "training"

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class SnapshotFileError(VaultIntegrityError):
    """A snapshot file does not open: altered, cut short, reordered, renamed, or another key.

    Raised at the first chunk that fails; whatever was read before must be thrown away.
    """


# --- where the files are ---------------------------------------------------------------------

def storage_root() -> Path:
    """Return the folder that holds every snapshot's folder."""
    configured = current_app.config.get("TRAINING_STORAGE_DIR")
    if configured:
        return Path(configured)
    return Path(current_app.instance_path) / DEFAULT_FOLDER


def snapshot_folder(snapshot: TrainingSnapshot) -> Path:
    """Return the snapshot's own folder (not created here)."""
    # The public id names a folder: refuse anything that could point elsewhere.
    if not _UUID.match(snapshot.public_id or ""):
        raise ValueError(f"snapshot {snapshot.number} has no valid public id")
    return storage_root() / snapshot.public_id


def _clean_relative(relative_path: str) -> str:
    path = PurePosixPath(relative_path)
    if (not relative_path or path.is_absolute() or any(part in ("", ".", "..")
                                                       for part in relative_path.split("/"))):
        raise ValueError(f"not a plain relative path inside a snapshot: {relative_path!r}")
    return str(path)


def snapshot_file(snapshot: TrainingSnapshot, relative_path: str) -> Path:
    """Return where the file ``relative_path`` ("keystrokes/part-00003.parquet") of a snapshot is.

    :raise ValueError: the path is absolute or climbs out of the snapshot's folder.
    """
    return snapshot_folder(snapshot) / _clean_relative(relative_path)


def file_aad(snapshot: TrainingSnapshot, relative_path: str) -> bytes:
    """Return the associated data that ties a file's content to its snapshot and its path."""
    return crypto.associated_data(FILE_CONTEXT, snapshot.public_id,
                                  _clean_relative(relative_path))


def remove_snapshot_files(snapshot: TrainingSnapshot) -> None:
    """Remove the snapshot's folder and every file in it; nothing to do if it is gone."""
    folder = snapshot_folder(snapshot)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(folder)


# --- writing ---------------------------------------------------------------------------------

def _chunk_aad(aad: bytes, number: int, last: bool) -> bytes:
    # A fixed-size suffix after the file's own associated data: unambiguous.
    return aad + struct.pack(">QB", number, 1 if last else 0)


def _nonce(prefix: bytes, number: int) -> bytes:
    return prefix + struct.pack(">I", number)


class EncryptedWriter:
    """A binary file that encrypts what is written to it, in chunks, and appears only on close.

    Written to a hidden temporary name in the same folder; :meth:`close` seals the last
    chunk, syncs the file to disk and renames it to ``path`` in one step, so a reader (or a
    worker that died half way) never leaves a partial file under the real name. A writer
    left by an error is thrown away with :meth:`discard` (or by leaving a ``with`` block
    through an exception). After closing, :attr:`sha256` and :attr:`size` describe the
    plaintext, as a client will see it once decrypted.

    Usable as the sink of pyarrow: ``pyarrow.PythonFile(writer, mode="w")``.
    """

    def __init__(self, path: Path, key: SnapshotKey, *, aad: bytes) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = self.path.with_name(f".{self.path.name}.{os.urandom(6).hex()}.tmp")
        self._aead = AESGCM(key.file_key)
        self._aad = aad
        self._prefix = os.urandom(PREFIX_SIZE)
        self._buffer = bytearray()
        self._chunks = 0
        self._position = 0
        self._digest = hashlib.sha256()
        self._closed = False
        self.sha256 = ""
        self.size = 0
        descriptor = os.open(self._temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._stream = os.fdopen(descriptor, "wb")
        self._stream.write(MAGIC + self._prefix)

    # The file protocol pyarrow (and anything else that streams bytes) uses.

    @property
    def closed(self) -> bool:
        """Say whether the file was closed or discarded."""
        return self._closed

    def writable(self) -> bool:
        """Say that the file takes writes (until closed)."""
        return not self._closed

    def readable(self) -> bool:
        """Say that the file cannot be read back while written."""
        return False

    def seekable(self) -> bool:
        """Say that the file is written front to back only."""
        return False

    def tell(self) -> int:
        """Return the number of plaintext bytes written so far."""
        return self._position

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take ``data``; encrypt every full chunk once a later byte shows it is not the last."""
        if self._closed:
            raise ValueError("write to a closed snapshot file")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._digest.update(view)
        self._position += len(view)
        # Keep at least one byte back: only close() knows which chunk is the last.
        while len(self._buffer) > CHUNK_SIZE:
            self._seal(bytes(self._buffer[:CHUNK_SIZE]), last=False)
            del self._buffer[:CHUNK_SIZE]
        return len(view)

    def flush(self) -> None:
        """Do nothing: a chunk is only written once full (or at close)."""

    def close(self) -> None:
        """Seal the last chunk, sync to disk and give the file its name. Closing twice is fine."""
        if self._closed:
            return
        try:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._stream.close()
            os.replace(self._temporary, self.path)
            _sync_folder(self.path.parent)
        except BaseException:
            self.discard()
            raise
        self._closed = True
        self.sha256 = self._digest.hexdigest()
        self.size = self._position

    def discard(self) -> None:
        """Throw the unfinished file away; ``path`` is left as it was."""
        self._closed = True
        if not self._stream.closed:
            self._stream.close()
        self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> EncryptedWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()

    def _seal(self, plaintext: bytes, *, last: bool) -> None:
        if self._chunks >= MAX_CHUNKS:
            raise ValueError("a snapshot file cannot hold more than 2^32 chunks")
        self._stream.write(self._aead.encrypt(_nonce(self._prefix, self._chunks), plaintext,
                                              _chunk_aad(self._aad, self._chunks, last)))
        self._chunks += 1


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX: sync the directory entry)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --- reading ---------------------------------------------------------------------------------

def read_decrypted(path: Path, key: SnapshotKey, *, aad: bytes) -> Iterator[bytes]:
    """Yield the plaintext of a snapshot file, chunk by chunk, checking each one.

    :raise SnapshotFileError: at the first chunk that does not authenticate (altered,
        reordered, cut short, another file's name or another key); the chunks yielded before
        must be thrown away by the caller.
    """
    aead = AESGCM(key.file_key)
    with open(path, "rb") as stream:
        header = stream.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
            raise SnapshotFileError(f"{path.name} is not a snapshot file (wrong header)")
        prefix = header[len(MAGIC):]
        sealed = stream.read(CHUNK_SIZE + TAG_SIZE)
        number = 0
        while True:
            following = stream.read(CHUNK_SIZE + TAG_SIZE) if sealed else b""
            last = not following
            if len(sealed) < TAG_SIZE or (not last and len(sealed) != CHUNK_SIZE + TAG_SIZE):
                raise SnapshotFileError(f"{path.name} is cut short (chunk {number})")
            try:
                plaintext = aead.decrypt(_nonce(prefix, number), sealed,
                                         _chunk_aad(aad, number, last))
            except InvalidTag:
                raise SnapshotFileError(
                    f"{path.name} does not open at chunk {number}: altered, cut short, "
                    "reordered, moved from another name, or sealed with another key") from None
            yield plaintext
            if last:
                return
            sealed = following
            number += 1
