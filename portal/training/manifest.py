"""A snapshot's signed manifest: what it holds, why the rest was left out, and every file's hash.

Sealing a snapshot (once every part is written) adds its ``croissant.json`` and signs a
manifest with the portal's receipt key (:func:`portal.consent.receipts.sign_document`, ES256):
the snapshot's number, purpose, categories, period and highest DSS level, the notice version
consent was checked against, the records included and left out per reason, and the path, size
and SHA-256 of every file as the client receives it (decrypted). Anyone holding the published
key (``/.well-known/jwks.json``) checks it offline with ``portal training verify`` (or
``portal receipts verify``, which knows the kind), and with ``--files`` checks the files too.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from joserfc.jwk import KeySet
from sqlalchemy import select

from portal.catalog.models import NoticeVersion
from portal.consent import receipts
from portal.db import db, utcnow
from portal.hashchain import format_time
from portal.training import croissant
from portal.training.files import EncryptedWriter, file_aad, snapshot_file
from portal.training.keys import SnapshotKey
from portal.training.models import (
    ExclusionReason,
    PartState,
    SnapshotPart,
    TrainingSnapshot,
)

MANIFEST_TYPE = "training-manifest"
MANIFEST_VERSION = 1
CROISSANT_FILE = "croissant.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ManifestFile:
    """A file a client may download: its path in the snapshot, its size and SHA-256 (plaintext)."""

    path: str
    size: int
    sha256: str


def _parts(snapshot: TrainingSnapshot) -> list[SnapshotPart]:
    # Queried, not snapshot.parts: a worker adds and finishes parts by id, in this session or
    # another, and a relationship loaded earlier would not show them.
    return list(db.scalars(select(SnapshotPart).where(SnapshotPart.snapshot_id == snapshot.id)
                           .order_by(SnapshotPart.number)))


def _data_files(snapshot: TrainingSnapshot) -> list[ManifestFile]:
    return [ManifestFile(part.path, part.size, part.sha256) for part in _parts(snapshot)
            if part.state is PartState.DONE and part.path]


def _claims_of(token: str) -> dict[str, Any]:
    """Read the claims of a manifest the portal signed itself (stored, so not checked again)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload)
                                                                                    % 4)))
    return decoded


def manifest_files(snapshot: TrainingSnapshot) -> list[ManifestFile]:
    """Return the files a client may download: the data parts, then ``croissant.json``.

    Before the snapshot is sealed there is no ``croissant.json`` and only the parts done so
    far are listed.
    """
    if snapshot.manifest_jws:
        return [ManifestFile(str(item["path"]), int(item["size"]), str(item["sha256"]))
                for item in _claims_of(snapshot.manifest_jws)["files"]]
    return _data_files(snapshot)


def _write_croissant(snapshot: TrainingSnapshot, key: SnapshotKey,
                     files: list[ManifestFile], *, issued_at: dt.datetime) -> ManifestFile:
    rows: dict[str, int] = defaultdict(int)
    for part in _parts(snapshot):
        rows[part.category_key] += part.rows
    document = croissant.build_croissant(snapshot, files, rows=rows, issued_at=issued_at)
    encoded = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
    with EncryptedWriter(snapshot_file(snapshot, CROISSANT_FILE), key,
                         aad=file_aad(snapshot, CROISSANT_FILE)) as writer:
        writer.write(encoded)
    return ManifestFile(CROISSANT_FILE, writer.size, writer.sha256)


def build_manifest(snapshot: TrainingSnapshot, files: list[ManifestFile], *,
                   issued_at: dt.datetime) -> dict[str, Any]:
    """Return the manifest's claims (counts and hashes, no person named)."""
    base_url = str(current_app.config["BASE_URL"])
    notice = db.get(NoticeVersion, snapshot.notice_version_id)
    totals = snapshot.totals or {}
    rows: dict[str, int] = {key: 0 for key in snapshot.categories}
    for part in _parts(snapshot):
        rows[part.category_key] = rows.get(part.category_key, 0) + part.rows
    return {
        "type": MANIFEST_TYPE,
        "version": MANIFEST_VERSION,
        "iss": base_url,
        "iat": int(issued_at.timestamp()),
        "jti": snapshot.public_id,
        "publicKey": base_url + receipts.JWKS_PATH,
        "snapshot": {
            "number": snapshot.number,
            "id": snapshot.public_id,
            "purpose": snapshot.purpose_key,
            "categories": list(snapshot.categories),
            "collectedFrom": format_time(snapshot.collected_from),
            "collectedTo": format_time(snapshot.collected_to),
            "maxDssLevel": snapshot.max_dss_level,
            "requestedAt": format_time(snapshot.requested_at),
        },
        # One version today (the one in force when the snapshot was asked for); a list so that
        # a snapshot checked against several versions would say so without a new format.
        "noticeVersions": [notice.number] if notice is not None else [],
        "counts": {
            "included": int(totals.get("included", sum(rows.values()))),
            "excluded": {reason.value: int((totals.get("excluded") or {}).get(reason.value, 0))
                         for reason in ExclusionReason},
            "rows": rows,
        },
        "files": [{"path": item.path, "size": item.size, "sha256": item.sha256}
                  for item in files],
        "issuedAt": format_time(issued_at),
    }


def seal_snapshot(snapshot: TrainingSnapshot, key: SnapshotKey) -> str:
    """Write the snapshot's ``croissant.json`` and sign its manifest; return the JWS (flushes).

    Called once every part is done and ``snapshot.totals`` is set.

    :raise ValueError: a part is not done yet.
    """
    unfinished = [part.number for part in _parts(snapshot) if part.state is not PartState.DONE]
    if unfinished:
        raise ValueError(f"snapshot {snapshot.number} has parts not done: {unfinished}")
    issued_at = utcnow()
    files = _data_files(snapshot)
    files.append(_write_croissant(snapshot, key, files, issued_at=issued_at))
    snapshot.manifest_jws = receipts.sign_document(build_manifest(snapshot, files,
                                                                  issued_at=issued_at))
    db.flush()
    return snapshot.manifest_jws


# --- checking --------------------------------------------------------------------------------

def check_manifest(claims: dict[str, Any], signed_by: str) -> receipts.ReceiptCheck:
    """Check a manifest's signed claims for consistency (the signature is already checked)."""
    try:
        if claims["version"] != MANIFEST_VERSION:
            return receipts.ReceiptCheck(False, f"unknown manifest version {claims['version']!r}")
        snapshot, counts, files = claims["snapshot"], claims["counts"], claims["files"]
        paths = [str(item["path"]) for item in files]
        if len(set(paths)) != len(paths):
            return receipts.ReceiptCheck(False, "a file is listed twice")
        if CROISSANT_FILE not in paths:
            return receipts.ReceiptCheck(False, f"{CROISSANT_FILE} is not listed")
        for item in files:
            if not _SHA256.match(str(item["sha256"])) or int(item["size"]) < 0:
                return receipts.ReceiptCheck(False, f"file {item['path']}: malformed size or "
                                                    "SHA-256")
        if set(counts["rows"]) != set(snapshot["categories"]):
            return receipts.ReceiptCheck(False, "the counted categories differ from the "
                                                "snapshot's")
        for reason in counts["excluded"]:
            ExclusionReason(reason)
        left_out = sum(int(count) for count in counts["excluded"].values())
        summary = (f"training dataset {snapshot['number']} ({snapshot['id']}) for "
                   f"{snapshot['purpose']}: {', '.join(snapshot['categories'])}, "
                   f"{int(counts['included']):,} records included, {left_out:,} left out, "
                   f"{len(files)} files, notice version "
                   f"{', '.join(str(number) for number in claims['noticeVersions'])}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return receipts.ReceiptCheck(False, f"a required field is missing or malformed ({exc})")
    return receipts.ReceiptCheck(True, signed_by, claims, summary=summary)


def verify_manifest(token: str, keys: KeySet | None = None) -> receipts.ReceiptCheck:
    """Check a manifest: its signature (default: this installation's keys) and its content."""
    if keys is None:
        keys = receipts.load_keys(receipts.public_jwks())
    opened = receipts.open_signed(token, keys)
    if not opened.valid:
        return opened
    if opened.claims.get("type") != MANIFEST_TYPE:
        return receipts.ReceiptCheck(False, "not a training dataset manifest (type "
                                            f"{opened.claims.get('type')!r})")
    return check_manifest(opened.claims, opened.reason)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_READ_SIZE):
            digest.update(block)
    return digest.hexdigest()


def verify_files(claims: dict[str, Any], folder: Path) -> list[str]:
    """Check the downloaded (decrypted) files in ``folder`` against the manifest; list problems."""
    problems = []
    root = folder.resolve()
    for item in claims.get("files", []):
        relative = str(item["path"])
        path = (folder / relative).resolve()
        if not path.is_relative_to(root):
            problems.append(f"{relative}: points outside the folder")
            continue
        if not path.is_file():
            problems.append(f"{relative}: missing")
            continue
        size = path.stat().st_size
        if size != int(item["size"]):
            problems.append(f"{relative}: {size} bytes, the manifest says {item['size']}")
        elif _sha256_of(path) != item["sha256"]:
            problems.append(f"{relative}: its SHA-256 differs from the manifest's")
    return problems


def register_checks(app: Flask) -> None:
    """Have ``portal receipts verify`` check manifests too (one way of checking signed files)."""
    receipts.register_document_check(app, MANIFEST_TYPE, check_manifest)
