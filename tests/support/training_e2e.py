"""A training dataset made through the real paths, for the end-to-end tests (H6).

The client registered by ``portal training clients create``, records stored through the vault,
the snapshot asked for through the API and built by ``portal training work --once``. Each
helper runs in application contexts of its own and commits, as the commands and requests do.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.auth.models import Person
from portal.db import commit, db
from tests.support.batches import recent
from tests.support.collector_api import bearer
from tests.support.factories import create_person, grant, withdraw
from tests.support.training import keystrokes, ratings

KEYS = "keystrokes"
PURPOSE = "code_and_text_completion"
SNAPSHOTS = "/api/v1/training/snapshots"
#: Alex's exclusion on the person's page, in English and German.
SENSITIVE = ("2 records left out: made while a confidential or strictly confidential "
             "document (DSS level 3 or 4) was open.")
SENSITIVE_DE = ("2 Datensätze nicht aufgenommen: entstanden, während ein vertrauliches oder "
                "streng vertrauliches Dokument (DSS-Stufe 3 oder 4) geöffnet war.")
TOO_SENSITIVE = "1 record left out: it was more sensitive than this dataset allows."


@dataclass(frozen=True)
class Collected:
    """The people whose records were stored, by name, and their workplace pseudonyms."""

    ids: dict[str, int]
    workplace: frozenset[str]


def stamp(moment: dt.datetime) -> str:
    """Write ``moment`` as the API reads it."""
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def create_client(app: Flask, webhook_url: str = "") -> tuple[str, str]:
    """Register the training pipeline by command; return its token and webhook secret."""
    args = ["training", "clients", "create", "completion pipeline", "--purpose", PURPOSE]
    if webhook_url:
        args += ["--webhook", webhook_url]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    token = re.search(r"Token \(shown only now.*\):\n  (\S+)", result.output)
    secret = re.search(r"Webhook secret .*:\n  (whsec_\S+)", result.output)
    assert token, result.output
    return token.group(1), secret.group(1) if secret else ""


def person(subject: str) -> Person:
    """Return the person with ``subject`` (in the caller's application context)."""
    found = db.scalar(select(Person).where(Person.subject == subject))
    assert found is not None
    return found


def collect(app: Flask, *, grant_signed_in: bool = False) -> Collected:
    """Store everyone's records through the vault (Alex and Bea have signed in).

    Alex: two plain records in, two made within 30 minutes of a DSS 3 document out. Bea:
    three in, one of a batch collected at DSS 3 out (the snapshot allows 2). Carl: no
    sensitivity ratings, so no activity record of his may enter. Dora withdrew before.
    ``grant_signed_in``: give Alex's and Bea's consent here (else they gave it on the portal).
    """
    with app.app_context():
        alex, bea = person("sub-alex"), person("sub-bea")
        carl, dora = create_person("sub-carl"), create_person("sub-dora")
        grant(carl, KEYS)
        grant(dora, KEYS)
        if grant_signed_in:
            grant(alex, KEYS)
            grant(bea, KEYS)
        ratings(alex, (recent(400), 1), (recent(100), 3))
        keystrokes(alex, recent(300), recent(299), text="alex-plain")
        keystrokes(alex, recent(110), recent(95), text="alex-near-secret")
        ratings(bea, (recent(400), 2))
        keystrokes(bea, recent(200), recent(199), recent(198), text="bea-plain")
        keystrokes(bea, recent(150), dss_level=3, text="bea-too-sensitive")
        keystrokes(carl, recent(250), recent(249), text="carl-unrated")
        ratings(dora, (recent(400), 1))
        keystrokes(dora, recent(240), text="dora-withdrawn")
        withdraw(dora, KEYS)
        commit()
        everyone = {"alex": alex, "bea": bea, "carl": carl, "dora": dora}
        return Collected({name: someone.id for name, someone in everyone.items()},
                         frozenset(someone.workplace_pseudonym for someone in everyone.values()))


def ask(api: FlaskClient, token: str) -> str:
    """Ask for a snapshot of the last day's keystrokes at DSS 2 at most; return its id."""
    body = {"purpose": PURPOSE, "categories": [KEYS], "collected_from": stamp(recent(24 * 60)),
            "collected_to": stamp(recent(0)), "max_dss_level": 2}
    response = api.post(SNAPSHOTS, json=body, headers=bearer(token))
    assert response.status_code == 202, response.json
    assert response.json["state"] == "queued"
    public_id: str = response.json["id"]
    return public_id


def work(app: Flask) -> str:
    """Run ``portal training work --once``; return what it printed."""
    result = app.test_cli_runner().invoke(args=["training", "work", "--once",
                                                "--owner", "e2e"])
    assert result.exit_code == 0, result.output
    return result.output


def register_model(api: FlaskClient, token: str, public_id: str) -> None:
    """Register the model ``completion-llm`` 2.0 as trained on the snapshot."""
    model = api.post("/api/v1/training/models", headers=bearer(token), json={
        "name": "completion-llm", "version": "2.0", "snapshots": [public_id]})
    assert model.status_code == 201, model.json
