"""Training clients: registered, listed and revoked by command; tokens stored only hashed."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.api.service import open_secret
from portal.db import db
from portal.training.models import TrainingClient
from portal.training.service import (
    ClientRefused,
    allowed_purposes,
    create_client,
    identify_training_client,
)
from tests.support.catalog import in_app
from tests.support.config import portal_settings
from tests.support.identity import ISSUER


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """A real database, no identity provider: nobody signs in here."""
    return portal_settings(database_url, ISSUER, "http://localhost")


def _token(output: str) -> str:
    match = re.search(r"Token \(shown only now.*\):\n  (\S+)", output)
    assert match, output
    return match.group(1)


def _count(app: Flask) -> int:
    with app.app_context():
        return db.scalar(select(func.count()).select_from(TrainingClient)) or 0


@pytest.mark.usefixtures("catalog")
def test_create_prints_the_token_once_and_stores_only_its_hash(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["training", "clients", "create", "code pipeline",
                                 "--purpose", "code_and_text_completion",
                                 "--purpose", "assistant_workflows",
                                 "--webhook", "https://training.example.com/hooks"])
    assert result.exit_code == 0, result.output
    token = _token(result.output)
    assert "assistant_workflows, code_and_text_completion" in result.output
    secret = re.search(r"Webhook secret .*:\n  (whsec_\S+)", result.output)
    assert secret, result.output
    with app.app_context():
        client = identify_training_client(token)
        assert client is not None
        assert client.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in repr(db.execute(select(TrainingClient.__table__)).all())
        assert client.scopes == ["snapshots", "models", "retire"]
        assert open_secret(client.webhook_secret_sealed) == secret.group(1)
        assert secret.group(1) not in client.webhook_secret_sealed


@pytest.mark.usefixtures("catalog")
def test_list_and_revoke(app: Flask) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(args=["training", "clients", "create", "summariser",
                                  "--purpose", "conversation_summaries", "--scope", "snapshots"])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(args=["training", "clients", "list"])
    assert "summariser  [active]" in listed.output
    assert "purposes: conversation_summaries" in listed.output
    assert "scopes:   snapshots" in listed.output

    revoked = runner.invoke(args=["training", "clients", "revoke", "summariser"])
    assert revoked.exit_code == 0, revoked.output
    assert "its token no longer works" in revoked.output
    assert "[revoked " in runner.invoke(args=["training", "clients", "list"]).output
    again = runner.invoke(args=["training", "clients", "revoke", "summariser"])
    assert "already revoked" in again.output
    nobody = runner.invoke(args=["training", "clients", "revoke", "nobody"])
    assert nobody.exit_code == 1
    assert "No training client is named 'nobody'" in nobody.output
    with app.app_context():
        client = identify_training_client(_token(created.output))
        assert client is not None and not client.active


@pytest.mark.usefixtures("catalog")
def test_nothing_listed_says_how_to_add_one(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["training", "clients", "list"])
    assert "portal training clients create" in result.output


@pytest.mark.usefixtures("catalog")
@pytest.mark.parametrize(("arguments", "words"), [
    (["x", "--purpose", "train_everything"],
     "purposes are not training purposes of the notice in force: train_everything"),
    (["", "--purpose", "conversation_summaries"], "name must be 1 to 100 printable"),
    (["x", "--purpose", "conversation_summaries", "--webhook", "ftp://example.com"],
     "webhook_url must be an http:// or https:// URL"),
], ids=["unknown purpose", "empty name", "not a web address"])
def test_create_refuses_what_cannot_work_and_registers_nothing(
        app: Flask, arguments: list[str], words: str) -> None:
    result = app.test_cli_runner().invoke(args=["training", "clients", "create", *arguments])
    assert result.exit_code == 2
    assert f"Not registered: {words}" in result.output
    assert _count(app) == 0


@pytest.mark.usefixtures("catalog")
def test_a_name_is_used_once_and_a_scope_must_exist(app: Flask) -> None:
    with in_app(app):
        create_client("pipeline", purposes=["assistant_workflows"], scopes=["snapshots"])
        with pytest.raises(ClientRefused) as taken:
            create_client("pipeline", purposes=["assistant_workflows"], scopes=["snapshots"])
        assert "is taken" in taken.value.problems["name"]
        with pytest.raises(ClientRefused) as scoped:
            create_client("other", purposes=["assistant_workflows"], scopes=["everything"])
        assert "everything" in scoped.value.problems["scopes"]
        with pytest.raises(ClientRefused) as none:
            create_client("other", purposes=[], scopes=[])
        assert set(none.value.problems) == {"purposes", "scopes"}


@pytest.mark.usefixtures("catalog")
def test_allowed_purposes_come_from_the_notice_in_force(app: Flask) -> None:
    with in_app(app):
        assert allowed_purposes("pointer") == ["assistant_workflows"]
        assert allowed_purposes("conversations") == ["conversation_summaries"]
        assert allowed_purposes("performance") == []
        assert allowed_purposes("no_such_category") == []
