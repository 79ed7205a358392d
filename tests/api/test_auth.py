"""Who may call the API: bearer tokens only, scoped to categories, revocable, rate-limited."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.auth.models import WebSession
from portal.db import commit, db
from tests.support.batches import keystroke_batch
from tests.support.collector_api import World, bearer

CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/v1/consent", {"query_string": {"subject": "sub-a", "category": "keystrokes"}}),
    ("GET", "/api/v1/consent/changes", {}),
    ("POST", "/api/v1/batches", {"json": keystroke_batch("sub-a", "secret")}),
    ("POST", "/api/v1/consent/acknowledgements", {"json": {
        "subject": "sub-a", "category": "keystrokes", "change_cursor": "1",
        "action": "stopped", "last_event_at": None}}),
]


@pytest.mark.parametrize(("method", "path", "options"), CALLS)
@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer not-a-token",
    "Bearer " + "x" * 300, "Token abc"])
def test_a_missing_or_bad_token_gets_401_and_changes_nothing(
        world: World, client: FlaskClient, token: str, method: str, path: str,
        options: dict[str, Any], authorization: str | None) -> None:
    world.grant("sub-a", "keystrokes")
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.open(path, method=method, headers=headers, **options)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="collector-api"')
    assert world.stored() == (0, 0, 0)


def test_a_revoked_token_stops_working_at_once(world: World, client: FlaskClient,
                                               token: str) -> None:
    world.grant("sub-a", "keystrokes")
    assert client.post("/api/v1/batches", json=keystroke_batch("sub-a", "one"),
                       headers=bearer(token)).status_code == 201
    world.revoke("laptop agent")
    response = client.post("/api/v1/batches", json=keystroke_batch("sub-a", "two"),
                           headers=bearer(token))
    assert response.status_code == 401
    assert "revoked" in response.json["message"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert world.stored()[0] == 1


@pytest.mark.parametrize(("method", "path", "options"), [
    ("GET", "/api/v1/consent", {"query_string": {"subject": "sub-a", "category": "clicks"}}),
    ("POST", "/api/v1/batches", {"json": {**keystroke_batch("sub-a", "x"),
                                          "category": "clicks"}}),
    ("POST", "/api/v1/consent/acknowledgements", {"json": {
        "subject": "sub-a", "category": "clicks", "change_cursor": "1", "action": "stopped",
        "last_event_at": None}}),
])
def test_a_category_outside_the_tokens_scope_gets_403(world: World, client: FlaskClient,
                                                      token: str, method: str, path: str,
                                                      options: dict[str, Any]) -> None:
    world.grant("sub-a", "clicks", "keystrokes")
    response = client.open(path, method=method, headers=bearer(token), **options)
    assert response.status_code == 403
    assert response.json["error"] == "category_not_allowed"
    assert "keystrokes" in response.json["message"]  # what the token may use instead
    assert world.stored() == (0, 0, 0)


def test_the_changes_feed_shows_only_the_tokens_categories(world: World, client: FlaskClient,
                                                           token: str) -> None:
    world.grant("sub-a", "clicks", "keystrokes", "conversations")
    changes = client.get("/api/v1/consent/changes", headers=bearer(token)).json["changes"]
    assert [change["category"] for change in changes] == ["keystrokes"]


def test_a_signed_in_browser_session_is_never_accepted(app: Flask, world: World,
                                                       client: FlaskClient) -> None:
    person_id = world.person("sub-a")
    world.grant("sub-a", "keystrokes")
    session_id = secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        db.add(WebSession(id_hash=hashlib.sha256(session_id.encode()).hexdigest(),
                          person_id=person_id, data={"_user_id": str(person_id), "_fresh": True},
                          created_at=now, last_seen_at=now, expires_at=now + dt.timedelta(hours=1),
                          authenticated_at=now))
        commit()
    client.set_cookie("portal_session", session_id)
    # The cookie is good: the person's own pages open with it.
    assert client.get("/consent/history").status_code == 200
    response = client.post("/api/v1/batches", json=keystroke_batch("sub-a", "x"))
    assert response.status_code == 401
    assert client.get("/api/v1/consent", query_string={"subject": "sub-a",
                                                       "category": "keystrokes"}
                      ).status_code == 401
    assert world.stored() == (0, 0, 0)


def test_api_requests_neither_load_nor_save_a_browser_session(app: Flask, world: World,
                                                             client: FlaskClient,
                                                             token: str) -> None:
    person_id = world.person("sub-a")
    session_id = secrets.token_urlsafe(32)
    id_hash = hashlib.sha256(session_id.encode()).hexdigest()
    now = dt.datetime.now(dt.UTC)
    seen = now - dt.timedelta(minutes=5)
    with app.app_context():
        db.add(WebSession(id_hash=id_hash, person_id=person_id,
                          data={"_user_id": str(person_id), "_fresh": True}, created_at=seen,
                          last_seen_at=seen, expires_at=now + dt.timedelta(hours=1),
                          authenticated_at=seen))
        commit()

    def last_seen() -> dt.datetime:
        with app.app_context():
            row = db.get(WebSession, id_hash)
            assert row is not None
            return row.last_seen_at

    client.set_cookie("portal_session", session_id)
    for response in (client.get("/api/v1/consent", headers=bearer(token), query_string={
            "subject": "sub-a", "category": "keystrokes"}),
                     client.get("/api/v1/consent/changes", headers=bearer(token))):
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers
    assert last_seen() == seen
    # A page, by contrast, reads the session and records that it was used.
    assert client.get("/consent/history").status_code == 200
    assert last_seen() > seen


def test_api_answers_carry_every_security_header(world: World, client: FlaskClient,
                                                 token: str) -> None:
    for response in (client.get("/api/v1/consent", headers=bearer(token), query_string={
            "subject": "sub-a", "category": "keystrokes"}), client.get("/api/v1/consent"),
                     client.get("/api/v1/openapi.json")):
        headers = response.headers
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert "camera=()" in headers["Permissions-Policy"]
        assert headers["Cache-Control"] == "no-store"


def test_the_api_needs_no_csrf_token(world: World, client: FlaskClient, token: str) -> None:
    world.grant("sub-a", "keystrokes")
    # A cookie-less client with a bearer token: CSRF protection does not apply.
    assert client.post("/api/v1/batches", json=keystroke_batch("sub-a", "x"),
                       headers=bearer(token)).status_code == 201


def test_requests_are_limited_per_token(app: Flask, world: World, client: FlaskClient,
                                        token: str) -> None:
    app.config["API_RATE_LIMIT"] = "3 per minute"
    other = world.collector("desk agent", ("keystrokes",))
    query = {"subject": "sub-a", "category": "keystrokes"}
    for _ in range(3):
        assert client.get("/api/v1/consent", query_string=query,
                          headers=bearer(token)).status_code == 200
    # The budget is shared by every endpoint of the token.
    response = client.get("/api/v1/consent/changes", headers=bearer(token))
    assert response.status_code == 429
    assert response.json["error"] == "too_many_requests"
    assert int(response.headers["Retry-After"]) > 0
    assert "3 per 1 minute" in response.json["message"]
    # Another token has its own budget; the OpenAPI document is never limited.
    assert client.get("/api/v1/consent", query_string=query,
                      headers=bearer(other)).status_code == 200
    for _ in range(5):
        assert client.get("/api/v1/openapi.json").status_code == 200


def test_the_openapi_document_needs_no_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json["openapi"] == "3.1.0"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/nothing-here", 404),
    ("GET", "/api/v1/batches", 405),
    ("DELETE", "/api/v1/consent", 405),
])
def test_unknown_addresses_and_methods_answer_json(client: FlaskClient, token: str, method: str,
                                                   path: str, status: int) -> None:
    response = client.open(path, method=method, headers=bearer(token))
    assert response.status_code == status
    assert response.json["error"] in {"not_found", "method_not_allowed"}
