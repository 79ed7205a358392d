"""A snapshot's own key: it encrypts the snapshot's files and keys its pseudonyms.

Made when the snapshot is asked for, stored wrapped by the vault's master key (bound to the
snapshot's public id), destroyed when the snapshot is retired. Once it is gone, the files
(wherever a copy of them lies) cannot be opened, and the pseudonyms in any copy already handed
out cannot be linked back to anyone by the portal either.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import func, select

from portal.db import db
from portal.training.models import TrainingSnapshot
from portal.vault import crypto
from portal.vault.errors import VaultError, VaultIntegrityError
from portal.vault.keys import configured_master_key

#: Associated data label of a wrapped snapshot key (see portal.vault.crypto.associated_data).
SNAPSHOT_KEY_CONTEXT = "portal.training.snapshot-key.v1"
NONCE_SIZE = 12


class SnapshotKey:
    """The opened key of one snapshot, with the two keys derived from it.

    Two derived keys, not one key for two jobs: the file key encrypts (AES-256-GCM), the
    pseudonym key is an HMAC key; HKDF keeps them independent.
    """

    def __init__(self, material: bytes) -> None:
        self.file_key = _derive(material, b"files")
        self._pseudonym_key = _derive(material, b"pseudonyms")

    def pseudonym(self, person_id: int) -> str:
        """Return the person's pseudonym in this snapshot ("s-" and 16 hex digits).

        Keyed per snapshot: the same person has unrelated pseudonyms in two snapshots, so two
        datasets cannot be joined on people. 64 bits: no two people of a company collide.
        """
        digest = hmac.new(self._pseudonym_key, str(person_id).encode("ascii"),
                          hashlib.sha256).hexdigest()
        return "s-" + digest[:16]

    def unmatched_pseudonym(self, name: str) -> str:
        """Return a snapshot pseudonym for a workplace pseudonym that names nobody.

        A conversation may name someone the portal does not know (a former colleague): the
        name is still replaced, by a keyed hash under this snapshot's key, so no workplace
        pseudonym reaches a dataset. Prefixed so it can never equal a person's pseudonym.
        """
        digest = hmac.new(self._pseudonym_key, b"workplace:" + name.encode("utf-8"),
                          hashlib.sha256).hexdigest()
        return "s-" + digest[:16]


def _derive(material: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None,
                info=b"portal.training." + label).derive(material)


def _aad(public_id: str) -> bytes:
    return crypto.associated_data(SNAPSHOT_KEY_CONTEXT, public_id)


def new_snapshot_key(snapshot: TrainingSnapshot) -> SnapshotKey:
    """Make a fresh key for ``snapshot`` (its ``public_id`` set), store it wrapped, return it."""
    material = crypto.new_data_key()
    _wrap(configured_master_key(), material, snapshot)
    return SnapshotKey(material)


def _wrap(master: crypto.MasterKey, material: bytes, snapshot: TrainingSnapshot) -> None:
    nonce = os.urandom(NONCE_SIZE)
    snapshot.wrapped_key = nonce + AESGCM(master.raw).encrypt(nonce, material,
                                                              _aad(snapshot.public_id))
    snapshot.master_key_id = master.key_id


def _unwrap(master: crypto.MasterKey, snapshot: TrainingSnapshot) -> bytes:
    wrapped = snapshot.wrapped_key
    try:
        return AESGCM(master.raw).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:],
                                          _aad(snapshot.public_id))
    except InvalidTag:
        raise VaultIntegrityError(f"training snapshot {snapshot.number}'s key does not open "
                                  "with this master key") from None


def open_snapshot_key(snapshot: TrainingSnapshot) -> SnapshotKey:
    """Return the snapshot's key, unwrapped with the configured master key.

    :raise VaultIntegrityError: the key was destroyed (retired), altered, or another master
        key wrapped it.
    """
    if not snapshot.wrapped_key:
        raise VaultIntegrityError(f"training snapshot {snapshot.number} was retired: its key "
                                  "was destroyed")
    master = configured_master_key()
    if snapshot.master_key_id != master.key_id:
        raise VaultIntegrityError(
            f"training snapshot {snapshot.number}'s key is wrapped by master key "
            f"{snapshot.master_key_id}, but the configured master key is {master.key_id}")
    return SnapshotKey(_unwrap(master, snapshot))


def rewrap_snapshot_keys(_sender: object, *, current: crypto.MasterKey,
                         new: crypto.MasterKey) -> dict[str, int]:
    """Re-wrap every live snapshot key from ``current`` to ``new`` (a master-key rotation).

    Connected to ``portal.signals.master_key_rotating``; runs in the rotation's unit of work,
    so the vault's keys and the snapshots' keys move to the new master key together.

    :raise VaultError: a snapshot key is wrapped by a third master key (nothing is changed:
        the rotation's transaction is rolled back).
    """
    live = db.scalars(select(TrainingSnapshot).where(func.length(TrainingSnapshot.wrapped_key) > 0)
                      .order_by(TrainingSnapshot.id).with_for_update())
    rewrapped = 0
    for snapshot in live:
        if snapshot.master_key_id == new.key_id:
            continue
        if snapshot.master_key_id != current.key_id:
            raise VaultError(f"training snapshot {snapshot.number}'s key is wrapped by master key "
                             f"{snapshot.master_key_id}, neither the configured one nor the new "
                             "one; nothing was changed")
        material = _unwrap(current, snapshot)
        _wrap(new, material, snapshot)
        rewrapped += 1
    db.flush()
    return {"training snapshot keys": rewrapped}


def destroy_snapshot_key(snapshot: TrainingSnapshot) -> None:
    """Crypto-shred the snapshot's key: its files and pseudonyms can never be opened again."""
    snapshot.wrapped_key = b""
