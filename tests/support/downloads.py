"""The employee's data download in tests: data stored through the vault, the download form,
and reading the archive it answers with.

Batches go straight through :func:`portal.vault.service.ingest_batch` (what the collector API
calls after parsing), each helper in its own application context and committed, so that the
pages the test client opens afterwards see them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.test import TestResponse

from portal.auth.models import Person, WebSession
from portal.catalog.notices import current_notice
from portal.consent.models import ConsentMethod, ConsentStatus
from portal.consent.service import grant_consent
from portal.db import commit, db, utcnow
from portal.vault.checks import parse_timestamp
from portal.vault.ingest import find_category, ingest_batch
from tests.support.batches import iso
from tests.support.factories import account_person
from tests.support.forms import csrf_token

CHANNEL = "c-5b07e2d1a9c4"
#: Collector pseudonyms of two colleagues.
COLLEAGUE = "p-3f9c1a7e22b0"
OTHER_COLLEAGUE = "p-a81d44c09e17"


def days_ago(days: float, *, hour: int = 12) -> dt.datetime:
    """Return noon UTC ``days`` days ago (or an earlier hour today), to the millisecond."""
    moment = (utcnow() - dt.timedelta(days=days)).replace(hour=hour, minute=0, second=0,
                                                            microsecond=0)
    return min(moment, utcnow().replace(microsecond=0) - dt.timedelta(minutes=5))


def pointer_events(start: dt.datetime, count: int, *, app: str = "Editor") -> list[dict[str, Any]]:
    """Return ``count`` pointer events one second apart from ``start``."""
    return [{"t": iso(start + dt.timedelta(seconds=index)), "x": index % 1000,
             "y": (7 * index) % 1000, "screen": 1, "app": app} for index in range(count)]


def message(moment: dt.datetime, number: int, author: str, text: str) -> dict[str, Any]:
    """Return a chat message event; ``author`` is "self" or a collector pseudonym."""
    return {"t": iso(moment), "channel_id": CHANNEL, "message_id": f"m-{number:016x}",
            "author": author, "participants": [COLLEAGUE, OTHER_COLLEAGUE], "text": text}


def store(app: Flask, who: str, key: str, events: list[dict[str, Any]], *,
          dss_level: int = 2, window: tuple[dt.datetime, dt.datetime] | None = None) -> str:
    """Give consent if needed and store ``events`` as one batch; return its public id."""
    with app.app_context():
        person = db.get(Person, account_person(app, who).id)
        assert person is not None
        category = find_category(key)
        status = db.get(ConsentStatus, (person.id, key))
        if category.needs_consent and (status is None or not status.allows_collection):
            notice = current_notice()
            assert notice is not None
            grant_consent(person, category, notice_version=notice, method=ConsentMethod.WEB,
                          actor=person)
        moments = [parse_timestamp(event["t"]) for event in events]
        start, end = window or (min(m for m in moments if m), max(m for m in moments if m))
        result = ingest_batch(person, category, events=events, collected_from=start,
                              collected_to=end, dss_level=dss_level)
        commit()
        return result.public_id


def post_download(client: FlaskClient, categories: list[str] | tuple[str, ...] = ("pointer",),
                  **fields: str) -> TestResponse:
    """Post the download form as the browser does."""
    data: dict[str, Any] = {"csrf_token": csrf_token(client, "/my-data/download"),
                            "categories": list(categories)}
    data.update(fields)
    return client.post("/my-data/download", data=data)


def open_zip(response: TestResponse) -> zipfile.ZipFile:
    """Open a downloaded ZIP."""
    assert response.status_code == 200, response.get_data(as_text=True)[-6000:-2000]
    return zipfile.ZipFile(io.BytesIO(response.get_data()))


def manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    """Return the archive's manifest, checking that it is its last entry."""
    assert archive.namelist()[-1] == "manifest.json"
    value: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return value


def jsonl(archive: zipfile.ZipFile, key: str) -> list[dict[str, Any]]:
    """Return the lines of a category's JSON Lines file."""
    text = archive.read(f"collected/{key}.jsonl").decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def age_sign_in(app: Flask, who: str, minutes: float) -> None:
    """Make the person's last sign-in at the provider ``minutes`` old (every session)."""
    with app.app_context():
        db.execute(update(WebSession)
                   .where(WebSession.person_id == account_person(app, who).id)
                   .values(authenticated_at=utcnow() - dt.timedelta(minutes=minutes)))
        commit()
