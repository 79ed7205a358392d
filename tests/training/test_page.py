"""The person's own training page, their access log and their download: their counts only."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.audit.service import detail_of
from portal.db import commit, db
from portal.training.models import OutdatedReason
from tests.support.downloads import open_zip, post_download
from tests.support.factories import account_person
from tests.support.identity import SignIn, signed_in
from tests.support.training_views import (
    add_client,
    add_model,
    add_snapshot,
    hold,
    name_training_purposes,
    record_read,
)

SENSITIVE = ("412 records left out: made while a confidential or strictly confidential "
             "document (DSS level 3 or 4) was open.")


@dataclass(frozen=True)
class Clients:
    """Alex and Bea, each signed in on their own client."""

    alex: FlaskClient
    bea: FlaskClient


@pytest.fixture
def people(app: Flask, sign_in: SignIn, catalog: int) -> Clients:
    """Alex and Bea signed in; dataset 12 holds both, dataset 13 (retired) only Alex."""
    clients = Clients(signed_in(app, sign_in, "alex"), signed_in(app, sign_in, "bea"))
    alex, bea = account_person(app, "alex"), account_person(app, "bea")
    with app.app_context():
        name_training_purposes()
        client = add_client()
        twelve = add_snapshot(client, 12, categories=("keystrokes", "pointer"))
        hold(twelve, alex, "keystrokes", 1234, {"sensitive_document": 412, "no_consent": 1})
        hold(twelve, alex, "pointer", 56)
        hold(twelve, bea, "keystrokes", 4321, {"above_max_dss": 9})
        thirteen = add_snapshot(client, 13, retired=True)
        hold(thirteen, alex, "keystrokes", 5, outdated_reason=OutdatedReason.WITHDRAWN)
        add_model(client, "helper-llm", "3.1", [twelve, thirteen])
        record_read(twelve, [alex, bea])
        record_read(thirteen, [alex])
        commit()
    return clients


def test_the_page_shows_the_persons_own_counts_reasons_and_models(
        app: Flask, people: Clients) -> None:
    response = people.alex.get("/my-data/training")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert "Training dataset 12: Task assistant" in page
    assert "Training dataset 13: Task assistant" in page
    assert "1,234" in page and "56" in page
    assert SENSITIVE in page
    assert ("1 record left out: you had not given your consent, or had withdrawn it, when the "
            "dataset was made.") in page
    assert "helper-llm, version 3.1" in page
    assert "Retired: deleted" in page and "Ready" in page
    assert "The records used here are outdated: you withdrew your consent." in page
    # The explanation keeps to the notice's promise about models already trained.
    assert "not used in any new training run" in page
    assert "Models trained before you withdrew keep what they learned." in page
    assert 'href="/access-log"' in page
    # Nothing of Bea, who is in the same dataset.
    assert "4,321" not in page and "more sensitive than this dataset allows" not in page
    with app.app_context():
        entry = db.scalars(select(AuditEntry).where(AuditEntry.what == "my_data.view")).one()
        assert entry.actor_id == account_person(app, "alex").id
        assert detail_of(entry) == {"page": "training"}


def test_another_person_sees_only_their_own(app: Flask, people: Clients) -> None:
    page = people.bea.get("/my-data/training").get_data(as_text=True)
    assert "4,321" in page
    assert "9 records left out: they were more sensitive than this dataset allows." in page
    assert "Training dataset 13" not in page
    assert "1,234" not in page and "412" not in page


@pytest.mark.parametrize("who", ["chris", "eli", "dana"])
def test_no_role_opens_someone_elses_training_data(app: Flask, people: Clients,
                                                    sign_in: SignIn, who: str) -> None:
    alex = account_person(app, "alex")
    client = signed_in(app, sign_in, who)
    for query in ({"person": alex.id}, {"person_id": alex.id}, {"subject": alex.subject}):
        page = client.get("/my-data/training", query_string=query).get_data(as_text=True)
        assert "None of your records are in a training dataset" in page
        assert "1,234" not in page
    assert client.get(f"/my-data/training/{alex.id}").status_code == 404


def test_signing_in_is_needed(app: Flask, client: FlaskClient, catalog: int) -> None:
    response = client.get("/my-data/training")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_the_empty_state_says_so(app: Flask, sign_in: SignIn, catalog: int) -> None:
    page = signed_in(app, sign_in, "alex").get("/my-data/training").get_data(as_text=True)
    assert "None of your records are in a training dataset" in page
    assert "What a training dataset is" in page


def test_my_data_links_to_the_training_page(app: Flask, sign_in: SignIn, catalog: int) -> None:
    page = signed_in(app, sign_in, "alex").get("/my-data").get_data(as_text=True)
    assert 'href="/my-data/training"' in page


def test_each_access_log_names_the_readers_own_counts(app: Flask, people: Clients) -> None:
    alex = people.alex.get("/access-log").get_data(as_text=True)
    assert ("Training dataset 12 for the purpose “Task assistant” read 1,234 of your records "
            "in “Keystrokes”, 56 of your records in “Pointer movements”.") in alex
    assert "Training dataset 13 for the purpose “Task assistant” read 5 of your records" in alex
    # The portal read them under the notice's rule, not at someone's request: it says so.
    assert "To train AI models, for the purpose the notice names" in alex
    assert "No reason given" not in alex
    bea = people.bea.get("/access-log").get_data(as_text=True)
    assert ("Training dataset 12 for the purpose “Task assistant” read 4,321 of your records in "
            "“Keystrokes”.") in bea
    assert "1,234" not in bea and "Training dataset 13" not in bea


def test_the_download_holds_the_training_section(app: Flask, people: Clients) -> None:
    archive = open_zip(post_download(people.alex))
    document = json.loads(archive.read("training/training.json"))
    twelve = next(item for item in document["datasets"] if item["dataset"] == 12)
    assert twelve["purpose"] == "task_assistant" and twelve["purpose_name"] == "Task assistant"
    assert {item["category"]: item["included"] for item in twelve["categories"]} == {
        "keystrokes": 1234, "pointer": 56}
    keystrokes = twelve["categories"][0]
    assert keystrokes["excluded"] == {"no_consent": 1, "sensitive_document": 412}
    assert SENSITIVE in keystrokes["excluded_explained"]
    assert twelve["models"][0]["name"] == "helper-llm"
    rows = archive.read("training/training.csv").decode().splitlines()
    assert rows[0].startswith("dataset,purpose,purpose_name")
    assert len(rows) == 4  # a header, two categories of dataset 12, one of dataset 13
    summary = archive.read("summary.html").decode()
    assert "Training datasets holding your records" in summary
    assert "1,234 of your records in “Keystrokes”." in summary
    manifest = json.loads(archive.read("manifest.json"))
    assert "training/training.json" in {item["path"] for item in manifest["files"]}
    # The download's access log words the read for Alex too.
    log = json.loads(archive.read("access-log.json"))
    labels = [entry["what_label"] for entry in log["entries"] if entry["what"] ==
              "training.snapshot"]
    assert any("read 1,234 of your records" in label for label in labels)
    assert not any("4,321" in label for label in labels)


def test_the_page_speaks_german(app: Flask, people: Clients) -> None:
    people.alex.post("/locale", data={"locale": "de", "csrf_token": _csrf(people.alex)})
    page = people.alex.get("/my-data/training").get_data(as_text=True)
    assert "Trainingsdatensatz 12: Aufgabenassistent" in page
    assert "1.234" in page
    assert ("412 Datensätze nicht aufgenommen: entstanden, während ein vertrauliches oder "
            "streng vertrauliches Dokument (DSS-Stufe 3 oder 4) geöffnet war.") in page
    log = people.alex.get("/access-log").get_data(as_text=True)
    assert ("Trainingsdatensatz 12 für den Zweck „Aufgabenassistent“ hat 1.234 Ihrer "
            "Datensätze in „") in log


def _csrf(client: FlaskClient) -> str:
    from tests.support.forms import csrf_token

    return csrf_token(client, "/my-data/training")
