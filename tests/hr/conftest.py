"""HR test helpers: people with departments, consent decisions at chosen times, HR's client."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.models import Category
from portal.catalog.notices import current_notice
from portal.catalog.publication import load_catalog
from portal.consent import service as consent_service
from portal.consent.models import ConsentMethod
from portal.db import commit, db
from tests.conftest import SignIn

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


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
        version = current_notice()
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


def person_id(app: Flask, subject: str) -> int:
    """Return the id of the person with ``subject``."""
    with app.app_context():
        found = db.scalar(select(Person.id).where(Person.subject == subject))
        assert found is not None
        return found


def signed_in(app: Flask, sign_in: SignIn, who: str) -> FlaskClient:
    """Return a new client signed in as ``who``."""
    client = app.test_client()
    sign_in.login(client, who)
    return client


def csrf_token(client: FlaskClient) -> str:
    """Read the CSRF token from HR's page, as a browser would."""
    match = _CSRF.search(client.get("/hr/").get_data(as_text=True))
    assert match is not None
    return match.group(1)


def export(client: FlaskClient, fmt: str, *, purpose: str = "Annual consent audit 2026",
           query: dict[str, str] | None = None, token: str | None = None) -> Any:
    """Post the export form as the page does."""
    return client.post("/hr/export", query_string=query or {}, data={
        "csrf_token": token if token is not None else csrf_token(client),
        "purpose": purpose, "format": fmt})


@pytest.fixture
def catalog(app: Flask) -> int:
    """Publish the shipped catalog as notice version 1; return its number."""
    with app.app_context():
        outcome = load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
        return outcome.notice.number


@pytest.fixture
def hr(app: Flask, sign_in: SignIn, catalog: int) -> FlaskClient:
    """Chris (HR), signed in, with the catalog published."""
    return signed_in(app, sign_in, "chris")
