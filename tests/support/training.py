"""Training snapshots in tests: a client, a snapshot asked for, records to build from, reading
the dataset back.

Everything here works in the caller's application context and only flushes (the caller, or
``build.work``, commits), except where it says otherwise.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select

from portal.api.service import hash_token, new_webhook_secret, seal_secret
from portal.auth.models import Person
from portal.catalog.notices import current_notice
from portal.db import db
from portal.training import files
from portal.training.keys import new_snapshot_key, open_snapshot_key
from portal.training.models import (
    SnapshotHolding,
    SnapshotPart,
    SnapshotState,
    TrainingClient,
    TrainingScope,
    TrainingSnapshot,
)
from tests.support.batches import iso
from tests.support.vault import ingest

ALL_SCOPES = tuple(str(scope) for scope in TrainingScope)
#: A purpose the tests ask for (the catalog's list of training purposes is H3's).
PURPOSE = "assistant_model"


def make_client(name: str = "pipeline", *, purposes: Sequence[str] = (PURPOSE,),
                scopes: Iterable[str] = ALL_SCOPES, webhook_url: str = "") -> TrainingClient:
    """Register a training client as rows, or return the one of that name (flushed).

    Its token is of no use to these tests (the API's tests register through the service);
    its webhook secret is sealed as the service seals it: ``open_webhook_secret`` reads it.
    """
    client = db.scalar(select(TrainingClient).where(TrainingClient.name == name))
    if client is None:
        client = TrainingClient(name=name, purposes=list(purposes), scopes=list(scopes),
                                webhook_url=webhook_url,
                                webhook_secret_sealed=seal_secret(new_webhook_secret()),
                                token_hash=hash_token(secrets.token_urlsafe(32)))
        db.add(client)
        db.flush()
    return client


def ask_snapshot(*, categories: Sequence[str], collected_from: dt.datetime,
                 collected_to: dt.datetime, max_dss_level: int = 4, purpose: str = PURPOSE,
                 client: TrainingClient | None = None) -> TrainingSnapshot:
    """Queue a snapshot as the API would (state ``queued``, its key, the current notice)."""
    notice = current_notice()
    assert notice is not None
    number = (db.scalar(select(func.max(TrainingSnapshot.number))) or 0) + 1
    snapshot = TrainingSnapshot(
        number=number, client_id=(client or make_client()).id, purpose_key=purpose,
        categories=list(categories), collected_from=collected_from, collected_to=collected_to,
        max_dss_level=max_dss_level, notice_version_id=notice.id, state=SnapshotState.QUEUED,
        public_id=str(uuid.uuid4()), totals={})
    new_snapshot_key(snapshot)
    db.add(snapshot)
    db.flush()
    return snapshot


# --- records to build from -------------------------------------------------------------------

def keystrokes(person: Person, *moments: dt.datetime, dss_level: int = 2,
               text: str = "typed") -> None:
    """Store one keystrokes batch with a record at each of ``moments``."""
    ingest(person, "keystrokes", [{"t": iso(moment), "app": "code editor", "keys": text,
                                   "duration_ms": 100} for moment in moments],
           dss_level=dss_level)


def ratings(person: Person, *rated: tuple[dt.datetime, int]) -> None:
    """Store one sensitivity_ratings batch: (moment, DSS level of the document) each."""
    ingest(person, "sensitivity_ratings",
           [{"t": iso(moment), "document_id": "doc-" + secrets.token_hex(6), "dss_level": level,
             "classifier": "dss-classifier 3.2"} for moment, level in rated], dss_level=1)


def message(moment: dt.datetime, author: str, participants: Sequence[str],
            text: str = "hello") -> dict[str, Any]:
    """Return one conversations record."""
    return {"t": iso(moment), "channel_id": "c-" + "1" * 12,
            "message_id": "m-" + secrets.token_hex(8), "author": author,
            "participants": list(participants), "text": text}


# --- reading back ----------------------------------------------------------------------------

def parts(snapshot: TrainingSnapshot) -> list[SnapshotPart]:
    """Return the snapshot's parts, in order, as stored now."""
    return list(db.scalars(select(SnapshotPart).where(SnapshotPart.snapshot_id == snapshot.id)
                           .order_by(SnapshotPart.number)
                           .execution_options(populate_existing=True)))


def read_part(snapshot: TrainingSnapshot, part: SnapshotPart) -> pa.Table:
    """Decrypt and read one part's Parquet file."""
    key = open_snapshot_key(snapshot)
    path = files.snapshot_folder(snapshot) / part.path
    plain = b"".join(files.read_decrypted(path, key, aad=files.file_aad(snapshot, part.path)))
    return pq.read_table(io.BytesIO(plain))


def read_dataset(snapshot: TrainingSnapshot, category_key: str) -> pa.Table:
    """Read every part of one category into one table."""
    tables = [read_part(snapshot, part) for part in parts(snapshot)
              if part.category_key == category_key]
    assert tables, f"no part of {category_key}"
    return pa.concat_tables(tables)


def holding(snapshot: TrainingSnapshot, person: Person, category_key: str,
            ) -> tuple[int, dict[str, int]]:
    """Return a person's (included, excluded by reason) in a snapshot; (0, {}) if no row."""
    row = db.get(SnapshotHolding, (snapshot.id, person.id, category_key),
                 populate_existing=True)
    return (row.included, dict(row.excluded)) if row is not None else (0, {})


def reload(snapshot: TrainingSnapshot) -> TrainingSnapshot:
    """Return the snapshot as stored now."""
    return db.get_one(TrainingSnapshot, snapshot.id, populate_existing=True)
