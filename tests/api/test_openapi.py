"""The OpenAPI document: valid OpenAPI 3.1, and every example request works when sent.

(Every answer of every API test is checked against the document by the ``client`` fixture.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from portal.api import openapi
from tests.support.collector_api import World, bearer
from tests.support.openapi import DOCUMENT, json_pointer

OPERATIONS = [(path, method, operation)
              for path, item in openapi.document()["paths"].items()
              for method, operation in item.items()]


def test_the_document_is_valid_openapi_3_1(app: Flask, client: FlaskClient) -> None:
    served = client.get("/api/v1/openapi.json").json
    # This API's document, with what higher packages add (the training API).
    assert served == json.loads(json.dumps(openapi.served_document(app)))
    assert openapi.document()["paths"].items() <= served["paths"].items()
    validate(served)


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS,
                         ids=[f"{method} {path}" for path, method, _ in OPERATIONS])
def test_every_operation_documents_its_errors_and_has_an_example(
        path: str, method: str, operation: dict[str, Any]) -> None:
    assert operation["summary"] and operation["operationId"]
    if operation.get("security", True):
        assert {"401", "429", "500"} <= set(operation["responses"])
    for parameter in operation.get("parameters", []):
        if parameter["required"]:
            assert "example" in parameter, parameter["name"]
    body = operation.get("requestBody")
    if body:
        content = body["content"]["application/json"]
        pointer = json_pointer("paths", path, method, "requestBody", "content", "application/json",
                           "schema")
        # The example is a valid request by the document's own schema.
        assert not list(DOCUMENT.validator(pointer).iter_errors(content["example"]))


def _example_request(path: str, method: str, operation: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"method": method.upper(), "headers": {}, "query_string": {}}
    for parameter in operation.get("parameters", []):
        if "example" not in parameter:
            continue
        if parameter["in"] == "query":
            request["query_string"][parameter["name"]] = parameter["example"]
        elif parameter["in"] == "header":
            request["headers"][parameter["name"]] = parameter["example"]
    if "requestBody" in operation:
        request["json"] = operation["requestBody"]["content"]["application/json"]["example"]
    return request


def test_every_example_request_works_when_sent(world: World, client: FlaskClient) -> None:
    # The portal the examples describe: the example person gave consent, withdrew it (the
    # change acknowledged in the example is the second of the ledger), and gave it again.
    subject, category = openapi.EXAMPLE_SUBJECT, openapi.EXAMPLE_CATEGORY
    world.grant(subject, category)
    world.withdraw(subject, category)
    world.grant(subject, category)
    token = world.collector("example agent", (category,))
    for path, method, operation in OPERATIONS:
        request = _example_request(path, method, operation)
        request["headers"].update(bearer(token))
        response = client.open(path, **request)
        assert response.status_code in {200, 201}, (path, response.json)
    changes = client.get("/api/v1/consent/changes", headers=bearer(token)).json["changes"]
    assert changes[int(openapi.EXAMPLE_CHANGE_CURSOR) - 1]["state"] == "ConsentWithdrawn"
    assert world.stored() == (1, 1, 1)
