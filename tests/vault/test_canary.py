"""No collected content in clear at rest: canaries go in, and neither the SQLite file nor a
PostgreSQL dump contains them."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.engine import make_url

from portal.db import commit, db, get_engine
from portal.vault.models import CollectedBatch
from portal.vault.reading import read_own_batches
from tests.support.batches import iso, keystroke_events, recent
from tests.support.factories import create_person, grant
from tests.support.postgres import PostgresCluster, _binary
from tests.support.vault import ingest


def _sqlite_bytes(app: Flask) -> bytes:
    """Return every byte SQLite keeps on disk for the database, after checkpointing the WAL."""
    engine = get_engine(app)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    database = Path(str(make_url(app.config["DATABASE_URL"]).database))
    files = [database, *(Path(f"{database}{suffix}") for suffix in ("-wal", "-shm", "-journal"))]
    return b"".join(path.read_bytes() for path in files if path.exists())


def _pg_dump(cluster: PostgresCluster, app: Flask) -> bytes:
    """Return a plain-SQL dump of the test database, made with the cluster's own pg_dump."""
    name = str(make_url(app.config["DATABASE_URL"]).database)
    command = [_binary("pg_dump"), "--no-owner", "--dbname", cluster.url(name, driver=False)]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, check=True, capture_output=True, timeout=120).stdout


def test_canaries_appear_nowhere_at_rest(app: Flask, catalog: int, backend: str,
                                         request: pytest.FixtureRequest) -> None:
    canaries = [f"CANARY-{uuid.uuid4().hex}" for _ in range(3)]
    with app.app_context():
        alex = create_person("sub-canary-subject", email=False)
        for key in ("keystrokes", "ai_transcripts", "conversations"):
            grant(alex, key)
        ingest(alex, "keystrokes", keystroke_events(*[f"password = '{c}'" for c in canaries]))
        ingest(alex, "ai_transcripts", [{
            "t": iso(recent(2)), "tool": "internal assistant",
            "prompt": f"Summarise the merger plan {canaries[0]} for the board.",
            "response": f"The plan {canaries[1]} has three parts.",
            "conversation_id": "conv_8d41c2a9f03e"}])
        ingest(alex, "conversations", [{
            "t": iso(recent(1)), "channel_id": "c-5b07e2d1a9c4",
            "message_id": "m-19f0c2aa7b3e4d61", "author": "self",
            "participants": ["p-3f9c1a7e22b0"], "text": f"My diagnosis is {canaries[2]}."}])
        commit()
        read = "".join(str(batch.events) for batch in read_own_batches(alex))
        assert all(canary in read for canary in canaries)
        nonces = list(db.scalars(select(CollectedBatch.nonce)))

    if backend == "sqlite":
        at_rest = _sqlite_bytes(app)
    else:
        at_rest = _pg_dump(request.getfixturevalue("postgres"), app)
    # The search works: what is stored in clear (the subject) is found, and so are the
    # binary columns (raw in SQLite, hex in a dump), where compressed-only content would be.
    assert b"sub-canary-subject" in at_rest
    for nonce in nonces:
        assert nonce in at_rest if backend == "sqlite" else nonce.hex().encode() in at_rest
    lowered = at_rest.lower()
    for canary in canaries:
        raw = canary.encode()
        assert raw not in at_rest
        assert raw.hex().encode() not in lowered  # how pg_dump writes bytea
        assert raw.lower() not in lowered
