"""Metrics read from the database or counted by the collector API, on both backends."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.db import commit, db
from portal.requests import service as requests
from portal.requests.models import DeletionScope
from tests.support.batches import keystroke_batch
from tests.support.collector_api import World, bearer
from tests.support.factories import create_person
from tests.support.identity import DPO_GROUPS
from tests.support.observability import scrape, value


@pytest.fixture
def settings(database_settings: dict[str, Any]) -> dict[str, Any]:
    return database_settings


@pytest.fixture
def world(app: Flask, client: FlaskClient) -> World:
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
    return World(app, client)


def test_ingested_and_refused_batches_are_counted(world: World, client: FlaskClient) -> None:
    token = world.collector()
    world.grant("sub-alex", "keystrokes")
    world.person("sub-bea")
    before = scrape(client)
    body = keystroke_batch("sub-alex", "one", "two", "three")
    stored = client.post("/api/v1/batches", json=body,
                         headers={**bearer(token), "Idempotency-Key": "batch-1"})
    assert stored.status_code == 201
    retried = client.post("/api/v1/batches", json=body,
                          headers={**bearer(token), "Idempotency-Key": "batch-1"})
    assert retried.status_code == 200
    refused = client.post("/api/v1/batches", json=keystroke_batch("sub-bea", "x"),
                          headers=bearer(token))
    assert refused.status_code == 403 and refused.json["error"] == "consent_required"
    invalid = client.post("/api/v1/batches", json={"subject": "sub-alex"}, headers=bearer(token))
    assert invalid.status_code == 400
    unknown = client.post("/api/v1/batches", json=body, headers=bearer("not-a-token"))
    assert unknown.status_code == 401
    # Reads of the API are not batches: a refused read counts nowhere here.
    assert client.get("/api/v1/consent", headers=bearer("not-a-token")).status_code == 401
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("portal_ingested_batches_total", category="keystrokes") == 1  # not the retry
    assert grew("portal_ingested_events_total", category="keystrokes") == 3
    assert grew("portal_refused_batches_total", reason="consent_required") == 1
    assert grew("portal_refused_batches_total", reason="invalid_request") == 1
    assert grew("portal_refused_batches_total", reason="unauthorized") == 1
    assert grew("portal_http_requests_total", endpoint="api.submit_batch", method="POST",
                status="201") == 1


def test_open_and_overdue_requests_are_read_from_the_database(app: Flask,
                                                               world: World,
                                                               client: FlaskClient) -> None:
    assert value(scrape(client), "portal_requests_overdue", kind="deletion") == 0
    with app.app_context():
        alex, bea = create_person("alex"), create_person("bea")
        dana = create_person("dana", groups=DPO_GROUPS)
        late = requests.submit_deletion_request(alex, scope=DeletionScope.ALL)
        requests.submit_deletion_request(bea, scope=DeletionScope.ALL)
        approved = requests.submit_deletion_request(create_person("chris"), scope=DeletionScope.ALL)
        requests.approve_deletion(approved, dpo=dana)
        cancelled = requests.submit_deletion_request(create_person("eli"), scope=DeletionScope.ALL)
        requests.cancel_request(cancelled, actor=cancelled.person)
        late.received_at -= dt.timedelta(days=70)
        late.due_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
        db.flush()
        commit()
    samples = scrape(client)
    assert value(samples, "portal_requests_open", kind="deletion", state="received") == 2
    assert value(samples, "portal_requests_open", kind="deletion", state="approved") == 1
    assert value(samples, "portal_requests_open", kind="deletion", state="cancelled") == 0
    assert value(samples, "portal_requests_overdue", kind="deletion") == 1
    assert value(samples, "portal_requests_overdue", kind="objection") == 0
