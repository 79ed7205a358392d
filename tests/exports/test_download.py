"""The download of one's own data: complete, filtered, protected, audited, streamed."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from babel.dates import format_date
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text, update

from portal.audit.models import AuditEntry
from portal.auth.models import Person
from portal.db import commit, db, get_engine
from tests.support.downloads import (
    COLLEAGUE,
    OTHER_COLLEAGUE,
    age_sign_in,
    days_ago,
    jsonl,
    manifest,
    message,
    open_zip,
    pointer_events,
    post_download,
    sha256,
    store,
)
from tests.support.factories import account_person
from tests.support.forms import csrf_token
from tests.support.identity import SignIn, signed_in


def _entries(app: Flask, what: str) -> list[AuditEntry]:
    with app.app_context():
        return list(db.scalars(select(AuditEntry).where(AuditEntry.what == what)
                               .order_by(AuditEntry.id)))


def test_the_zip_holds_every_event_once_and_a_right_manifest(app: Flask,
                                                             alex: FlaskClient) -> None:
    first = pointer_events(days_ago(3), 1200)
    second = pointer_events(days_ago(2), 700, app="Browser")
    store(app, "alex", "pointer", first)
    store(app, "alex", "pointer", second, dss_level=3)
    response = post_download(alex, ["pointer"])
    assert response.headers["Cache-Control"] == "no-store"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="my-data-') and disposition.endswith(
        '.zip"')
    archive = open_zip(response)

    lines = jsonl(archive, "pointer")
    assert [line["event"] for line in lines] == first + second
    assert {line["dss_level"] for line in lines} == {2, 3}
    csv_rows = archive.read("collected/pointer.csv").decode().splitlines()
    assert csv_rows[0] == "t,x,y,screen,app,dss_level,batch_id"
    assert len(csv_rows) == 1 + len(first) + len(second)

    found = manifest(archive)
    assert found["format_version"] == 1
    assert found["person"]["subject"] == "sub-alex" and found["person"]["name"] == "Alex Morgan"
    assert found["categories"][0]["events"] == 1900
    assert found["categories"][0]["events_per_dss_level"] == {"2": 1200, "3": 700}
    listed = {item["path"]: item for item in found["files"]}
    assert set(listed) == set(archive.namelist()) - {"manifest.json"}
    for name, item in listed.items():
        data = archive.read(name)
        assert (item["sha256"], item["bytes"]) == (sha256(data), len(data)), name
    for name in ("consent/history.json", "access-log.json", "summary.html", "summary.pdf"):
        assert name in listed
    history = json.loads(archive.read("consent/history.json"))
    receipt = history["events"][0]["receipt_file"]
    assert archive.read(receipt).count(b".") == 2
    assert archive.read("summary.pdf").startswith(b"%PDF")
    assert "Pointer movements" in archive.read("summary.html").decode()


def test_filters_by_category_and_by_each_events_time(app: Flask, alex: FlaskClient) -> None:
    # One batch whose window spans four days: only the events inside the period may come.
    early, late = pointer_events(days_ago(6), 3), pointer_events(days_ago(2), 4)
    store(app, "alex", "pointer", early + late)
    store(app, "alex", "clicks", [{"t": early[0]["t"], "x": 1, "y": 2, "button": "left",
                                   "app": "Editor", "target_role": "button",
                                   "target_label": "Run tests"}])
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=4)).date().isoformat()
    archive = open_zip(post_download(alex, ["pointer"], date_from=start))
    assert [line["event"] for line in jsonl(archive, "pointer")] == late
    assert not any(name.startswith("collected/clicks") for name in archive.namelist())
    found = manifest(archive)
    assert found["filters"]["from"] == start and found["filters"]["to"] is None
    assert [item["key"] for item in found["categories"]] == ["pointer"]

    end = (dt.datetime.now(dt.UTC) - dt.timedelta(days=5)).date().isoformat()
    archive = open_zip(post_download(alex, ["pointer", "clicks"], date_to=end))
    assert [line["event"] for line in jsonl(archive, "pointer")] == early
    assert len(jsonl(archive, "clicks")) == 1


@pytest.mark.parametrize(("fields", "message_text"), [
    ({"categories": []}, "Choose at least one category"),
    ({"categories": ["pointer", "salary"]}, "Choose only from the categories listed"),
    ({"date_from": "2026-13-45"}, "Enter a real date, such as March 1, 2026<"),
    ({"date_from": "2026-03-10", "date_to": "2026-03-01"}, "The last day must be"),
], ids=["none", "unknown", "not a date", "backwards"])
def test_bad_choices_get_a_form_error_and_nothing_happens(app: Flask, alex: FlaskClient,
                                                          fields: dict[str, Any],
                                                          message_text: str) -> None:
    data: dict[str, Any] = {"csrf_token": csrf_token(alex, "/my-data/download"),
                            "categories": ["pointer"], **fields}
    response = alex.post("/my-data/download", data=data)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "There is a problem" in page and message_text in page
    assert _entries(app, "my_data.download") == []


def _period_hints(page: str) -> list[str]:
    return [html.unescape(hint) for hint in re.findall(
        r'<p class="hint" id="(?:date_from|date_to)-hint">([^<]*)</p>', page)]


def test_the_period_gives_a_day_in_the_pages_language_and_reads_one_typed(
        app: Flask, alex: FlaskClient) -> None:
    # Chromium shows a date input in the browser's format (mm/dd/yyyy even on a German page):
    # the hints give a day written out in the page's language, never "2026-03-01".
    english = alex.get("/my-data/download").get_data(as_text=True)
    assert english.count('type="date"') == 2
    assert _period_hints(english) == ["For example March 1, 2026", "For example March 31, 2026"]
    with app.app_context():
        db.execute(update(Person).where(Person.id == account_person(app, "alex").id)
                   .values(locale="de"))
        commit()
    german = alex.get("/my-data/download").get_data(as_text=True)
    assert '<html lang="de">' in german
    assert _period_hints(german) == ["Zum Beispiel 1. März 2026", "Zum Beispiel 31. März 2026"]

    # A day that cannot be read gets a form error with an example, and nothing is downloaded.
    refused = post_download(alex, ["pointer"], date_from="gestern", date_to="31.02.2026")
    assert refused.status_code == 400
    assert re.findall(r'<p class="error-message" id="(date_from|date_to)-error">([^<]*)</p>',
                      refused.get_data(as_text=True)) == [
        ("date_from", "Geben Sie ein gültiges Datum ein, zum Beispiel 1. März 2026"),
        ("date_to", "Geben Sie ein gültiges Datum ein, zum Beispiel 31. März 2026")]
    assert _entries(app, "my_data.download") == []

    # A browser without a date picker shows a text box: the day as the hint writes it works.
    early, late = pointer_events(days_ago(6), 2), pointer_events(days_ago(2), 3)
    store(app, "alex", "pointer", early + late)
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - dt.timedelta(days=4), today
    archive = open_zip(post_download(alex, ["pointer"],
                                     date_from=format_date(start, "long", locale="de"),
                                     date_to=f"{end:%d.%m.%Y}"))
    assert [line["event"] for line in jsonl(archive, "pointer")] == late
    found = manifest(archive)["filters"]
    assert (found["from"], found["to"]) == (start.isoformat(), end.isoformat())


def test_a_missing_csrf_token_is_refused(app: Flask, alex: FlaskClient) -> None:
    response = alex.post("/my-data/download", data={"categories": ["pointer"]})
    assert response.status_code == 400
    assert _entries(app, "my_data.download") == []


def test_an_old_sign_in_is_sent_to_the_provider_with_max_age(app: Flask,
                                                             alex: FlaskClient) -> None:
    token = csrf_token(alex, "/my-data/download")
    age_sign_in(app, "alex", app.config["FRESH_SIGN_IN_MINUTES"] + 1)
    response = alex.post("/my-data/download", data={
        "csrf_token": token, "categories": ["pointer", "clicks"], "date_from": "2026-01-02"})
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    query = parse_qs(target.query)
    assert target.path == "/auth/login"
    assert query["max_age"] == [str(app.config["FRESH_SIGN_IN_MINUTES"] * 60)]
    back = urlsplit(query["next"][0])
    assert back.path == "/my-data/download"
    assert parse_qs(back.query) == {"categories": ["pointer", "clicks"],
                                    "date_from": ["2026-01-02"]}
    assert _entries(app, "my_data.download") == []
    # The form comes back with the same choices.
    page = alex.get(query["next"][0]).get_data(as_text=True)
    assert 'value="2026-01-02"' in page
    assert page.count("checked") == 2

    age_sign_in(app, "alex", 1)
    assert post_download(alex, ["pointer"]).status_code == 200


def test_pseudonyms_are_stable_for_one_person_and_differ_between_people(
        app: Flask, alex: FlaskClient, sign_in: SignIn) -> None:
    bea = signed_in(app, sign_in, "bea")
    for who in ("alex", "bea"):
        store(app, who, "conversations", [
            message(days_ago(1), 1, "self", f"My own words, {who}"),
            message(days_ago(1, hour=13), 2, COLLEAGUE, "A colleague's private words")],
            dss_level=4)
    first = jsonl(open_zip(post_download(alex, ["conversations"])), "conversations")
    again = jsonl(open_zip(post_download(alex, ["conversations"])), "conversations")
    theirs = jsonl(open_zip(post_download(bea, ["conversations"])), "conversations")
    assert first == again
    own, other = (line["event"] for line in first)
    assert own["author"] == "self" and own["text"] == "My own words, alex"
    assert other["text"] is None and "Art. 15(4)" in other["withheld"]
    assert other["author"].startswith("colleague-") and other["author"] != COLLEAGUE
    assert COLLEAGUE not in json.dumps(first) and OTHER_COLLEAGUE not in json.dumps(first)
    assert "private words" not in json.dumps(first)
    assert theirs[1]["event"]["author"] != other["author"]
    assert set(theirs[0]["event"]["participants"]).isdisjoint(own["participants"])


def test_no_one_can_download_another_persons_data(app: Flask, alex: FlaskClient,
                                                  sign_in: SignIn) -> None:
    store(app, "alex", "pointer", pointer_events(days_ago(2), 5, app="Alex's secret app"))
    bea = signed_in(app, sign_in, "bea")
    store(app, "bea", "pointer", pointer_events(days_ago(2), 2, app="Bea's app"))
    alex_id = account_person(app, "alex").id
    response = bea.post(f"/my-data/download?person={alex_id}&subject=sub-alex", data={
        "csrf_token": csrf_token(bea, "/my-data/download"), "categories": ["pointer"],
        "person": str(alex_id), "person_id": str(alex_id), "subject": "sub-alex"})
    archive = open_zip(response)
    assert manifest(archive)["person"]["subject"] == "sub-bea"
    everything = b"".join(archive.read(name) for name in archive.namelist()
                          if not name.endswith(".pdf"))
    assert b"Alex's secret app" not in everything and b"sub-alex" not in everything
    assert len(jsonl(archive, "pointer")) == 2
    preview = bea.get(f"/my-data?person={alex_id}").get_data(as_text=True)
    assert "Alex&#39;s secret app" not in preview and "Bea&#39;s app" in preview
    assert app.test_client().post("/my-data/download").status_code in {302, 400}
    anonymous = app.test_client().get("/my-data")
    assert anonymous.status_code == 302 and "/auth/login" in anonymous.headers["Location"]


def test_downloads_are_rate_limited_per_person(app: Flask, alex: FlaskClient,
                                               sign_in: SignIn) -> None:
    app.config["DOWNLOAD_RATE_LIMIT"] = "2 per hour"
    # A form error is not a download and does not count.
    post_download(alex, [])
    assert post_download(alex).status_code == 200
    assert post_download(alex).status_code == 200
    refused = post_download(alex)
    assert refused.status_code == 429
    assert "as often as the portal allows" in refused.get_data(as_text=True)
    assert refused.headers["Cache-Control"] == "no-store"
    assert len(_entries(app, "my_data.download")) == 2
    # Another person has a count of their own.
    assert post_download(signed_in(app, sign_in, "bea")).status_code == 200


def test_the_audit_entry_is_saved_before_the_first_byte(app: Flask, alex: FlaskClient) -> None:
    store(app, "alex", "pointer", pointer_events(days_ago(2), 10))
    token = csrf_token(alex, "/my-data/download")
    response = alex.post("/my-data/download", buffered=False,
                         data={"csrf_token": token, "categories": ["pointer"],
                               "date_from": "2026-01-01"})
    first = next(iter(response.response))
    assert first.startswith(b"PK\x03\x04")
    with get_engine(app).connect() as connection:
        saved = connection.execute(select(AuditEntry.what, AuditEntry.detail, AuditEntry.actor_id)
                                   .where(AuditEntry.what == "my_data.download")).one()
    assert json.loads(saved.detail) == {"categories": "pointer", "from": "2026-01-01",
                                        "to": None}
    assert saved.actor_id == account_person(app, "alex").id
    response.close()


def test_a_failed_audit_write_sends_no_data(app: Flask, alex: FlaskClient) -> None:
    store(app, "alex", "pointer", pointer_events(days_ago(2), 10, app="Never sent"))
    token = csrf_token(alex, "/my-data/download")
    engine = get_engine(app)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("CREATE TRIGGER audit_down BEFORE INSERT ON audit_entry "
                                    "BEGIN SELECT RAISE(ABORT, 'audit store down'); END"))
        else:
            connection.execute(text("ALTER TABLE audit_entry ADD CONSTRAINT audit_down "
                                    "CHECK (id < 0) NOT VALID"))
    # The request's commit fails before the response leaves the portal: the person gets the
    # portal's own error page (it must not trip over the failed unit of work), never a byte
    # of the ZIP or of the preview.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    for response in (alex.post("/my-data/download",
                               data={"csrf_token": token, "categories": ["pointer"]}),
                     alex.get("/my-data")):
        body = response.get_data()
        assert response.status_code == 500 and response.mimetype == "text/html"
        assert b"Never sent" not in body and b"PK\x03\x04" not in body
        assert b"Alex Morgan" in body  # the navigation still knows who is signed in
