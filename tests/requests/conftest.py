"""Deletion test helpers: people by role, collected data, a request taken to any state, SMTP."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from portal.auth.models import Person
from portal.auth.service import sign_in
from portal.catalog.service import SHIPPED_CATALOG, load_catalog, read_catalog_file
from portal.db import commit
from portal.requests import service
from portal.requests.models import DeletionRequest, DeletionScope
from tests.conftest import ROLE_MAP, _settings
from tests.support.smtp import Inbox, smtp_server
from tests.vault.conftest import grant, ingest, keystroke_events, recent

ISSUER = "http://127.0.0.1:9"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(database_url: str, smtp: tuple[Inbox, int]) -> dict[str, Any]:
    """A real database, mail through the test SMTP server, no identity provider."""
    values = _settings(database_url, ISSUER, "http://localhost")
    values.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_SECURITY="none",
                  DPO_TEAM_EMAIL="privacy-team@example.com")
    return values


@pytest.fixture
def catalog(app: Flask) -> None:
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()


@pytest.fixture
def ctx(app: Flask, catalog: None) -> Iterator[None]:
    with app.app_context():
        yield


def person(subject: str, *, dpo: bool = False, locale: str | None = None) -> Person:
    """Find or create a person as signing in would; a DPO holds the DPO group."""
    claims: dict[str, Any] = {"sub": subject, "name": subject.title(),
                              "email": f"{subject}@example.com"}
    if dpo:
        claims["groups"] = ["privacy-office"]
    found = sign_in(claims, issuer=ISSUER, roles_claim="groups", role_map=ROLE_MAP)
    if locale:
        found.locale = locale
    return found


@dataclass
class Cast:
    """The people of a deletion test, with some of Alex's data collected."""

    alex: Person
    dana: Person
    dora: Person


def collect(alex: Person) -> None:
    """Give consent for keystrokes and clicks and store two keystroke batches and one of clicks."""
    grant(alex, "keystrokes")
    grant(alex, "pointer")
    ingest(alex, "keystrokes", keystroke_events("alpha-typed", "beta-typed", start=recent(300)))
    ingest(alex, "keystrokes", keystroke_events("gamma-typed", start=recent(60)))
    start = recent(90)
    ingest(alex, "pointer", [{"t": (start + dt.timedelta(seconds=index)).isoformat(
        timespec="milliseconds").replace("+00:00", "Z"), "x": index, "y": index,
        "screen": 1, "app": "browser"} for index in range(3)])


@pytest.fixture
def cast(ctx: None) -> Cast:
    """Alex (an employee with data), Dana and Dora (data protection officers)."""
    people = Cast(person("alex"), person("dana", dpo=True), person("dora", dpo=True))
    collect(people.alex)
    commit()
    return people


def approved(cast: Cast, *, scope: DeletionScope = DeletionScope.ALL,
             **options: Any) -> DeletionRequest:
    """Submit a request of Alex and have Dana approve it (committed)."""
    request = service.submit_deletion_request(cast.alex, scope=scope, **options)
    service.approve_deletion(request, dpo=cast.dana)
    commit()
    return request
