"""The envelope encryption itself: wrapping, sealing, and what breaks authentication."""

from __future__ import annotations

import base64
import os
import uuid
import zlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from portal.vault import crypto
from portal.vault.crypto import DecryptionFailed, MasterKey
from tests.support.config import TEST_MASTER_KEY

MASTER = MasterKey.from_base64(TEST_MASTER_KEY)
KEY_ID = str(uuid.uuid4())
BATCH_ID = str(uuid.uuid4())
PLAINTEXT = crypto.encode_events([{"t": "2026-03-02T10:21:33.480Z", "keys": "secret plan"}])


def _wrapped() -> bytes:
    return crypto.wrap_data_key(MASTER, b"k" * 32, key_id=KEY_ID, person_id=7,
                                category_key="keystrokes")


def test_a_data_key_unwraps_only_with_its_master_key_row_person_and_category() -> None:
    wrapped = _wrapped()
    assert len(wrapped) == crypto.WRAPPED_KEY_SIZE
    assert crypto.unwrap_data_key(MASTER, wrapped, key_id=KEY_ID, person_id=7,
                                  category_key="keystrokes") == b"k" * 32
    other_master = MasterKey(os.urandom(32))
    wrong = [
        (other_master, KEY_ID, 7, "keystrokes"),
        (MASTER, str(uuid.uuid4()), 7, "keystrokes"),
        (MASTER, KEY_ID, 8, "keystrokes"),
        (MASTER, KEY_ID, 7, "pointer"),
    ]
    for master, key_id, person_id, category_key in wrong:
        with pytest.raises(DecryptionFailed):
            crypto.unwrap_data_key(master, wrapped, key_id=key_id, person_id=person_id,
                                   category_key=category_key)


def test_two_wraps_of_one_key_differ_because_each_has_a_fresh_nonce() -> None:
    assert _wrapped() != _wrapped()


def test_a_destroyed_or_altered_wrap_does_not_open() -> None:
    for broken in (b"", _wrapped()[:-1], bytes([_wrapped()[0] ^ 1]) + _wrapped()[1:]):
        with pytest.raises(DecryptionFailed):
            crypto.unwrap_data_key(MASTER, broken, key_id=KEY_ID, person_id=7,
                                   category_key="keystrokes")


def test_a_batch_round_trips_compressed_and_is_bound_to_its_batch_person_and_category() -> None:
    data_key = crypto.new_data_key()
    sealed = crypto.seal_batch(data_key, PLAINTEXT, batch_id=BATCH_ID, person_id=7,
                               category_key="keystrokes")
    assert len(sealed.nonce) == 12
    assert b"secret plan" not in sealed.ciphertext
    assert sealed.compressed_size == len(sealed.ciphertext) - crypto.TAG_SIZE
    assert crypto.open_batch(data_key, sealed.nonce, sealed.ciphertext, batch_id=BATCH_ID,
                             person_id=7, category_key="keystrokes",
                             max_size=1 << 20) == PLAINTEXT
    wrong = [
        (crypto.new_data_key(), BATCH_ID, 7, "keystrokes"),
        (data_key, str(uuid.uuid4()), 7, "keystrokes"),
        (data_key, BATCH_ID, 8, "keystrokes"),
        (data_key, BATCH_ID, 7, "pointer"),
    ]
    for key, batch_id, person_id, category_key in wrong:
        with pytest.raises(DecryptionFailed):
            crypto.open_batch(key, sealed.nonce, sealed.ciphertext, batch_id=batch_id,
                              person_id=person_id, category_key=category_key, max_size=1 << 20)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(DecryptionFailed):
        crypto.open_batch(data_key, sealed.nonce, flipped, batch_id=BATCH_ID, person_id=7,
                          category_key="keystrokes", max_size=1 << 20)


def _sealed_with_zlib(data_key: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """Seal as the portal did before Zstandard: a zlib stream, then AES-GCM."""
    nonce = os.urandom(crypto.NONCE_SIZE)
    aad = crypto.associated_data(crypto.BATCH_CONTEXT, BATCH_ID, 1, "pointer")
    return nonce, AESGCM(data_key).encrypt(nonce, zlib.compress(plaintext, 1), aad)


def test_decompression_is_bounded() -> None:
    data_key = crypto.new_data_key()
    bomb = b"0" * 100_000
    sealed = crypto.seal_batch(data_key, bomb, batch_id=BATCH_ID, person_id=1,
                               category_key="pointer")
    assert sealed.compressed_size < 1000
    with pytest.raises(crypto.ContentTooLarge):
        crypto.open_batch(data_key, sealed.nonce, sealed.ciphertext, batch_id=BATCH_ID,
                          person_id=1, category_key="pointer", max_size=50_000)
    assert crypto.open_batch(data_key, sealed.nonce, sealed.ciphertext, batch_id=BATCH_ID,
                             person_id=1, category_key="pointer", max_size=100_000) == bomb
    nonce, ciphertext = _sealed_with_zlib(data_key, bomb)
    with pytest.raises(crypto.ContentTooLarge):
        crypto.open_batch(data_key, nonce, ciphertext, batch_id=BATCH_ID, person_id=1,
                          category_key="pointer", max_size=50_000)


def test_batches_sealed_before_zstandard_still_open() -> None:
    data_key = crypto.new_data_key()
    nonce, ciphertext = _sealed_with_zlib(data_key, PLAINTEXT)
    assert crypto.open_batch(data_key, nonce, ciphertext, batch_id=BATCH_ID, person_id=1,
                             category_key="pointer", max_size=1 << 20) == PLAINTEXT
    sealed = crypto.seal_batch(data_key, PLAINTEXT, batch_id=BATCH_ID, person_id=1,
                               category_key="pointer")
    compressed = AESGCM(data_key).decrypt(
        sealed.nonce, sealed.ciphertext,
        crypto.associated_data(crypto.BATCH_CONTEXT, BATCH_ID, 1, "pointer"))
    assert compressed.startswith(b"\x28\xb5\x2f\xfd")  # new batches: a Zstandard frame


def test_associated_data_is_canonical_and_unambiguous() -> None:
    assert crypto.associated_data("ctx", "ab", "c") != crypto.associated_data("ctx", "a", "bc")
    assert crypto.associated_data("ctx", "b-1", 7, "pointer") == \
        b'["ctx","b-1",7,"pointer"]'


def test_the_master_key_fingerprint_is_stable_and_reveals_no_key_bytes() -> None:
    assert MASTER.key_id == crypto.master_key_id(base64.b64decode(TEST_MASTER_KEY))
    assert len(MASTER.key_id) == 16
    assert MASTER.key_id not in base64.b64decode(TEST_MASTER_KEY).hex()
    assert repr(MASTER.raw) not in repr(MASTER)
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match=r"32 random bytes"):
            MasterKey.from_base64(bad)
