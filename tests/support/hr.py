"""HR's tests: people with departments, consent decisions at chosen times, the export form."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.auth.models import Person
from portal.catalog.models import Category
from portal.consent import service as consent_service
from portal.consent.models import ConsentMethod
from portal.db import commit, db
from tests.support.forms import csrf_token

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def add_people(app: Flask, specs: Iterable[tuple[str, str, str]], *,
               created_at: dt.datetime = T0 - dt.timedelta(days=60)) -> dict[str, int]:
    """Create people (name, department, location) known since ``created_at``; return their ids."""
    with app.app_context():
        people = [Person(issuer="https://idp.example", subject=f"sub-{name.lower()}", name=name,
                         email=f"{name.lower()}@example.com", department=department,
                         location=location, roles=[], created_at=created_at)
                  for name, department, location in specs]
        db.add_all(people)
        commit()
        return {person.name: person.id for person in people}


def decide(app: Flask, monkeypatch: pytest.MonkeyPatch, person_id: int, key: str, action: str,
           at: dt.datetime) -> None:
    """Record a decision of ``person_id`` on ``key`` as if made at ``at``."""
    with app.app_context(), monkeypatch.context() as patch:
        patch.setattr(consent_service, "utcnow", lambda: at)
        person = db.get(Person, person_id)
        category = db.get(Category, key)
        assert person is not None and category is not None
        version = consent_service.current_notice()
        assert version is not None
        if action == "grant":
            event = consent_service.grant_consent(person, category, notice_version=version,
                                                  method=ConsentMethod.WEB, actor=person)
        elif action == "withdraw":
            event = consent_service.withdraw_consent(person, category, method=ConsentMethod.WEB,
                                                     actor=person)
        else:
            event = consent_service.refuse_consent(person, category, method=ConsentMethod.WEB,
                                                   actor=person)
        assert event is not None, (person_id, key, action)
        commit()


def export(client: FlaskClient, fmt: str, *, purpose: str = "Annual consent audit 2026",
           query: dict[str, str] | None = None, token: str | None = None) -> Any:
    """Post the export form as the page does."""
    return client.post("/hr/export", query_string=query or {}, data={
        "csrf_token": token if token is not None else csrf_token(client, "/hr/"),
        "purpose": purpose, "format": fmt})
