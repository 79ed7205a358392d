"""Envelope encryption: data keys wrapped by the master key, batches sealed by data keys.

The hierarchy has two levels. The master key (``PORTAL_MASTER_KEY``, 32 bytes) never touches
collected content: it only wraps data keys. Each (person, category) has its own random data
key, which seals that person's batches of that category. Rotating the master key re-wraps the
small data keys and leaves every ciphertext as it is; destroying a data key makes every copy
of the ciphertexts it sealed unreadable.

Both layers are AES-256-GCM with a fresh 96-bit nonce per message, and both bind their
ciphertext to where it belongs through the associated data (see :func:`associated_data`): a
wrapped key or a batch copied to another row, person or category fails authentication
instead of decrypting under a false name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field

import orjson
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
#: Stored length of a wrapped data key: nonce, the encrypted 32 bytes, the tag.
WRAPPED_KEY_SIZE = NONCE_SIZE + KEY_SIZE + TAG_SIZE
#: Versioned labels that start every associated data: a data key's wrap and a batch can never
#: be mistaken for one another, and a future format cannot be confused with this one.
DATA_KEY_CONTEXT = "consent-portal/vault/data-key/v1"
BATCH_CONTEXT = "consent-portal/vault/batch/v1"
_KEY_ID_LABEL = b"consent-portal/vault/master-key-id/v1\x00"
#: Zstandard's level 1. Events are repetitive JSON: a batch shrinks six- to eightfold, in a
#: third of the time zlib's fastest level takes to shrink it less (docs/benchmarks.md).
COMPRESSION_LEVEL = 1
#: How a Zstandard frame starts. Batches sealed before Zstandard hold zlib streams, whose
#: first byte is never 0x28; the first bytes are inside the authenticated plaintext, so
#: nobody can make one kind pass for the other.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class DecryptionFailed(Exception):
    """A ciphertext did not authenticate: wrong key, wrong place, or altered bytes."""


class ContentTooLarge(DecryptionFailed):
    """A batch decompressed to more than the allowed size (never written by the portal)."""


@dataclass(frozen=True)
class MasterKey:
    """The key that wraps every data key, with a short public fingerprint (``key_id``)."""

    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_SIZE:
            raise ValueError(f"a master key has {KEY_SIZE} bytes, not {len(self.raw)}")

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        """Read a master key written as base64 (the form of ``PORTAL_MASTER_KEY``).

        :raise ValueError: not base64, or not 32 bytes; the message never echoes the value.
        """
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a master key must be base64 of 32 random bytes") from None
        if len(raw) != KEY_SIZE:
            raise ValueError(f"a master key must be base64 of 32 random bytes, not {len(raw)}")
        return cls(raw)

    @property
    def key_id(self) -> str:
        """Return the fingerprint stored beside each data key it wraps (16 hex digits)."""
        return master_key_id(self.raw)


def master_key_id(raw: bytes) -> str:
    """Return the fingerprint of a master key: 8 bytes of a labelled SHA-256, in hex.

    It says which key wrapped a data key (so rotation knows what is left) without helping
    anyone guess the key: 64 bits of a hash of 256 random bits reveal nothing usable.
    """
    return hashlib.sha256(_KEY_ID_LABEL + raw).digest()[:8].hex()


def associated_data(context: str, *parts: str | int) -> bytes:
    """Return the canonical associated data: a compact JSON array of a label and the parts.

    JSON keeps the boundaries between parts unambiguous (``("ab", "c")`` and ``("a", "bc")``
    differ), and with only strings and integers, no spaces and ASCII escapes, the same parts
    always give the same bytes.
    """
    return json.dumps([context, *parts], separators=(",", ":"), ensure_ascii=True).encode("ascii")


def new_data_key() -> bytes:
    """Return a fresh random 256-bit data key."""
    return AESGCM.generate_key(bit_length=KEY_SIZE * 8)


def _data_key_aad(key_id: str, person_id: int, category_key: str) -> bytes:
    return associated_data(DATA_KEY_CONTEXT, key_id, person_id, category_key)


def wrap_data_key(master: MasterKey, data_key: bytes, *, key_id: str, person_id: int,
                  category_key: str) -> bytes:
    """Encrypt ``data_key`` under the master key, bound to its row, person and category."""
    nonce = os.urandom(NONCE_SIZE)
    sealed = AESGCM(master.raw).encrypt(nonce, data_key,
                                        _data_key_aad(key_id, person_id, category_key))
    return nonce + sealed


def unwrap_data_key(master: MasterKey, wrapped: bytes, *, key_id: str, person_id: int,
                    category_key: str) -> bytes:
    """Decrypt a wrapped data key.

    :raise DecryptionFailed: another master key wrapped it, it belongs to another row, person
        or category, it was altered, or it was destroyed (empty).
    """
    if len(wrapped) != WRAPPED_KEY_SIZE:
        raise DecryptionFailed(f"data key {key_id} holds no usable key material")
    try:
        return AESGCM(master.raw).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:],
                                          _data_key_aad(key_id, person_id, category_key))
    except InvalidTag:
        raise DecryptionFailed(f"data key {key_id} does not open with this master key for "
                               f"person {person_id} and category {category_key}") from None


def encode_events(events: list[object]) -> bytes:
    """Serialise events as canonical UTF-8 JSON (sorted keys, no spaces, no NaN).

    orjson writes it, ten times faster than the json module and byte for byte the same for
    strings, integers, booleans and null; only some floats are written differently
    (``0.00001`` for ``1e-05``), which :func:`same_events` allows for. What orjson cannot
    write (integers beyond 64 bits, keys that are not strings, nesting deeper than 254)
    is left to the json module, which accepts or refuses it as it always did.

    :raise TypeError, ValueError, RecursionError: not JSON (NaN or infinity included).
    """
    try:
        plaintext = orjson.dumps(events, option=_CANONICAL)
    except orjson.JSONEncodeError:
        return _json_module_encoding(events)
    if b"null" in plaintext:
        # orjson writes NaN and infinity as null: the json module refuses them, and raises
        # here when they are the cause (it only runs when some text reads "null").
        _json_module_encoding(events)
    return plaintext


#: orjson's canonical form; dataclasses and datetimes are refused, as by the json module.
_CANONICAL = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
              | orjson.OPT_PASSTHROUGH_DATETIME)


def _json_module_encoding(events: object) -> bytes:
    return json.dumps(events, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def same_events(stored: bytes, plaintext: bytes) -> bool:
    """Say whether a stored batch's plaintext holds the same events as ``plaintext``.

    Equal bytes in practice. Batches stored before orjson wrote the canonical form (and
    events that only the json module can write) may write the same float differently;
    both sides are then read and written again by the json module, which keeps every
    integer and float exactly, so that equal events compare equal and different ones not.
    """
    if stored == plaintext:
        return True
    return _json_module_encoding(json.loads(stored)) == _json_module_encoding(
        json.loads(plaintext))


def _batch_aad(batch_id: str, person_id: int, category_key: str) -> bytes:
    return associated_data(BATCH_CONTEXT, batch_id, person_id, category_key)


@dataclass(frozen=True)
class SealedBatch:
    """A batch's content as stored: nonce, ciphertext (with tag), and the compressed size."""

    nonce: bytes
    ciphertext: bytes
    compressed_size: int


def seal_batch(data_key: bytes, plaintext: bytes, *, batch_id: str, person_id: int,
               category_key: str) -> SealedBatch:
    """Compress, then encrypt ``plaintext`` under ``data_key``, bound to the batch's identity.

    Compression comes first because ciphertext does not compress. ``batch_id`` is the batch's
    public id, known before the row is inserted.
    """
    # A compressor per call: they are cheap to make and not safe to share between threads.
    compressed = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL).compress(plaintext)
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = AESGCM(data_key).encrypt(nonce, compressed,
                                          _batch_aad(batch_id, person_id, category_key))
    return SealedBatch(nonce, ciphertext, len(compressed))


def open_batch(data_key: bytes, nonce: bytes, ciphertext: bytes, *, batch_id: str,
               person_id: int, category_key: str, max_size: int) -> bytes:
    """Decrypt and decompress a batch; return its canonical JSON.

    :raise DecryptionFailed: wrong key, moved to another row, person or category, or altered.
    :raise ContentTooLarge: it would decompress beyond ``max_size`` bytes.
    """
    try:
        compressed = AESGCM(data_key).decrypt(nonce, ciphertext,
                                              _batch_aad(batch_id, person_id, category_key))
    except InvalidTag:
        raise DecryptionFailed(f"batch {batch_id} does not open for person {person_id} and "
                               f"category {category_key}") from None
    # Bounded even though the content authenticated: a limit costs nothing and holds if a
    # data key ever leaked.
    plaintext = _decompress(compressed, max_size)
    if plaintext is None:
        raise ContentTooLarge(f"batch {batch_id} decompresses beyond {max_size} bytes")
    return plaintext


def _decompress(compressed: bytes, max_size: int) -> bytes | None:
    """Return the decompressed batch, or ``None`` if it is larger than ``max_size`` bytes."""
    if compressed.startswith(_ZSTD_MAGIC):
        with zstandard.ZstdDecompressor().stream_reader(compressed) as reader:
            plaintext = reader.read(max_size + 1)
        return plaintext if len(plaintext) <= max_size else None
    inflater = zlib.decompressobj()  # sealed before Zstandard
    plaintext = inflater.decompress(compressed, max_size + 1)
    return None if len(plaintext) > max_size or inflater.unconsumed_tail else plaintext
