"""Training clients, snapshots and their holdings written as rows, for the lineage tests.

Works in the caller's application context and only flushes. A snapshot made here has a real
key (``keys.new_snapshot_key``) and, with ``files``, files in its folder; what a worker would
have built is stated, not built, so the marking, the notices and retirement are tested alone.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from portal.catalog.notices import current_notice
from portal.db import db, utcnow
from portal.training import keys
from portal.training.files import snapshot_folder
from portal.training.models import (
    SnapshotHolding,
    SnapshotState,
    TrainedModel,
    TrainedModelSnapshot,
    TrainingClient,
    TrainingSnapshot,
)

DAY = dt.timedelta(days=1)


def create_snapshot(client: TrainingClient, holdings: Mapping[tuple[int, str], int], *,
                    excluded: Mapping[tuple[int, str], Mapping[str, int]] | None = None,
                    state: SnapshotState = SnapshotState.READY,
                    requested_at: dt.datetime | None = None,
                    collected_from: dt.datetime | None = None,
                    collected_to: dt.datetime | None = None,
                    files: Iterable[str] = ()) -> TrainingSnapshot:
    """Write a snapshot holding ``{(person_id, category): included}``; return it (flushed)."""
    notice = current_notice()
    assert notice is not None
    now = utcnow()
    number = (db.scalar(select(func.max(TrainingSnapshot.number))) or 0) + 1
    categories = sorted({category for _person, category in holdings})
    snapshot = TrainingSnapshot(
        public_id=str(uuid.uuid4()), number=number, client_id=client.id,
        purpose_key="assistant", categories=categories,
        collected_from=collected_from or now - 30 * DAY, collected_to=collected_to or now,
        max_dss_level=2, notice_version_id=notice.id, state=SnapshotState.QUEUED,
        requested_at=requested_at or now,
        totals={"included": sum(holdings.values()), "excluded": {}})
    key = keys.new_snapshot_key(snapshot)
    db.add(snapshot)
    db.flush()
    for (person_id, category), included in holdings.items():
        db.add(SnapshotHolding(snapshot_id=snapshot.id, person_id=person_id,
                               category_key=category, included=included,
                               excluded=dict((excluded or {}).get((person_id, category), {}))))
    folder = snapshot_folder(snapshot)
    for relative in files:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not a real Parquet file: only that it exists, and is gone after retirement, matters.
        path.write_bytes(key.pseudonym(0).encode() * 64)
    snapshot.state = state
    if state is SnapshotState.READY:
        snapshot.ready_at = now
    db.flush()
    return snapshot


def create_model(client: TrainingClient, snapshots: Iterable[TrainingSnapshot], *,
                 name: str = "assistant", version: str = "1") -> TrainedModel:
    """Register a model trained on ``snapshots`` as rows."""
    model = TrainedModel(client_id=client.id, name=name, version=version)
    db.add(model)
    db.flush()
    for snapshot in snapshots:
        db.add(TrainedModelSnapshot(model_id=model.id, snapshot_id=snapshot.id))
    db.flush()
    return model


def folder_of(snapshot: TrainingSnapshot) -> Path:
    """Return the snapshot's folder."""
    return snapshot_folder(snapshot)


# --- a training client's webhook endpoint ------------------------------------------------------

@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it is sent and answers 204."""

    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """Serve a webhook endpoint for the duration of the block."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append({"headers": {name.lower(): value
                                               for name, value in self.headers.items()},
                                   "body": body})
            self.send_response(204)
            self.end_headers()
            state.arrived.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/training"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def verified_payload(request: dict[str, Any], secret: str) -> dict[str, Any]:
    """Check a received notice's Standard Webhooks signature; return its JSON body."""
    headers = request["headers"]
    message = (f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode()
               + request["body"])
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    payload: dict[str, Any] = json.loads(request["body"])
    return payload
