"""``portal collectors``: the token is printed once and stored only as its hash."""

from __future__ import annotations

import hashlib
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from portal.api.models import Collector
from portal.db import db
from tests.support.collector_api import World, bearer

TOKEN = re.compile(r"^  ([A-Za-z0-9_-]{43})$", re.MULTILINE)


def _run(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["collectors", *args])
    # Click mixes standard error into ``output``, as a terminal shows it.
    return result.exit_code, result.output


def test_create_prints_the_token_once_and_keeps_only_its_hash(app: Flask, world: World,
                                                              client: FlaskClient) -> None:
    code, output = _run(app, "create", "laptop agent", "--categories", "keystrokes,pointer")
    assert code == 0, output
    token = TOKEN.findall(output)[0]
    assert "webhook" not in output.lower()
    with app.app_context():
        collector = db.scalar(select(Collector).where(Collector.name == "laptop agent"))
        assert collector is not None
        assert collector.categories == ["keystrokes", "pointer"]
        assert collector.token_hash == hashlib.sha256(token.encode()).hexdigest()
        # The token itself is nowhere in the table.
        rows = db.execute(text("SELECT * FROM collector")).all()
        assert token not in repr(rows)
    world.grant("sub-a", "keystrokes")
    assert client.get("/api/v1/consent", query_string={"subject": "sub-a",
                                                       "category": "keystrokes"},
                      headers=bearer(token)).json["allowed"] is True
    code, listing = _run(app, "list")
    assert code == 0 and "laptop agent  [active]" in listing and token not in listing


def test_create_with_a_webhook_prints_its_secret_once(app: Flask, world: World) -> None:
    code, output = _run(app, "create", "hooked", "--categories", "clicks", "--webhook",
                        "https://collector.example.com/hooks/consent")
    assert code == 0, output
    assert re.search(r"^  whsec_[A-Za-z0-9+/=]{44}$", output, re.MULTILINE)


def test_create_refuses_what_cannot_work(app: Flask, world: World) -> None:
    code, output = _run(app, "create", "agent", "--categories", "keystrokes,screenshots")
    assert code == 2 and "screenshots" in output
    code, output = _run(app, "create", "agent", "--categories", "clicks", "--webhook", "ftp://x")
    assert code == 2 and "webhook_url" in output
    assert _run(app, "create", "agent", "--categories", "clicks")[0] == 0
    code, output = _run(app, "create", "agent", "--categories", "clicks")
    assert code == 2 and "taken" in output
    code, output = _run(app, "create", "agent-2", "--categories", ",")
    assert code == 2 and "at least one category" in output


def test_revoke_takes_effect_at_once(app: Flask, world: World, client: FlaskClient) -> None:
    code, output = _run(app, "create", "agent", "--categories", "keystrokes")
    token = TOKEN.findall(output)[0]
    query = {"subject": "sub-a", "category": "keystrokes"}
    assert client.get("/api/v1/consent", query_string=query,
                      headers=bearer(token)).status_code == 200
    assert _run(app, "revoke", "agent") == (0, "Revoked collector 'agent': its token no longer "
                                               "works.\n")
    assert client.get("/api/v1/consent", query_string=query,
                      headers=bearer(token)).status_code == 401
    assert "already revoked" in _run(app, "revoke", "agent")[1]
    code, output = _run(app, "revoke", "nobody")
    assert code == 1 and "No collector" in output
    assert "[revoked" in _run(app, "list")[1]


def test_list_names_unacknowledged_withdrawals(app: Flask, world: World) -> None:
    assert "No collector is registered" in _run(app, "list")[1]
    world.collector("agent", ("keystrokes",))
    world.grant("sub-a", "keystrokes")
    world.withdraw("sub-a", "keystrokes")
    assert "withdrawals not yet acknowledged: 1" in _run(app, "list")[1]
