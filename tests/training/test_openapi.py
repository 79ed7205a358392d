"""The training API in the served OpenAPI document: valid, complete, and its examples work."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from portal.api import openapi as collector_openapi
from portal.training import openapi
from portal.training.models import SnapshotState
from tests.support.collector_api import bearer
from tests.support.config import portal_settings
from tests.support.identity import ISSUER
from tests.support.openapi import OpenAPICheckingClient, OpenAPIDocument, json_pointer
from tests.support.training_api import set_state, training_client

COLLECTOR_PATHS = collector_openapi.document()["paths"]
ADDED = openapi.addition(dt.datetime.now(dt.UTC).date())
OPERATIONS = [(path, method, operation)
              for path, item in ADDED["paths"].items() for method, operation in item.items()]


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """A real database, no identity provider: the API signs nobody in."""
    return portal_settings(database_url, ISSUER, "http://localhost")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = OpenAPICheckingClient
    return app.test_client()


def test_the_served_document_describes_the_training_api_and_stays_valid(
        client: FlaskClient) -> None:
    served = client.get("/api/v1/openapi.json").json
    validate(served)
    assert {path for path in served["paths"] if path.startswith("/api/v1/training/")} == {
        "/api/v1/training/snapshots", "/api/v1/training/snapshots/{id}",
        "/api/v1/training/snapshots/{id}/files/{path}", "/api/v1/training/snapshots/{id}/retire",
        "/api/v1/training/models", "/api/v1/training/changes"}
    assert COLLECTOR_PATHS.items() <= served["paths"].items()  # the collector API's paths unchanged
    assert "trainingToken" in served["components"]["securitySchemes"]


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS,
                         ids=[f"{method} {path}" for path, method, _ in OPERATIONS])
def test_every_training_operation_documents_its_errors_and_has_an_example(
        app: Flask, path: str, method: str, operation: dict[str, Any]) -> None:
    assert operation["summary"] and operation["operationId"]
    assert operation["security"] == [{"trainingToken": []}]
    assert {"401", "403", "429", "500"} <= set(operation["responses"])
    for parameter in operation.get("parameters", []):
        assert "example" in parameter, parameter["name"]
    body = operation.get("requestBody")
    if body:
        with app.app_context():
            document = OpenAPIDocument(collector_openapi.served_document(app))
        content = body["content"]["application/json"]
        pointer = json_pointer("paths", path, method, "requestBody", "content",
                               "application/json", "schema")
        assert not list(document.validator(pointer).iter_errors(content["example"]))


@pytest.mark.usefixtures("catalog")
def test_the_example_requests_work_when_sent(app: Flask, client: FlaskClient) -> None:
    token = training_client(app, purposes=[openapi.EXAMPLE_PURPOSE])
    paths = ADDED["paths"]
    ask = paths["/api/v1/training/snapshots"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    queued = client.post("/api/v1/training/snapshots", json=ask, headers=bearer(token))
    assert queued.status_code == 202, queued.json
    snapshot_id = queued.json["id"]
    shown = client.get(f"/api/v1/training/snapshots/{snapshot_id}", headers=bearer(token))
    assert shown.status_code == 200, shown.json

    set_state(app, snapshot_id, SnapshotState.READY)
    model = paths["/api/v1/training/models"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    assert model["snapshots"] == [openapi.EXAMPLE_SNAPSHOT_ID]
    registered = client.post("/api/v1/training/models",
                             json={**model, "snapshots": [snapshot_id]}, headers=bearer(token))
    assert registered.status_code == 201, registered.json
