"""Asking whether a category may be recorded: deny by default, the state and since when."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient

from portal.auth.models import Person
from portal.db import db
from tests.support.collector_api import World, bearer


def _ask(client: FlaskClient, token: str, subject: str, category: str) -> Any:
    response = client.get("/api/v1/consent", query_string={"subject": subject,
                                                           "category": category},
                          headers=bearer(token))
    assert response.status_code == 200, response.json
    return response.json


def test_consent_given_allows_collection(world: World, client: FlaskClient, token: str) -> None:
    before = dt.datetime.now(dt.UTC)
    world.grant("sub-a", "keystrokes")
    answer = _ask(client, token, "sub-a", "keystrokes")
    assert answer["allowed"] is True
    assert answer["state"] == "ConsentGiven"
    assert answer["notice_version"] == 1
    assert answer["legal_basis"] == "consent"
    since = dt.datetime.fromisoformat(answer["since"].replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= since <= dt.datetime.now(dt.UTC)


def test_a_withdrawal_stops_collection_at_once(world: World, client: FlaskClient,
                                               token: str) -> None:
    world.grant("sub-a", "keystrokes")
    world.withdraw("sub-a", "keystrokes")
    answer = _ask(client, token, "sub-a", "keystrokes")
    assert (answer["allowed"], answer["state"]) == (False, "ConsentWithdrawn")
    assert answer["since"] is not None


def test_the_answer_names_the_workplace_pseudonym_only_while_recording_is_allowed(
        world: World, client: FlaskClient, token: str) -> None:
    """Collectors name people inside records (a conversation's author) by this pseudonym."""
    person_id = world.person("sub-a")
    with world.app.app_context():
        pseudonym = db.get_one(Person, person_id).workplace_pseudonym
    world.grant("sub-a", "keystrokes")
    assert _ask(client, token, "sub-a", "keystrokes")["workplace_pseudonym"] == pseudonym
    world.withdraw("sub-a", "keystrokes")
    # Not allowed: nothing that would tell a known person from an unknown one.
    assert _ask(client, token, "sub-a", "keystrokes")["workplace_pseudonym"] is None
    assert _ask(client, token, "sub-nobody", "keystrokes")["workplace_pseudonym"] is None


def test_deny_by_default(world: World, client: FlaskClient, token: str) -> None:
    world.person("sub-known")
    never = _ask(client, token, "sub-known", "keystrokes")
    unknown = _ask(client, token, "sub-nobody", "keystrokes")
    assert never["allowed"] is unknown["allowed"] is False
    assert never["state"] is unknown["state"] is None
    assert never["since"] is unknown["since"] is None
    # Only the subject differs: an unknown person cannot be told from one who never decided.
    assert {**never, "subject": "x"} == {**unknown, "subject": "x"}


def test_a_category_on_another_legal_basis_is_allowed_without_consent(
        world: World, client: FlaskClient, token: str) -> None:
    world.person("sub-a")
    answer = _ask(client, token, "sub-a", "performance")
    assert answer.pop("workplace_pseudonym").startswith("p-")
    assert answer == {"subject": "sub-a", "category": "performance", "allowed": True,
                      "state": None, "notice_version": 1, "since": None,
                      "legal_basis": "contract"}
    assert _ask(client, token, "sub-nobody", "performance")["allowed"] is False


@pytest.mark.parametrize(("query", "fields"), [
    ({}, ["subject", "category"]),
    ({"subject": "sub-a"}, ["category"]),
    ({"subject": "", "category": "keystrokes"}, ["subject"]),
    ({"subject": "s" * 256, "category": "keystrokes"}, ["subject"]),
    ({"subject": "sub-a\n", "category": "keystrokes"}, ["subject"]),
    ({"subject": "sub-a", "category": "key\x1fstrokes"}, ["category"]),
])
def test_missing_parameters_are_named(world: World, client: FlaskClient, token: str,
                                      query: dict[str, str], fields: list[str]) -> None:
    response = client.get("/api/v1/consent", query_string=query, headers=bearer(token))
    assert response.status_code == 400
    assert [entry["field"] for entry in response.json["fields"]] == fields


def test_a_nul_character_is_refused_before_it_reaches_the_database(
        world: World, client: FlaskClient, token: str) -> None:
    # Found by the fuzzer on PostgreSQL, whose text cannot hold NUL: it was a 500.
    response = client.get("/api/v1/consent", query_string={"subject": "sub\x00a",
                                                            "category": "keystrokes"},
                          headers=bearer(token))
    assert response.status_code == 400
    assert "NUL character" in response.json["message"]


@pytest.mark.parametrize("upheld", [True, False])
def test_an_upheld_objection_stops_a_category_on_another_legal_basis(
        world: World, client: FlaskClient, token: str, upheld: bool) -> None:
    world.object_to("sub-a", "performance", upheld=upheld)
    answer = _ask(client, token, "sub-a", "performance")
    assert answer["allowed"] is not upheld
    assert (answer["state"], answer["legal_basis"]) == (None, "contract")
