"""The "My data" page: what is held, the latest events, colleagues protected, audited."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.db import db
from tests.support.downloads import COLLEAGUE, days_ago, message, pointer_events, store
from tests.support.factories import account_person


def test_shows_what_is_held_and_the_latest_ten_events(app: Flask, alex: FlaskClient) -> None:
    store(app, "alex", "pointer", pointer_events(days_ago(3), 40, app="Old app"))
    store(app, "alex", "pointer", pointer_events(days_ago(1), 12, app="New app"), dss_level=3)
    response = alex.get("/my-data")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert "Pointer movements" in page and "52 records" in page
    assert "in 2 batches" in page
    assert "Level 2: Internal" in page and "Level 3: Confidential" in page
    assert "Your latest 10 records in Pointer movements, newest first" in page
    assert page.count("New app") == 10 and "Old app" not in page
    with app.app_context():
        entry = db.scalar(select(AuditEntry).where(AuditEntry.what == "my_data.view"))
        assert entry is not None and entry.actor_id == account_person(app, "alex").id
        assert str(entry.actor_role) == "subject"


def test_colleagues_text_is_withheld_in_the_preview(app: Flask, alex: FlaskClient) -> None:
    store(app, "alex", "conversations", [
        message(days_ago(1), 1, "self", "Shall we meet on Thursday?"),
        message(days_ago(1, hour=13), 2, COLLEAGUE, "Something only my colleague wrote")],
        dss_level=4)
    page = alex.get("/my-data").get_data(as_text=True)
    assert "Shall we meet on Thursday?" in page
    assert "Something only my colleague wrote" not in page and COLLEAGUE not in page
    assert "Withheld: written by a colleague" in page and "colleague-" in page
    assert "GDPR Article 15(4)" in page


def test_says_so_when_nothing_is_held(app: Flask, alex: FlaskClient) -> None:
    page = alex.get("/my-data").get_data(as_text=True)
    assert "Nothing is held about you" in page
