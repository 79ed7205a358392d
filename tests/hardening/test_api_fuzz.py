"""Fuzz the collector API from its own OpenAPI document (schemathesis), on both databases.

Every operation gets at least 300 valid and 300 invalid requests, generated from the served
document. No answer may be a 5xx, and every answer must match the document: status, media
type and body schema. (Schemathesis's own pytest plugin does not run under pytest 9 yet, so
the strategies are driven with Hypothesis directly.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

# Where every 4.x release keeps them (some re-export them from schemathesis.checks, some not).
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.collector_api import World
from tests.support.training_api import ask, training_client

EXAMPLES = 300
# The document's own address takes no input, so there is nothing to fuzz there.
# What the issue asks: no 5xx, and no answer outside the document. (Schemathesis's checks of
# the requests themselves are left out: an unknown query parameter is ignored, as HTTP
# services do, and the bearer token is always sent so that requests reach past the door.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
OPERATIONS = ("GET /api/v1/consent", "GET /api/v1/consent/changes", "POST /api/v1/batches",
              "POST /api/v1/consent/acknowledgements")
#: The training API's, served by the same app and called with a training client's token.
TRAINING_OPERATIONS = ("POST /api/v1/training/snapshots", "GET /api/v1/training/snapshots/{id}",
                       "GET /api/v1/training/snapshots/{id}/files/{path}",
                       "POST /api/v1/training/snapshots/{id}/retire",
                       "POST /api/v1/training/models", "GET /api/v1/training/changes")


@pytest.fixture
def collector_token(world: World) -> str:
    """A collector of every category, and a person who consented to some, so that the
    fuzzer reaches the code behind authentication and the consent gate too."""
    world.grant("sub-fuzz", "keystrokes", "pointer", "clicks")
    return world.collector("fuzz agent", ("pointer", "clicks", "keystrokes", "ai_transcripts",
                                          "conversations", "performance",
                                          "sensitivity_ratings"))


@pytest.fixture
def training_token(app: Flask, world: World) -> str:
    """A training client for every purpose of the shipped catalog, with a queued snapshot."""
    token = training_client(app, "fuzz pipeline", purposes=(
        "assistant_workflows", "code_and_text_completion", "conversation_summaries"))
    response = app.test_client().post("/api/v1/training/snapshots", json=ask(),
                                      headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.json
    return token


def test_the_document_lists_every_operation(app: Flask) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels == set(OPERATIONS) | set(TRAINING_OPERATIONS)


# Each case costs a request; on both databases the fuzz would double the suite's longest
# part. It runs on PostgreSQL, the production database (where it found the cursor bug).
@pytest.mark.postgresql_only
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
@pytest.mark.parametrize("label", OPERATIONS + TRAINING_OPERATIONS)
def test_no_request_breaks_the_api(app: Flask, world: World, label: str,
                                   mode: GenerationMode, request: pytest.FixtureRequest,
                                   ) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    token = request.getfixturevalue("training_token" if label in TRAINING_OPERATIONS
                                    else "collector_token")
    headers = {"Authorization": f"Bearer {token}"}
    calls: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        response = case.call_and_validate(headers={**(case.headers or {}), **headers},
                                          checks=CHECKS)
        calls.append(response.status_code)

    call()
    assert all(status < 500 for status in calls)
    assert len(calls) >= EXAMPLES


def test_a_cursor_beyond_the_ledger_is_harmless(app: Flask, collector_token: str) -> None:
    """Found by the fuzzer: an 18-digit cursor reached PostgreSQL's 32-bit ids and failed."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {collector_token}"}
    feed = client.get("/api/v1/consent/changes?after=999999999999999999", headers=headers)
    assert feed.status_code == 200 and feed.json["changes"] == []
    acknowledgement = client.post("/api/v1/consent/acknowledgements", headers=headers, json={
        "subject": "sub-fuzz", "category": "pointer", "change_cursor": "999999999999999999",
        "action": "stopped", "last_event_at": None})
    assert acknowledgement.status_code == 400
    assert acknowledgement.json["error"] == "invalid_request"
    assert "change_cursor" in acknowledgement.json["message"]
