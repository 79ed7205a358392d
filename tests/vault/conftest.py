"""Vault test helpers: an app without an identity provider, the shipped catalog, people, consent.

The vault's tests sign nobody in, so they need no identity provider: ``settings`` is replaced
by one pointing at an address nothing listens on (as the template database does).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.auth.models import Person
from portal.auth.service import sign_in
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.models import Category
from portal.catalog.notices import current_notice
from portal.catalog.publication import load_catalog
from portal.consent.models import ConsentMethod
from portal.consent.service import grant_consent, withdraw_consent
from portal.db import commit, db
from portal.vault.checks import parse_timestamp
from portal.vault.ingest import IngestResult, find_category, ingest_batch
from portal.vault.models import CollectedBatch, DataKey
from tests.conftest import _settings

ISSUER = "http://127.0.0.1:9"


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """The configuration of the vault's tests: a real database, no identity provider."""
    return _settings(database_url, ISSUER, "http://localhost")


@pytest.fixture
def catalog(app: Flask) -> None:
    """Publish the shipped catalog as notice version 1."""
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()


@pytest.fixture
def ctx(app: Flask, catalog: None) -> Iterator[None]:
    """Run the test inside an application context, with the catalog published."""
    with app.app_context():
        yield


def make_person(subject: str) -> Person:
    """Find or create a person as signing in would (flushes; the caller commits)."""
    return sign_in({"sub": subject, "name": subject.title()}, issuer=ISSUER,
                   roles_claim="groups", role_map={})


def grant(person: Person, key: str) -> None:
    """Give ``person``'s consent for category ``key`` under the current notice."""
    notice = current_notice()
    assert notice is not None
    grant_consent(person, find_category(key), notice_version=notice, method=ConsentMethod.WEB,
                  actor=person)


def withdraw(person: Person, key: str) -> None:
    """Withdraw ``person``'s consent for category ``key``."""
    withdraw_consent(person, find_category(key), method=ConsentMethod.WEB, actor=person)


def recent(minutes_ago: float) -> dt.datetime:
    """Return a moment ``minutes_ago`` before now, in UTC, to the millisecond."""
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: dt.datetime) -> str:
    """Write a moment as collectors do."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def keystroke_events(*texts: str, start: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Return keystroke events typing ``texts``, one second apart from ``start``."""
    start = start or recent(30)
    return [{"t": iso(start + dt.timedelta(seconds=index)), "app": "code editor", "keys": text,
             "duration_ms": 100 * len(text)} for index, text in enumerate(texts)]


def ingest(person: Person, key: str, events: list[dict[str, Any]], *, dss_level: int = 2,
           **options: Any) -> IngestResult:
    """Ingest ``events`` with a window spanning exactly their times."""
    moments = [parse_timestamp(event["t"]) for event in events]
    assert all(moments)
    return ingest_batch(person, find_category(key), events=events,
                        collected_from=min(m for m in moments if m),
                        collected_to=max(m for m in moments if m), dss_level=dss_level,
                        **options)


def ingest_body(person: Person, body: dict[str, Any], **options: Any) -> IngestResult:
    """Ingest an API-shaped batch body (as the demo generator makes them)."""
    start, end = parse_timestamp(body["collected_from"]), parse_timestamp(body["collected_to"])
    assert start and end
    return ingest_batch(person, find_category(body["category"]), events=body["events"],
                        collected_from=start, collected_to=end, dss_level=body["dss_level"],
                        **options)


def stored() -> tuple[int, int]:
    """Count the stored batches and data keys."""
    batches = db.scalar(select(func.count()).select_from(CollectedBatch)) or 0
    keys = db.scalar(select(func.count()).select_from(DataKey)) or 0
    return batches, keys


def category(key: str) -> Category:
    """Return a category row of the catalog in force."""
    return find_category(key)
