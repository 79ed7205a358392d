"""The one after-commit dispatch: work runs once the unit of work commits, never if it does not."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from portal.db import after_commit, commit, db


def test_work_runs_after_the_commit_once_and_never_after_a_rollback(app: Flask) -> None:
    ran: list[str] = []

    def note() -> None:
        ran.append("note")

    with app.app_context():
        after_commit(lambda: ran.append("undone"))
        db.rollback()
        after_commit(note)
        after_commit(note)  # the same work, queued twice, runs once
        assert ran == []
        commit()
        assert ran == ["note"]
        commit()  # the next unit of work has nothing queued
        assert ran == ["note"]
        after_commit(lambda: ran.append("closed"))
        db.close()
        commit()
        assert ran == ["note"]


def test_a_failing_callback_is_logged_and_the_commit_stands(
        app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("the mail server is on fire")

    with app.app_context():
        after_commit(fail)
        after_commit(lambda: ran.append("next"))
        with caplog.at_level(logging.ERROR, logger="portal.db"):
            commit()
        assert ran == ["next"]
        assert "the commit stands" in caplog.text and "on fire" in caplog.text


def test_a_request_runs_work_after_its_commit_and_sends_the_rest_after_its_answer(
        app: Flask) -> None:
    ran: list[str] = []

    def step(status: int) -> tuple[str, int]:
        db.connection()  # the request has a unit of work
        after_commit(lambda: ran.append(f"journal {status}"))
        after_commit(lambda: ran.append(f"mail {status}"), after_response=True)
        return "done", status

    app.add_url_rule("/test-after-commit/<int:status>", view_func=step)
    client = app.test_client()
    response = client.get("/test-after-commit/200")
    assert response.status_code == 200
    assert ran == ["journal 200"]  # written before the answer
    response.close()  # what a WSGI server does once the answer is sent
    assert ran == ["journal 200", "mail 200"]

    refused = client.get("/test-after-commit/400")
    refused.close()
    assert refused.status_code == 400
    assert ran == ["journal 200", "mail 200"]  # rolled back: nothing runs
