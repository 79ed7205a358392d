"""A database connection dropped while pooled costs the collectors no failed request.

The pool does not ping connections before lending them (one round trip per request saved);
the first statement of a request finds a dropped one, and runs again on a new connection.

PostgreSQL only, by construction: these tests take the ``postgres`` cluster itself (not the
``backend`` parameter), since only a server can drop the portal's connections.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask

from portal import create_app
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.cli import upgrade_database
from portal.db import commit, get_engine
from tests.support.batches import keystroke_batch
from tests.support.collector_api import World, bearer
from tests.support.config import portal_settings
from tests.support.identity import ISSUER
from tests.support.openapi import OpenAPICheckingClient
from tests.support.postgres import PostgresCluster

_numbers = itertools.count(1)


@pytest.fixture
def pg_world(postgres: PostgresCluster, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[World, str, str]]:
    """A portal on its own PostgreSQL database: the world, a token, and the database's name."""
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    name = f"api_dropped_{next(_numbers)}"
    app: Flask = create_app(portal_settings(postgres.create_database(name), ISSUER,
                                      "http://localhost"))
    app.config["TESTING"] = True
    upgrade_database(app)
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
    app.test_client_class = OpenAPICheckingClient
    world = World(app, app.test_client())
    world.grant("sub-a", "keystrokes")
    yield world, world.collector(), name
    get_engine(app).dispose()
    postgres.drop_database(name)


def _drop_connections(postgres: PostgresCluster, database: str) -> int:
    """Make the server end every connection to ``database``, as a restart would."""
    with psycopg.connect(postgres.url("postgres", driver=False), autocommit=True) as connection:
        return len(connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,)).fetchall())


def test_dropped_connections_cost_no_failed_request(
        postgres: PostgresCluster, pg_world: tuple[World, str, str]) -> None:
    world, token, database = pg_world
    client = world.client
    consent = {"query_string": {"subject": "sub-a", "category": "keystrokes"},
               "headers": bearer(token)}
    # Fill the pool: a consent check, a batch, a read in a transaction-less request.
    assert client.get("/api/v1/consent", **consent).status_code == 200
    assert client.post("/api/v1/batches", json=keystroke_batch("sub-a", "one"),
                       headers=bearer(token)).status_code == 201
    assert client.get("/api/v1/consent/changes", headers=bearer(token)).status_code == 200

    requests = [
        lambda: client.post("/api/v1/batches", json=keystroke_batch("sub-a", "two"),
                            headers=bearer(token)).status_code == 201,
        lambda: client.get("/api/v1/consent", **consent).json["allowed"] is True,
        lambda: client.get("/api/v1/consent/changes",
                           headers=bearer(token)).status_code == 200,
    ]
    for request in requests:
        assert _drop_connections(postgres, database) >= 1
        assert request()
    assert world.stored()[0] == 2
