"""Training clients and snapshots for the training API's tests, made through the real services.

Each helper runs in its own application context and commits, as a command would, so that
requests sent by the test client afterwards see it and never share its session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from portal.db import commit, db, utcnow
from portal.training.models import (
    SnapshotState,
    TrainedModel,
    TrainedModelSnapshot,
    TrainingClient,
    TrainingScope,
    TrainingSnapshot,
)
from portal.training.service import create_client, find_client, revoke_client

ALL_SCOPES = tuple(scope.value for scope in TrainingScope)


def training_client(app: Flask, name: str = "code pipeline",
                    purposes: Iterable[str] = ("code_and_text_completion",),
                    scopes: Iterable[str] = ALL_SCOPES) -> str:
    """Register a training client; return its token."""
    with app.app_context():
        _client, token = create_client(name, purposes=list(purposes), scopes=list(scopes))
        commit()
        return token


def revoke(app: Flask, name: str) -> None:
    """Revoke the training client ``name``."""
    with app.app_context():
        client = find_client(name)
        assert client is not None
        revoke_client(client)
        commit()


def ask(**changes: Any) -> dict[str, Any]:
    """Return a valid request for a snapshot of last month's keystrokes, with ``changes``."""
    end = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    body: dict[str, Any] = {
        "purpose": "code_and_text_completion", "categories": ["keystrokes"],
        "collected_from": (end - dt.timedelta(days=30)).isoformat().replace("+00:00", "Z"),
        "collected_to": end.isoformat().replace("+00:00", "Z"), "max_dss_level": 2}
    body.update(changes)
    return body


def stamp(moment: dt.datetime) -> str:
    """Write ``moment`` as RFC 3339 in UTC."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def rows(app: Flask) -> dict[str, int]:
    """Count what the training API may write: clients, snapshots, models and their links."""
    with app.app_context():
        return {model.__tablename__: db.scalar(select(func.count()).select_from(model)) or 0
                for model in (TrainingClient, TrainingSnapshot, TrainedModel,
                              TrainedModelSnapshot)}


def set_state(app: Flask, public_id: str, state: SnapshotState) -> None:
    """Put a snapshot in ``state`` directly (the build is another part's work)."""
    with app.app_context():
        snapshot = db.scalar(select(TrainingSnapshot)
                             .where(TrainingSnapshot.public_id == public_id))
        assert snapshot is not None
        snapshot.state = state
        if state is SnapshotState.READY:
            snapshot.ready_at = utcnow()
        commit()
