"""The changes feed: every change of the token's categories, in ledger order, once."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.collector_api import World, bearer


def _feed(client: FlaskClient, token: str, **query: Any) -> Any:
    response = client.get("/api/v1/consent/changes", query_string=query, headers=bearer(token))
    assert response.status_code == 200, response.json
    return response.json


def test_changes_come_in_ledger_order_and_the_cursor_resumes(world: World, client: FlaskClient,
                                                             token: str) -> None:
    world.grant("sub-a", "keystrokes", "pointer")
    world.grant("sub-b", "keystrokes")
    world.withdraw("sub-a", "keystrokes")
    page = _feed(client, token)
    changes = page["changes"]
    assert [(c["subject"], c["category"], c["state"], c["allowed"]) for c in changes] == [
        ("sub-a", "keystrokes", "ConsentGiven", True),
        ("sub-a", "pointer", "ConsentGiven", True),
        ("sub-b", "keystrokes", "ConsentGiven", True),
        ("sub-a", "keystrokes", "ConsentWithdrawn", False)]
    cursors = [int(change["cursor"]) for change in changes]
    assert cursors == sorted(cursors) and len(set(cursors)) == 4
    assert page["next_cursor"] == changes[-1]["cursor"]
    assert all(change["notice_version"] == 1 for change in changes)
    assert [c["at"] for c in changes] == sorted(c["at"] for c in changes)

    # Page by page with a limit: the same changes, none twice, none missed.
    seen, after = [], "0"
    while True:
        page = _feed(client, token, after=after, limit=1)
        if not page["changes"]:
            assert page["next_cursor"] == after  # nothing new: poll again with the same cursor
            break
        seen.extend(page["changes"])
        after = page["next_cursor"]
    assert seen == changes

    world.grant("sub-b", "pointer")
    newer = _feed(client, token, after=after)["changes"]
    assert [(c["subject"], c["category"]) for c in newer] == [("sub-b", "pointer")]


def test_the_default_and_largest_page(world: World, client: FlaskClient, token: str) -> None:
    for number in range(3):
        world.grant(f"sub-{number}", "keystrokes")
    assert len(_feed(client, token)["changes"]) == 3
    assert len(_feed(client, token, limit=1000)["changes"]) == 3
    assert len(_feed(client, token, limit=2)["changes"]) == 2


@pytest.mark.parametrize(("query", "field"), [
    ({"after": "abc"}, "after"), ({"after": "-1"}, "after"), ({"after": "1" * 19}, "after"),
    ({"after": ""}, "after"), ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"), ({"limit": "1.5"}, "limit"),
])
def test_a_malformed_cursor_or_limit_is_named(world: World, client: FlaskClient, token: str,
                                              query: dict[str, str], field: str) -> None:
    response = client.get("/api/v1/consent/changes", query_string=query, headers=bearer(token))
    assert response.status_code == 400
    assert [entry["field"] for entry in response.json["fields"]] == [field]
