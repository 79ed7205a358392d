"""Acknowledgements: collectors confirm they stopped; the person and the privacy admin see it."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, render_template
from flask.testing import FlaskClient
from flask_login import login_user

from portal.api.service import acknowledgements_for, unacknowledged_stops
from tests.support.batches import iso, recent
from tests.support.collector_api import World, bearer


def _changes(client: FlaskClient, token: str) -> list[dict[str, Any]]:
    return list(client.get("/api/v1/consent/changes", headers=bearer(token)).json["changes"])


def _acknowledge(client: FlaskClient, token: str, change: dict[str, Any], **fields: Any) -> Any:
    body = {"subject": change["subject"], "category": change["category"],
            "change_cursor": change["cursor"], "action": "stopped",
            "last_event_at": iso(recent(5)), **fields}
    return client.post("/api/v1/consent/acknowledgements", json=body, headers=bearer(token))


def test_a_stop_is_acknowledged_once_and_shown(app: Flask, world: World, client: FlaskClient,
                                               token: str) -> None:
    world.grant("sub-a", "keystrokes")
    world.withdraw("sub-a", "keystrokes")
    with app.app_context():
        [pending] = unacknowledged_stops()
        assert (pending.collector_name, pending.category_key, pending.count) == (
            "laptop agent", "keystrokes", 1)
        [line] = acknowledgements_for(world._person("sub-a").id)
        assert not line.acknowledged
    withdrawal = _changes(client, token)[-1]
    last = iso(recent(5))
    response = _acknowledge(client, token, withdrawal, last_event_at=last)
    assert response.status_code == 201
    assert response.json["change_cursor"] == withdrawal["cursor"]
    assert response.json["last_event_at"] == last
    again = _acknowledge(client, token, withdrawal, last_event_at=last)
    assert again.status_code == 200 and again.json == response.json
    conflict = _acknowledge(client, token, withdrawal, last_event_at=None)
    assert conflict.status_code == 409
    assert conflict.json["error"] == "acknowledgement_conflict"
    assert world.stored()[2] == 1
    with app.app_context():
        assert unacknowledged_stops() == []
        [line] = acknowledgements_for(world._person("sub-a").id)
        assert line.acknowledged and line.collector_name == "laptop agent"
        assert iso(line.last_event_at) == last and not line.recorded_after_change  # type: ignore[arg-type]


def test_the_person_sees_when_recording_stopped(app: Flask, world: World, client: FlaskClient,
                                                token: str) -> None:
    world.grant("sub-a", "keystrokes", "pointer")
    world.withdraw("sub-a", "keystrokes", "pointer")
    keystrokes, _pointer = _changes(client, token)[-2:]
    assert _acknowledge(client, token, keystrokes, last_event_at=None).status_code == 201
    with app.test_request_context("/"):
        login_user(world._person("sub-a"))
        html = render_template("api/_acknowledgements.html")
    assert "Has recording stopped?" in html
    assert html.count("laptop agent") == 2
    assert "Nothing had been recorded." in html
    assert "Not confirmed yet" in html


def test_nothing_is_shown_without_a_withdrawal(app: Flask, world: World, token: str) -> None:
    world.grant("sub-a", "keystrokes")
    with app.test_request_context("/"):
        login_user(world._person("sub-a"))
        assert render_template("api/_acknowledgements.html").strip() == ""


def test_a_later_acknowledgement_settles_earlier_stops(app: Flask, world: World,
                                                       client: FlaskClient, token: str) -> None:
    world.grant("sub-a", "keystrokes")
    world.withdraw("sub-a", "keystrokes")
    world.grant("sub-a", "keystrokes")
    resumed = _changes(client, token)[-1]
    assert _acknowledge(client, token, resumed, action="resumed").status_code == 201
    with app.app_context():
        assert unacknowledged_stops() == []


@pytest.mark.parametrize(("fields", "named"), [
    ({"action": "resumed"}, "$.action"),
    ({"action": "paused"}, "$.action"),
    ({"change_cursor": "999"}, "$.change_cursor"),
    ({"change_cursor": 2}, "$.change_cursor"),
    ({"subject": "sub-b"}, "$.change_cursor"),
    ({"subject": "sub-nobody"}, "$.change_cursor"),
    ({"category": "pointer"}, "$.change_cursor"),
    ({"last_event_at": "soon"}, "$.last_event_at"),
    ({"last_event_at": iso(recent(-60))}, "$.last_event_at"),
    ({"note": "hi"}, "$.note"),
])
def test_an_acknowledgement_that_does_not_fit_is_refused(world: World, client: FlaskClient,
                                                         token: str, fields: dict[str, Any],
                                                         named: str) -> None:
    world.grant("sub-a", "keystrokes", "pointer")
    world.grant("sub-b", "keystrokes")
    world.withdraw("sub-a", "keystrokes")
    withdrawal = _changes(client, token)[-1]
    response = _acknowledge(client, token, withdrawal, **fields)
    assert response.status_code == 400
    assert [entry["field"] for entry in response.json["fields"]] == [named]
    assert world.stored()[2] == 0


def test_a_missing_field_is_named(world: World, client: FlaskClient, token: str) -> None:
    response = client.post("/api/v1/consent/acknowledgements", json={"action": "stopped"},
                           headers=bearer(token))
    assert [entry["field"] for entry in response.json["fields"]] == [
        "$.subject", "$.category", "$.change_cursor", "$.last_event_at"]
