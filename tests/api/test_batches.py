"""Submitting batches: stored only with current consent; every bad body a clear JSON error and
nothing stored."""

from __future__ import annotations

import json
import uuid
import zlib
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.api.service import register_collector
from portal.db import commit
from portal.vault.checks import MAX_EVENTS
from portal.vault.reading import read_own_batches
from tests.support.batches import gzipped, iso, keystroke_batch, recent
from tests.support.collector_api import World, bearer

JSON = {"Content-Type": "application/json"}


def _post(client: FlaskClient, token: str, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/v1/batches", data=data,
                       headers={**JSON, **bearer(token), **headers})


def _fields(response: Any) -> list[str]:
    """Return the fields a 400 answer names, checking that its message names them too."""
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_request"
    fields = [entry["field"] for entry in response.json["fields"]]
    for field in fields[:5]:
        assert field in response.json["message"]
    return fields


def test_a_batch_with_current_consent_is_stored_encrypted(app: Flask, world: World,
                                                          client: FlaskClient, token: str) -> None:
    world.grant("sub-a", "keystrokes")
    response = _post(client, token, keystroke_batch("sub-a", "git status", "ls -la"))
    assert response.status_code == 201
    assert uuid.UUID(response.json["batch_id"])
    assert response.json["events"] == 2
    assert world.stored() == (1, 1, 0)
    with app.app_context():
        [batch] = list(read_own_batches(world._person("sub-a")))
    assert [event["keys"] for event in batch.events] == ["git status", "ls -la"]
    assert batch.public_id == response.json["batch_id"]


def test_a_gzip_body_is_accepted(world: World, client: FlaskClient, token: str) -> None:
    world.grant("sub-a", "keystrokes")
    body = json.dumps(keystroke_batch("sub-a", "compressed")).encode()
    response = _post(client, token, gzipped(body), **{"Content-Encoding": "gzip"})
    assert response.status_code == 201
    assert world.stored()[0] == 1


def _performance_batch(subject: str) -> dict[str, Any]:
    moment = recent(60)
    return {"subject": subject, "category": "performance", "collected_from": iso(moment),
            "collected_to": iso(moment), "dss_level": 4,
            "events": [{"t": iso(moment), "review_period": "2026-H1", "rating": "meets",
                        "reviewer_id": "p-0123456789ab",
                        "summary": "Delivered what was agreed."}]}


def test_a_category_on_another_legal_basis_needs_no_consent(world: World, client: FlaskClient,
                                                           token: str) -> None:
    world.person("sub-a")
    response = _post(client, token, _performance_batch("sub-a"))
    assert response.status_code == 201


@pytest.mark.parametrize("upheld", [True, False])
def test_an_upheld_objection_stops_collection_on_another_legal_basis(
        world: World, client: FlaskClient, token: str, upheld: bool) -> None:
    world.object_to("sub-a", "performance", upheld=upheld)
    response = _post(client, token, _performance_batch("sub-a"))
    if upheld:
        assert response.status_code == 403
        assert response.json["error"] == "objection_upheld"
        assert "objection to it was upheld" in response.json["message"]
        assert world.stored() == (0, 0, 0)
    else:
        assert response.status_code == 201


@pytest.mark.parametrize("situation", ["never_given", "withdrawn", "unknown_person"])
def test_without_current_consent_nothing_is_stored(world: World, client: FlaskClient, token: str,
                                                   situation: str) -> None:
    if situation == "withdrawn":
        world.grant("sub-a", "keystrokes")
        world.withdraw("sub-a", "keystrokes")
    elif situation == "never_given":
        world.person("sub-a")
    response = _post(client, token, keystroke_batch("sub-a", "password123"))
    assert response.status_code == 403
    assert response.json["error"] == "consent_required"
    assert "Nothing was stored" in response.json["message"]
    assert ("withdrawn" in response.json["message"]) == (situation == "withdrawn")
    assert world.stored() == (0, 0, 0)


def test_an_unknown_person_gets_the_same_answer_as_one_who_never_consented(
        world: World, client: FlaskClient, token: str) -> None:
    world.person("sub-known")
    known = _post(client, token, keystroke_batch("sub-known", "x"))
    unknown = _post(client, token, keystroke_batch("sub-nobody", "x"))
    assert (known.status_code, known.json) == (unknown.status_code, unknown.json)
    # Also when the batch itself is bad: validation comes first for both.
    bad = {**keystroke_batch("sub-known", "x"), "dss_level": 9}
    assert _fields(_post(client, token, bad)) == _fields(
        _post(client, token, {**bad, "subject": "sub-nobody"})) == ["$.dss_level"]


def test_a_retry_with_the_same_idempotency_key_gets_the_same_batch(
        world: World, client: FlaskClient, token: str) -> None:
    world.grant("sub-a", "keystrokes")
    body = keystroke_batch("sub-a", "once")
    first = _post(client, token, body, **{"Idempotency-Key": "agent-7/0001"})
    again = _post(client, token, body, **{"Idempotency-Key": "agent-7/0001"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json == again.json
    assert world.stored()[0] == 1
    other = _post(client, token, keystroke_batch("sub-a", "twice"),
                  **{"Idempotency-Key": "agent-7/0001"})
    assert other.status_code == 409
    assert other.json["error"] == "idempotency_conflict"
    assert first.json["batch_id"] in other.json["message"]
    assert world.stored()[0] == 1
    assert _post(client, token, body, **{"Idempotency-Key": "agent-7/0002"}).status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_a_malformed_idempotency_key_is_named(world: World, client: FlaskClient, token: str,
                                              key: str) -> None:
    world.grant("sub-a", "keystrokes")
    response = client.post("/api/v1/batches", json=keystroke_batch("sub-a", "x"),
                           headers={**bearer(token), "Idempotency-Key": key.encode().decode(
                               "latin-1")})
    assert "Idempotency-Key" in _fields(response)
    assert world.stored()[0] == 0


def _without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name not in names}


@pytest.mark.parametrize(("change", "fields"), [
    (lambda body: _without(body, "subject"), ["$.subject"]),
    (lambda body: _without(body, "events", "dss_level"), ["$.dss_level", "$.events"]),
    (lambda body: {**body, "subject": 42}, ["$.subject"]),
    (lambda body: {**body, "subject": ""}, ["$.subject"]),
    (lambda body: {**body, "category": None}, ["$.category"]),
    (lambda body: {**body, "collected_from": "yesterday"}, ["$.collected_from"]),
    (lambda body: {**body, "collected_to": 1700000000}, ["$.collected_to"]),
    (lambda body: {**body, "dss_level": "2"}, ["$.dss_level"]),
    (lambda body: {**body, "dss_level": True}, ["$.dss_level"]),
    (lambda body: {**body, "dss_level": 5}, ["$.dss_level"]),
    (lambda body: {**body, "events": {"t": "x"}}, ["$.events"]),
    (lambda body: {**body, "events": []}, ["$.events"]),
    (lambda body: {**body, "extra": 1}, ["$.extra"]),
    (lambda body: {**body, "events": [{**body["events"][0], "keys": 7}]}, ["$.events[0].keys"]),
    (lambda body: {**body, "events": [_without(body["events"][0], "app")]},
     ["$.events[0].app"]),
    (lambda body: {**body, "events": [{**body["events"][0], "mouse": 1}]},
     ["$.events[0].mouse"]),
    (lambda body: {**body, "events": [body["events"][0], "not an event"]}, ["$.events[1]"]),
    (lambda body: {**body, "events": [{**body["events"][0], "t": iso(recent(600))}]},
     ["$.events[0].t"]),
    (lambda body: {**body, "subject": "sub-a\x00"}, ["$.subject"]),
    (lambda body: {**body, "collected_to": body["collected_from"],
                   "collected_from": iso(recent(1))}, ["$.collected_to", "$.events[0].t"]),
])
def test_a_malformed_batch_is_refused_naming_the_fields(world: World, client: FlaskClient,
                                                       token: str, change: Any,
                                                       fields: list[str]) -> None:
    world.grant("sub-a", "keystrokes")
    response = _post(client, token, change(keystroke_batch("sub-a", "x")))
    assert _fields(response) == fields
    assert "x" not in {entry["message"] for entry in response.json["fields"]}
    assert world.stored() == (0, 0, 0)


@pytest.mark.parametrize("body", [
    b"", b"{", b"nul", b"[1, 2", b'{"subject": "a",}', b"NaN", b'{"a": Infinity}',
    b"\xff\xfe{}", b'{"subject": "\xc3\x28"}', b'"\xed\xa0\x80"',
])
def test_a_body_that_is_not_json_in_utf8_is_refused(world: World, client: FlaskClient,
                                                    token: str, body: bytes) -> None:
    world.grant("sub-a", "keystrokes")
    response = _post(client, token, body)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "not valid JSON" in response.json["message"]
    assert world.stored() == (0, 0, 0)


@pytest.mark.parametrize("body", [[], "text", 3, None, [{"subject": "a"}]])
def test_a_body_that_is_not_an_object_is_refused(world: World, client: FlaskClient, token: str,
                                                 body: Any) -> None:
    assert _fields(_post(client, token, body)) == ["$"]


def test_a_deeply_nested_body_is_refused_without_a_crash(world: World, client: FlaskClient,
                                                         token: str) -> None:
    world.grant("sub-a", "keystrokes")
    for depth in (100_000, 2_000):
        response = _post(client, token, b"[" * depth + b"]" * depth)
        assert response.status_code == 400
    # Within JSON's limits but nested inside an event: the event schema refuses it.
    nested: Any = "deep"
    for _ in range(500):
        nested = {"a": nested}
    body = keystroke_batch("sub-a", "x")
    body["events"][0]["keys"] = nested
    assert _fields(_post(client, token, body)) == ["$.events[0].keys"]
    assert world.stored() == (0, 0, 0)


@pytest.mark.parametrize(("content_type", "encoding"), [
    ("text/plain", None), ("application/x-www-form-urlencoded", None),
    ("multipart/form-data; boundary=x", None), ("application/xml", None), (None, None),
    ("application/json; charset=latin-1", None), ("application/json", "br"),
    ("application/json", "deflate"),
])
def test_a_wrong_content_type_or_encoding_gets_415(world: World, client: FlaskClient, token: str,
                                                   content_type: str | None,
                                                   encoding: str | None) -> None:
    world.grant("sub-a", "keystrokes")
    headers = {**bearer(token)}
    if content_type:
        headers["Content-Type"] = content_type
    if encoding:
        headers["Content-Encoding"] = encoding
    response = client.post("/api/v1/batches", headers=headers,
                           data=json.dumps(keystroke_batch("sub-a", "x")).encode())
    assert response.status_code == 415
    assert response.json["error"] == "unsupported_media_type"
    assert world.stored() == (0, 0, 0)


def test_an_oversized_body_gets_413(app: Flask, world: World, client: FlaskClient,
                                    token: str) -> None:
    world.grant("sub-a", "keystrokes")
    app.config["API_MAX_BODY_BYTES"] = 64 * 1024
    body = keystroke_batch("sub-a", *["y" * 1000] * 80)
    response = _post(client, token, body)
    assert response.status_code == 413
    assert response.json["error"] == "payload_too_large"
    assert "65536 bytes" in response.json["message"]
    # Compressed, it is small on the wire, and still too large once decompressed.
    compressed = gzipped(json.dumps(body).encode())
    assert len(compressed) < 64 * 1024
    response = _post(client, token, compressed, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    # Larger than the portal takes from any client, before the API even reads it.
    app.config["API_MAX_BODY_BYTES"] = 64 * 1024 * 1024
    response = _post(client, token, b" " * (17 * 1024 * 1024))
    assert response.status_code == 413
    assert world.stored() == (0, 0, 0)


def test_a_gzip_bomb_is_stopped_at_the_limit(world: World, client: FlaskClient,
                                             token: str) -> None:
    world.grant("sub-a", "keystrokes")
    # 1 GiB of spaces compresses to about 1 MiB; nothing near that may be inflated.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b" " * (1024 * 1024)
    bomb = b"".join(compressor.compress(chunk) for _ in range(1024)) + compressor.flush()
    assert len(bomb) < 2 * 1024 * 1024
    response = _post(client, token, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.json["error"] == "payload_too_large"
    assert world.stored() == (0, 0, 0)


@pytest.mark.parametrize("data", [b"not gzip at all", gzipped(b'{"a": 1}')[:-6],
                                  gzipped(b"{}") + b"trailing"],
                         ids=["not gzip", "truncated", "trailing garbage"])
def test_a_broken_gzip_body_is_refused(world: World, client: FlaskClient, token: str,
                                       data: bytes) -> None:
    response = _post(client, token, data, **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert "gzip" in response.json["message"]


def test_too_many_events_get_413(world: World, client: FlaskClient, token: str) -> None:
    world.grant("sub-a", "keystrokes")
    body = keystroke_batch("sub-a", "x")
    body["events"] = body["events"] * (MAX_EVENTS + 1)
    response = _post(client, token, body)
    assert response.status_code == 413
    assert str(MAX_EVENTS) in response.json["message"]
    assert world.stored() == (0, 0, 0)


def test_a_category_outside_the_catalog_is_refused(app: Flask, world: World,
                                                   client: FlaskClient) -> None:
    # Registered when "screenshots" was still in the catalog (the service refuses it now).
    with app.app_context():
        _collector, token, _secret = register_collector("old agent",
                                                        ["keystrokes", "screenshots"])
        commit()
    world.grant("sub-a", "keystrokes")
    body = {**keystroke_batch("sub-a", "x"), "category": "screenshots"}
    response = _post(client, token, body)
    assert response.status_code == 403
    assert response.json["error"] == "category_not_allowed"
    assert "catalog" in response.json["message"]


def test_a_data_key_that_does_not_open_is_a_500_and_nothing_is_stored(
        app: Flask, world: World, client: FlaskClient, token: str) -> None:
    world.grant("sub-a", "keystrokes")
    assert _post(client, token, keystroke_batch("sub-a", "first")).status_code == 201
    # Another master key than the one that wrapped the person's data key: a misconfiguration
    # (or tampering) that must stop ingestion, loudly and without half-storing anything.
    app.config["MASTER_KEY"] = "b3RoZXItbWFzdGVyLWtleS1vbmx5LWZvci10ZXN0cyE="
    response = _post(client, token, keystroke_batch("sub-a", "second"))
    assert response.status_code == 500
    assert response.json["error"] == "internal_server_error"
    assert "second" not in response.get_data(as_text=True)
    assert world.stored()[0] == 1


def test_a_vault_that_cannot_seal_answers_503(app: Flask, world: World, client: FlaskClient,
                                              token: str) -> None:
    world.grant("sub-a", "keystrokes")
    app.config["MASTER_KEY"] = ""
    response = _post(client, token, keystroke_batch("sub-a", "x"))
    assert response.status_code == 503
    assert response.json["error"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert world.stored() == (0, 0, 0)
