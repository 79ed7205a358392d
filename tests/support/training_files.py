"""A small sealed-ready training snapshot made directly from rows, for the file and manifest tests.

The build itself (portal.training.build) has tests of its own; these helpers make just what
sealing needs: a client, a snapshot with its key, parts DONE with Parquet files written through
:class:`~portal.training.files.EncryptedWriter`, and the totals. Functions work in the caller's
application context and flush.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select

from portal.catalog.models import Category
from portal.catalog.notices import current_notice
from portal.db import db, utcnow
from portal.training.files import EncryptedWriter, file_aad, read_decrypted, snapshot_file
from portal.training.keys import SnapshotKey, new_snapshot_key
from portal.training.manifest import manifest_files
from portal.training.models import (
    PartState,
    SnapshotPart,
    SnapshotState,
    TrainingSnapshot,
)
from portal.training.schema import arrow_schema
from tests.support.training import make_client

PERIOD = (dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 31, tzinfo=dt.UTC))


def create_snapshot(categories: Sequence[str], *, purpose: str = "code_and_text_completion",
                    max_dss_level: int = 2) -> tuple[TrainingSnapshot, SnapshotKey]:
    """Add a training client and a building snapshot with its own key; return both (flushed)."""
    notice = current_notice()
    assert notice is not None, "publish the catalog first"
    client = make_client(f"pipeline-{os.urandom(3).hex()}", purposes=[purpose],
                         scopes=["snapshots"])
    number = (db.scalar(select(func.max(TrainingSnapshot.number))) or 0) + 1
    snapshot = TrainingSnapshot(number=number, client_id=client.id, purpose_key=purpose,
                                categories=list(categories), collected_from=PERIOD[0],
                                collected_to=PERIOD[1], max_dss_level=max_dss_level,
                                notice_version_id=notice.id, state=SnapshotState.BUILDING)
    snapshot.public_id = str(uuid.uuid4())
    key = new_snapshot_key(snapshot)
    db.add(snapshot)
    db.flush()
    return snapshot, key


def write_part(snapshot: TrainingSnapshot, key: SnapshotKey, *, number: int, category: str,
               events: Sequence[Mapping[str, Any]], person_ids: Sequence[int],
               row_group_size: int = 2) -> SnapshotPart:
    """Write one part's Parquet file (events of the people, pseudonymised) and mark it DONE."""
    found = db.get(Category, category)
    assert found is not None
    schema = arrow_schema(found.event_schema)
    rows = [{"person": key.pseudonym(person_id), **event}
            for person_id, event in zip(person_ids, events, strict=True)]
    table = pa.Table.from_pylist(rows, schema=schema)
    relative = f"{category}/part-{number:05d}.parquet"
    with EncryptedWriter(snapshot_file(snapshot, relative), key,
                         aad=file_aad(snapshot, relative)) as writer:
        sink = pa.PythonFile(writer, mode="w")
        with pq.ParquetWriter(sink, schema) as parquet:
            parquet.write_table(table, row_group_size=row_group_size)
    part = SnapshotPart(snapshot_id=snapshot.id, number=number, category_key=category,
                        first_person_id=min(person_ids), last_person_id=max(person_ids),
                        state=PartState.DONE, path=relative, rows=len(rows), size=writer.size,
                        sha256=writer.sha256, finished_at=utcnow())
    db.add(part)
    db.flush()
    return part


def decrypt_snapshot(snapshot: TrainingSnapshot, key: SnapshotKey, target: Path) -> list[Path]:
    """Decrypt every file a client may download into ``target``, as a client would receive them."""
    written = []
    for item in manifest_files(snapshot):
        path = target / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as stream:
            for chunk in read_decrypted(snapshot_file(snapshot, item.path), key,
                                        aad=file_aad(snapshot, item.path)):
                stream.write(chunk)
        written.append(path)
    return written


def keystroke_events(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """Return ``count`` keystroke events as the catalog's event schema has them."""
    return [{"t": PERIOD[0] + dt.timedelta(minutes=start + index), "app": "code editor",
             "keys": f"total += row.amount  # {start + index}", "duration_ms": 1000 + index}
            for index in range(count)]


def conversation_events(count: int) -> list[dict[str, Any]]:
    """Return ``count`` conversation messages (with colleagues' workplace pseudonyms)."""
    return [{"t": PERIOD[0] + dt.timedelta(hours=index), "channel_id": "c-5b07e2d1a9c4",
             "message_id": f"m-{index:016x}", "author": "self",
             "participants": ["p-3f9c1a7e22b0", "p-a81d44c09e17"][: 1 + index % 2],
             "text": f"Can we move the review to Thursday? ({index})"}
            for index in range(count)]


def small_sealable_snapshot() -> tuple[TrainingSnapshot, SnapshotKey]:
    """Return a snapshot of keystrokes (two parts: 5 and 3 events) and conversations (4), done.

    The totals say 12 records included and some left out, as a build would have counted.
    """
    snapshot, key = create_snapshot(["keystrokes", "conversations"])
    write_part(snapshot, key, number=1, category="keystrokes", events=keystroke_events(5),
               person_ids=[1, 1, 2, 2, 2])
    write_part(snapshot, key, number=2, category="keystrokes",
               events=keystroke_events(3, start=5), person_ids=[7, 8, 8])
    write_part(snapshot, key, number=3, category="conversations",
               events=conversation_events(4), person_ids=[1, 1, 2, 7])
    snapshot.totals = {"included": 12,
                       "excluded": {"no_consent": 40, "sensitive_document": 3,
                                    "colleague_not_consented": 2}}
    db.flush()
    return snapshot, key
