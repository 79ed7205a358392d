"""The training API: asking for snapshots, reading their state, registering models; every
refusal a clear 4xx with nothing written. Every answer is checked against the OpenAPI document.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.audit.models import AuditEntry, AuditSubject
from portal.auth.models import Person
from portal.db import commit, db, utcnow
from portal.training.keys import open_snapshot_key
from portal.training.models import (
    PartState,
    SnapshotHolding,
    SnapshotPart,
    SnapshotState,
    TrainingSnapshot,
)
from tests.support.collector_api import World, bearer
from tests.support.config import portal_settings
from tests.support.factories import create_person
from tests.support.identity import ISSUER
from tests.support.openapi import OpenAPICheckingClient
from tests.support.training_api import ask, revoke, rows, set_state, stamp, training_client

SNAPSHOTS = "/api/v1/training/snapshots"
MODELS = "/api/v1/training/models"


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """A real database, no identity provider: the API signs nobody in."""
    return portal_settings(database_url, ISSUER, "http://localhost")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = OpenAPICheckingClient
    return app.test_client()


@pytest.fixture
def world(app: Flask, client: FlaskClient, catalog: int) -> World:
    return World(app, client)


@pytest.fixture
def token(app: Flask, world: World) -> str:
    """A training pipeline for code and text completion, with every scope."""
    return training_client(app)


def _queue(client: FlaskClient, token: str, **changes: Any) -> dict[str, Any]:
    response = client.post(SNAPSHOTS, json=ask(**changes), headers=bearer(token))
    assert response.status_code == 202, response.json
    answer: dict[str, Any] = response.json
    return answer


# --- asking for a snapshot -------------------------------------------------------------------

def test_a_snapshot_is_queued_and_its_state_can_be_read(app: Flask, client: FlaskClient,
                                                        token: str) -> None:
    body = ask(categories=["keystrokes", "ai_transcripts"])
    response = client.post(SNAPSHOTS, json=body, headers=bearer(token))
    assert response.status_code == 202, response.json
    queued = response.json
    assert (queued["number"], queued["state"]) == (1, "queued")
    assert response.headers["Location"] == queued["links"]["self"] \
        == f"{SNAPSHOTS}/{queued['id']}"

    shown = client.get(queued["links"]["self"], headers=bearer(token))
    assert shown.status_code == 200
    snapshot = shown.json
    assert snapshot["id"] == queued["id"]
    assert (snapshot["state"], snapshot["purpose"], snapshot["categories"]) == (
        "queued", "code_and_text_completion", ["keystrokes", "ai_transcripts"])
    assert (snapshot["collected_from"][:19], snapshot["collected_to"][:19]) == (
        body["collected_from"][:19], body["collected_to"][:19])
    assert (snapshot["max_dss_level"], snapshot["notice_version"]) == (2, 1)
    assert snapshot["counts"] == {"included": 0, "excluded": {}}
    assert (snapshot["files"], snapshot["manifest"], snapshot["ready_at"]) == ([], None, None)

    with app.app_context():
        stored = db.scalar(select(TrainingSnapshot))
        assert stored is not None
        assert stored.state is SnapshotState.QUEUED
        # Its own key, wrapped by the master key: it opens.
        assert open_snapshot_key(stored).pseudonym(1).startswith("s-")
    # Numbers follow one another: people read "training dataset 2".
    assert _queue(client, token)["number"] == 2


REFUSALS = [
    pytest.param({"categories": ["keyboard"]}, 422, "unknown_category", "keyboard",
                 id="unknown category"),
    pytest.param({"categories": ["pointer"]}, 403, "purpose_not_allowed", "pointer",
                 id="purpose the category does not allow"),
    pytest.param({"categories": ["keystrokes", "performance"]}, 403, "purpose_not_allowed",
                 "performance", id="category never used for training"),
    pytest.param({"purpose": "assistant_workflows", "categories": ["pointer"]}, 403,
                 "purpose_not_declared", "not registered for the purpose",
                 id="purpose the client did not declare"),
    pytest.param({"collected_from": "2026-03-02T09:00:00Z",
                  "collected_to": "2026-03-02T09:00:00Z"}, 422, "empty_period", "empty",
                 id="empty period"),
    pytest.param({"collected_from": "2026-03-02T09:00:00Z",
                  "collected_to": "2026-03-01T09:00:00Z"}, 422, "empty_period", "before",
                 id="period backwards"),
    pytest.param({"collected_to": stamp(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))},
                 422, "period_in_future", "future", id="period in the future"),
    pytest.param({"categories": []}, 400, "invalid_request", "at least one category",
                 id="no category"),
    pytest.param({"categories": ["keystrokes", "keystrokes"]}, 400, "invalid_request",
                 "more than once", id="a category twice"),
    pytest.param({"max_dss_level": 5}, 400, "invalid_request", "$.max_dss_level",
                 id="DSS level 5"),
    pytest.param({"max_dss_level": "2"}, 400, "invalid_request", "$.max_dss_level",
                 id="DSS level as text"),
    pytest.param({"max_dss_level": True}, 400, "invalid_request", "$.max_dss_level",
                 id="DSS level as a boolean"),
    pytest.param({"categories": "keystrokes"}, 400, "invalid_request", "list of strings",
                 id="categories not a list"),
    pytest.param({"categories": [7]}, 400, "invalid_request", "$.categories[0]",
                 id="a category not a string"),
    pytest.param({"collected_from": "last month"}, 400, "invalid_request", "RFC 3339",
                 id="a date in words"),
    pytest.param({"collected_from": "2026-03-02T09:00:00"}, 400, "invalid_request",
                 "time zone", id="a date without its zone"),
    pytest.param({"purpose": None}, 400, "invalid_request", "$.purpose", id="purpose null"),
    pytest.param({"dataset": "all"}, 400, "invalid_request", "not a field",
                 id="an unknown field"),
]


@pytest.mark.parametrize(("changes", "status", "code", "words"), REFUSALS)
def test_a_request_that_cannot_be_served_is_refused_and_nothing_is_written(
        app: Flask, client: FlaskClient, token: str, changes: dict[str, Any], status: int,
        code: str, words: str) -> None:
    before = rows(app)
    response = client.post(SNAPSHOTS, json=ask(**changes), headers=bearer(token))
    assert response.status_code == status, response.json
    assert response.json["error"] == code
    assert words in response.json["message"] + str(response.json.get("fields", ""))
    assert rows(app) == before


def test_missing_fields_are_all_named(app: Flask, client: FlaskClient, token: str) -> None:
    response = client.post(SNAPSHOTS, json={"purpose": "code_and_text_completion"},
                           headers=bearer(token))
    assert response.status_code == 400
    assert [entry["field"] for entry in response.json["fields"]] == [
        "$.categories", "$.collected_from", "$.collected_to", "$.max_dss_level"]
    assert rows(app)["training_snapshot"] == 0


@pytest.mark.parametrize(("data", "content_type", "status"), [
    (b'{"purpose": "code_and_text_completion", ', "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b"purpose=code", "application/x-www-form-urlencoded", 415),
], ids=["malformed JSON", "not an object", "a form"])
def test_a_body_that_is_not_a_json_object_is_refused(
        app: Flask, client: FlaskClient, token: str, data: bytes, content_type: str,
        status: int) -> None:
    response = client.post(SNAPSHOTS, data=data, content_type=content_type,
                           headers=bearer(token))
    assert response.status_code == status
    assert response.json["message"]
    assert rows(app)["training_snapshot"] == 0


# --- who may call ----------------------------------------------------------------------------

def test_a_collector_token_is_refused_with_words_that_say_why(
        app: Flask, client: FlaskClient, world: World) -> None:
    collector_token = world.collector()
    before = rows(app)
    response = client.post(SNAPSHOTS, json=ask(), headers=bearer(collector_token))
    assert response.status_code == 403
    assert response.json["error"] == "wrong_token"
    assert response.json["message"].startswith(
        "This is a collector token; the training API needs a training client's token.")
    assert rows(app) == before


def test_a_training_token_on_the_collector_api_is_told_so(client: FlaskClient,
                                                          token: str) -> None:
    response = client.get("/api/v1/consent", query_string={"subject": "sub-a",
                                                           "category": "keystrokes"},
                          headers=bearer(token))
    assert response.status_code == 401
    assert "training client's token" in response.json["message"]
    batch = client.post("/api/v1/batches", json={}, headers=bearer(token))
    assert batch.status_code == 401
    assert "/api/v1/training" in batch.json["message"]


@pytest.mark.parametrize(("scopes", "method", "path", "body"), [
    (("models",), "POST", SNAPSHOTS, ask()),
    (("models",), "GET", f"{SNAPSHOTS}/00000000-0000-0000-0000-000000000000", None),
    (("snapshots",), "POST", MODELS, {"name": "m", "version": "1", "snapshots": ["x"]}),
    (("snapshots", "models"), "POST",
     f"{SNAPSHOTS}/00000000-0000-0000-0000-000000000000/retire", None),
], ids=["ask without snapshots", "read without snapshots", "register without models",
        "retire without retire"])
def test_a_token_without_the_scope_is_refused(
        app: Flask, client: FlaskClient, world: World, scopes: tuple[str, ...], method: str,
        path: str, body: dict[str, Any] | None) -> None:
    limited = training_client(app, "limited pipeline", scopes=scopes)
    before = rows(app)
    response = client.open(path, method=method, json=body, headers=bearer(limited))
    assert response.status_code == 403
    assert response.json["error"] == "insufficient_scope"
    assert "lacks the scope" in response.json["message"]
    assert rows(app) == before


def test_no_unknown_or_revoked_token_gets_in(app: Flask, client: FlaskClient,
                                             token: str) -> None:
    assert client.post(SNAPSHOTS, json=ask()).status_code == 401
    unknown = client.post(SNAPSHOTS, json=ask(), headers=bearer("not-a-token"))
    assert (unknown.status_code, unknown.json["error"]) == (401, "unauthorized")
    revoke(app, "code pipeline")
    revoked = client.post(SNAPSHOTS, json=ask(), headers=bearer(token))
    assert revoked.status_code == 401
    assert "revoked" in revoked.json["message"]
    assert rows(app)["training_snapshot"] == 0


def test_another_clients_snapshot_does_not_exist_for_it(app: Flask, client: FlaskClient,
                                                        token: str) -> None:
    queued = _queue(client, token)
    other = training_client(app, "another pipeline")
    response = client.get(queued["links"]["self"], headers=bearer(other))
    assert response.status_code == 404
    unknown = client.get(f"{SNAPSHOTS}/no-such-snapshot", headers=bearer(other))
    # The same answer: a client does not learn which snapshots others have.
    assert response.json["error"] == unknown.json["error"] == "not_found"


# --- models ----------------------------------------------------------------------------------

def test_a_model_is_registered_on_ready_snapshots_only(app: Flask, client: FlaskClient,
                                                       token: str) -> None:
    ready, queued = _queue(client, token)["id"], _queue(client, token)["id"]
    set_state(app, ready, SnapshotState.READY)
    model = {"name": "code-assistant", "version": "2026.12", "snapshots": [ready]}

    before = rows(app)
    not_ready = client.post(MODELS, json={**model, "snapshots": [ready, queued]},
                            headers=bearer(token))
    assert (not_ready.status_code, not_ready.json["error"]) == (409, "snapshot_not_ready")
    assert queued in not_ready.json["message"]
    unknown = client.post(MODELS, json={**model, "snapshots": ["no-such-snapshot"]},
                          headers=bearer(token))
    assert (unknown.status_code, unknown.json["error"]) == (404, "unknown_snapshot")
    assert rows(app) == before

    registered = client.post(MODELS, json=model, headers=bearer(token))
    assert registered.status_code == 201, registered.json
    assert (registered.json["name"], registered.json["version"],
            registered.json["snapshots"]) == ("code-assistant", "2026.12", [ready])
    assert rows(app)["trained_model_snapshot"] == 1

    again = client.post(MODELS, json=model, headers=bearer(token))
    assert (again.status_code, again.json["error"]) == (409, "model_exists")
    assert rows(app)["trained_model"] == 1


def test_a_model_cannot_name_another_clients_snapshot(app: Flask, client: FlaskClient,
                                                      token: str) -> None:
    theirs = _queue(client, token)["id"]
    set_state(app, theirs, SnapshotState.READY)
    other = training_client(app, "another pipeline")
    response = client.post(MODELS, json={"name": "m", "version": "1", "snapshots": [theirs]},
                           headers=bearer(other))
    assert (response.status_code, response.json["error"]) == (404, "unknown_snapshot")
    assert rows(app)["trained_model"] == 0


@pytest.mark.parametrize("body", [
    {"name": "", "version": "1", "snapshots": ["x"]},
    {"name": "m", "version": 1, "snapshots": ["x"]},
    {"name": "m", "version": "1", "snapshots": []},
    {"name": "m", "version": "1", "snapshots": "x"},
    {"name": "m", "version": "1"},
], ids=["empty name", "version a number", "no snapshot", "snapshots not a list",
        "snapshots missing"])
def test_a_malformed_model_is_refused(app: Flask, client: FlaskClient, token: str,
                                      body: dict[str, Any]) -> None:
    response = client.post(MODELS, json=body, headers=bearer(token))
    assert (response.status_code, response.json["error"]) == (400, "invalid_request")
    assert rows(app)["trained_model"] == 0


# --- a ready snapshot: its files leave the portal, into the access log ------------------------

PART = "keystrokes/part-00001.parquet"


def _make_ready(app: Flask, public_id: str, *, included: int, excluded: int) -> bytes:
    """Give a queued snapshot one written part and seal it, as the build would; return the
    part's plaintext. (The API sends what is stored without reading it: any bytes will do.)"""
    from portal.training.files import EncryptedWriter, file_aad, snapshot_file
    from portal.training.manifest import seal_snapshot

    content = b"PAR1" + bytes(range(256)) * 4096 + b"PAR1"  # more than one 1 MiB chunk
    with app.app_context():
        snapshot = db.scalar(select(TrainingSnapshot)
                             .where(TrainingSnapshot.public_id == public_id))
        assert snapshot is not None
        key = open_snapshot_key(snapshot)
        with EncryptedWriter(snapshot_file(snapshot, PART), key,
                             aad=file_aad(snapshot, PART)) as writer:
            writer.write(content)
        people = {subject: create_person(subject, email=False).id
                  for subject in ("sub-included", "sub-excluded")}
        db.add(SnapshotPart(snapshot_id=snapshot.id, number=1, category_key="keystrokes",
                            first_person_id=min(people.values()),
                            last_person_id=max(people.values()), state=PartState.DONE,
                            path=PART, rows=included, size=writer.size, sha256=writer.sha256,
                            finished_at=utcnow()))
        db.add_all([
            SnapshotHolding(snapshot_id=snapshot.id, person_id=people["sub-included"],
                            category_key="keystrokes", included=included, excluded={}),
            SnapshotHolding(snapshot_id=snapshot.id, person_id=people["sub-excluded"],
                            category_key="keystrokes", included=0,
                            excluded={"no_consent": excluded})])
        snapshot.totals = {"included": included, "excluded": {"no_consent": excluded}}
        db.flush()
        seal_snapshot(snapshot, key)
        snapshot.state = SnapshotState.READY
        snapshot.ready_at = utcnow()
        commit()
    return content


def _downloads(app: Flask) -> list[tuple[str, set[int]]]:
    with app.app_context():
        entries = db.scalars(select(AuditEntry).where(AuditEntry.what == "training.download"))
        return [(entry.detail, set(db.scalars(select(AuditSubject.person_id)
                                               .where(AuditSubject.entry_id == entry.id))))
                for entry in entries]


def test_a_ready_snapshot_lists_its_files_and_sends_them_decrypted(
        app: Flask, client: FlaskClient, token: str) -> None:
    snapshot_id = _queue(client, token)["id"]
    early = client.get(f"{SNAPSHOTS}/{snapshot_id}/files/{PART}", headers=bearer(token))
    assert (early.status_code, early.json["error"]) == (409, "snapshot_not_ready")
    assert _downloads(app) == []

    content = _make_ready(app, snapshot_id, included=1234, excluded=56)
    shown = client.get(f"{SNAPSHOTS}/{snapshot_id}", headers=bearer(token)).json
    assert shown["state"] == "ready" and shown["ready_at"]
    assert shown["counts"] == {"included": 1234, "excluded": {"no_consent": 56}}
    assert shown["manifest"].count(".") == 2
    files = {file["path"]: file for file in shown["files"]}
    assert list(files) == [PART, "croissant.json"]
    assert files[PART]["size"] == len(content)
    assert files[PART]["sha256"] == hashlib.sha256(content).hexdigest()

    part = client.get(files[PART]["url"], headers=bearer(token))
    assert part.status_code == 200
    assert part.mimetype == "application/vnd.apache.parquet"
    assert part.data == content
    croissant = client.get(files["croissant.json"]["url"], headers=bearer(token))
    assert croissant.status_code == 200
    assert hashlib.sha256(croissant.data).hexdigest() == files["croissant.json"]["sha256"]
    assert json.loads(croissant.data)["@type"] == "sc:Dataset"

    # Each download is in the access log of the people whose records it holds, and only theirs.
    with app.app_context():
        included = db.scalar(select(Person.id).where(Person.subject == "sub-included"))
    logged = _downloads(app)
    assert [subjects for _detail, subjects in logged] == [{included}, {included}]
    assert json.loads(logged[0][0]) == {"file": PART, "purpose": "code_and_text_completion",
                                        "snapshot": 1}


@pytest.mark.parametrize("path", ["keystrokes/part-00002.parquet", "../../etc/passwd",
                                  "keystrokes/../croissant.json"])
def test_only_a_listed_file_can_be_read(app: Flask, client: FlaskClient, token: str,
                                        path: str) -> None:
    snapshot_id = _queue(client, token)["id"]
    _make_ready(app, snapshot_id, included=1, excluded=0)
    response = client.get(f"{SNAPSHOTS}/{snapshot_id}/files/{path}", headers=bearer(token))
    assert (response.status_code, response.json["error"]) == (404, "not_found")
    other = training_client(app, "another pipeline")
    theirs = client.get(f"{SNAPSHOTS}/{snapshot_id}/files/{PART}", headers=bearer(other))
    assert (theirs.status_code, theirs.json["error"]) == (404, "not_found")
    assert _downloads(app) == []


# --- retiring --------------------------------------------------------------------------------

def test_a_client_retires_its_ready_snapshot_and_gets_a_certificate(
        app: Flask, client: FlaskClient, token: str) -> None:
    snapshot_id = _queue(client, token)["id"]
    retire = f"{SNAPSHOTS}/{snapshot_id}/retire"
    early = client.post(retire, headers=bearer(token))
    assert (early.status_code, early.json["error"]) == (409, "still_building")
    other = training_client(app, "another pipeline")
    theirs = client.post(retire, headers=bearer(other))
    assert (theirs.status_code, theirs.json["error"]) == (404, "not_found")

    _make_ready(app, snapshot_id, included=3, excluded=1)
    retired = client.post(retire, headers=bearer(token))
    assert retired.status_code == 200, retired.json
    assert (retired.json["id"], retired.json["state"]) == (snapshot_id, "retired")
    assert retired.json["certificate"].count(".") == 2
    shown = client.get(f"{SNAPSHOTS}/{snapshot_id}", headers=bearer(token)).json
    assert (shown["state"], shown["files"], shown["certificate"]) == (
        "retired", [], retired.json["certificate"])
    gone = client.get(f"{SNAPSHOTS}/{snapshot_id}/files/{PART}", headers=bearer(token))
    assert (gone.status_code, gone.json["error"]) == (409, "snapshot_not_ready")
    with app.app_context():
        stored = db.scalar(select(TrainingSnapshot))
        assert stored is not None and stored.wrapped_key == b""
        assert stored.retired_by == "code pipeline"

    again = client.post(retire, headers=bearer(token))
    assert (again.status_code, again.json["error"]) == (409, "already_retired")
