"""Exports: every format held to the allowed columns, formulas neutralised, audited, limited."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import func, select

from portal.audit.models import AuditEntry, AuditSubject
from portal.audit.service import access_log, detail_of
from portal.auth.models import Person
from portal.catalog.models import Category
from portal.catalog.notices import current_notice
from portal.consent.models import ConsentMethod
from portal.consent.service import grant_consent
from portal.db import commit, db, get_engine
from portal.hr.service import EXPORT_COLUMNS, JSON_KEYS, RecordFilter, csv_chunks
from portal.vault.checks import parse_timestamp
from portal.vault.demo_data import generate_batches
from portal.vault.ingest import find_category, ingest_batch
from tests.support.forms import csrf_token
from tests.support.hr import T0, add_people, decide, export

DANGEROUS = {
    "=HYPERLINK(\"http://evil.example\",\"x\")": "Formula",
    "+1+2": "Plus",
    "-3+4": "Minus",
    "@SUM(A1:A2)": "At",
    "\tTabbed": "Tab",
    "\rReturned": "Return",
}
FILENAME = re.compile(r'^attachment; filename="consent-records-\d{8}-\d{6}\.(csv|xlsx|json|pdf)"$')


@pytest.fixture
def people(app: Flask, catalog: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Seven people, six of them with names a spreadsheet would run; all give pointer consent."""
    specs = [(name, "=cmd|' /C calc'!A0" if name.startswith("=") else "Engineering", "Berlin")
             for name in DANGEROUS]
    specs.append(("Olga", "Design", "Munich"))
    ids = add_people(app, specs)
    for index, person_id in enumerate(ids.values()):
        decide(app, monkeypatch, person_id, "pointer", "grant", T0 + dt.timedelta(hours=index))
    decide(app, monkeypatch, ids["Olga"], "pointer", "withdraw", T0 + dt.timedelta(days=3))
    return ids


def _csv(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def test_csv_neutralises_formulas_and_holds_to_the_columns(
        app: Flask, hr: FlaskClient, people: dict[str, int]) -> None:
    response = export(hr, "csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert FILENAME.match(response.headers["Content-Disposition"])
    assert response.headers["Cache-Control"] == "no-store"
    table = _csv(response.data)
    assert tuple(table[0]) == EXPORT_COLUMNS
    assert all(len(row) == len(EXPORT_COLUMNS) for row in table)
    by_name = {row[1]: row for row in table[1:]}
    assert len(by_name) == 7
    for name in DANGEROUS:
        assert "'" + name in by_name, name
    formula = by_name["'" + next(iter(DANGEROUS))]
    assert formula[3] == "'=cmd|' /C calc'!A0"
    assert by_name["Olga"][7] == "ConsentWithdrawn"
    assert by_name["Olga"][5:7] == ["pointer", "Pointer movements"]
    # Every cell is quoted, so no separator inside a value can start a new cell.
    assert response.data.splitlines()[1].startswith(b'"')
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
               for row in table for cell in row)


def test_xlsx_is_read_back_without_formulas(app: Flask, hr: FlaskClient,
                                            people: dict[str, int]) -> None:
    response = export(hr, "xlsx")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert FILENAME.match(response.headers["Content-Disposition"])
    assert response.headers["Cache-Control"] == "no-store"
    sheet = load_workbook(io.BytesIO(response.data)).active
    assert sheet is not None
    rows = list(sheet.iter_rows())
    assert tuple(cell.value for cell in rows[0]) == EXPORT_COLUMNS
    assert all(len(row) == len(EXPORT_COLUMNS) for row in rows)
    assert all(cell.data_type != "f" for row in rows for cell in row)
    names = {row[1].value for row in rows[1:]}
    # XML reads a carriage return back as a line feed; it stays behind the quote.
    assert names == {"'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1+2", "'-3+4",
                     "'@SUM(A1:A2)", "'\tTabbed", "'\nReturned", "Olga"}
    assert {row[3].value for row in rows[1:]} == {"'=cmd|' /C calc'!A0", "Engineering",
                                                  "Design"}


def test_json_records_hold_to_the_allowed_keys(app: Flask, hr: FlaskClient,
                                               people: dict[str, int]) -> None:
    response = export(hr, "json", query={"category": "pointer"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    document = json.loads(response.data)
    assert set(_keys(document)) <= JSON_KEYS
    assert document["purpose"] == "Annual consent audit 2026"
    assert document["filters"] == {"category": "pointer"}
    records = {record["piiPrincipal"]["name"]: record for record in document["records"]}
    assert len(records) == 7
    olga = records["Olga"]
    assert olga["state"] == "ConsentWithdrawn"
    assert olga["stateIri"] == "https://w3id.org/dpv#ConsentWithdrawn"
    assert [event["state"] for event in olga["events"]] == ["ConsentGiven", "ConsentWithdrawn"]
    assert olga["events"][-1]["eventId"] == olga["recordId"]
    assert olga["notice"]["version"] == 1 and olga["language"] == "en"
    assert olga["dataCategories"][0]["key"] == "pointer"
    assert olga["purposes"] and olga["retention"]["days"] > 0
    assert olga["withdrawal"]["url"] == "http://localhost/categories/pointer"
    assert olga["controller"]["name"] == "Example Corp"


def test_json_as_of_stops_the_history_at_that_date(app: Flask, hr: FlaskClient,
                                                   people: dict[str, int]) -> None:
    as_of = (T0 + dt.timedelta(days=1)).date().isoformat()
    document = json.loads(export(hr, "json", query={"as_of": as_of}).data)
    olga = next(r for r in document["records"] if r["piiPrincipal"]["name"] == "Olga")
    assert olga["state"] == "ConsentGiven" and len(olga["events"]) == 1
    assert document["filters"] == {"asOf": as_of}


def _pdf_text(body: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(body)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def test_pdf_report_summarises_without_names(app: Flask, hr: FlaskClient,
                                             people: dict[str, int], tmp_path: Path) -> None:
    response = export(hr, "pdf", purpose="Works council review, 3 March",
                      query={"category": "pointer"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert FILENAME.match(response.headers["Content-Disposition"])
    assert response.headers["Cache-Control"] == "no-store"
    text = _pdf_text(response.data, tmp_path)
    assert "Consent records: summary report" in text
    assert "Works council review, 3 March" in text and "Chris Okafor" in text
    assert "7 records" in text and "7 people" in text
    assert "Pointer movements" in text
    with app.app_context():
        entry = db.scalar(select(AuditEntry).where(AuditEntry.what == "hr.export"))
        assert entry is not None
        assert detail_of(entry)["reference"] in text.replace("\n", "")
    # A summary: no one's name, account or record number.
    assert "Olga" not in text and "sub-olga" not in text


def test_no_format_contains_collected_content(app: Flask, hr: FlaskClient,
                                              people: dict[str, int], tmp_path: Path) -> None:
    with app.app_context():
        olga = db.get(Person, people["Olga"])
        category = db.get(Category, "ai_transcripts")
        version = current_notice()
        assert olga is not None and category is not None and version is not None
        grant_consent(olga, category, notice_version=version, method=ConsentMethod.WEB,
                      actor=olga)
        commit()
    with app.app_context():
        olga = db.get(Person, people["Olga"])
        assert olga is not None
        batch = generate_batches("ai_transcripts", person_seed="olga", days=1,
                                 batches_per_day=1)[0]
        ingest_batch(olga, find_category("ai_transcripts"), events=batch["events"],
                     collected_from=parse_timestamp(batch["collected_from"]),
                     collected_to=parse_timestamp(batch["collected_to"]),
                     dss_level=batch["dss_level"])
        commit()
    content = sorted({value for event in batch["events"] for value in event.values()
                      if isinstance(value, str) and len(value) > 12}, key=len)[-3:]
    assert content
    bodies = {fmt: export(hr, fmt).data for fmt in ("csv", "xlsx", "json")}
    bodies["pdf"] = _pdf_text(export(hr, "pdf").data, tmp_path).encode()
    xlsx = load_workbook(io.BytesIO(bodies["xlsx"]))
    bodies["xlsx"] = "\n".join(str(cell.value) for sheet in xlsx for row in sheet.iter_rows()
                               for cell in row).encode()
    for fmt, body in bodies.items():
        for value in content:
            assert value.encode() not in body, (fmt, value)
    assert b"ai_transcripts" in bodies["csv"]


def test_exports_are_audited_and_reach_each_access_log(
        app: Flask, hr: FlaskClient, people: dict[str, int]) -> None:
    response = export(hr, "csv", query={"department": "Engineering"},
                      purpose="Proof of consent for the works council")
    assert response.status_code == 200
    included = {people[name] for name in DANGEROUS if not name.startswith("=")}
    with app.app_context():
        entry = db.scalar(select(AuditEntry).where(AuditEntry.what == "hr.export"))
        assert entry is not None
        assert entry.purpose == "Proof of consent for the works council"
        assert entry.actor_name == "Chris Okafor" and str(entry.actor_role) == "hr"
        detail = detail_of(entry)
        assert detail["format"] == "csv" and detail["rows"] == 5
        assert detail["filter_department"] == "Engineering"
        subjects = set(db.scalars(select(AuditSubject.person_id)
                                  .where(AuditSubject.entry_id == entry.id)))
        assert subjects == included
        for person_id in included:
            # Newest first: the export, then the page view that offered the export form.
            log = access_log(person_id)
            assert [e.what for e in log.entries] == ["hr.export", "hr.view"]
            assert log.entries[0].purpose == "Proof of consent for the works council"
        assert "hr.export" not in [e.what for e in access_log(people["Olga"]).entries]


def test_the_audit_is_saved_before_the_stream_is_read(app: Flask, hr: FlaskClient,
                                                      people: dict[str, int]) -> None:
    response = hr.post("/hr/export", data={"csrf_token": csrf_token(hr, "/hr/"), "format": "csv",
                                          "purpose": "Check the audit comes first"},
                       buffered=False)
    with app.app_context():
        assert db.scalar(select(func.count()).select_from(AuditEntry)
                         .where(AuditEntry.what == "hr.export")) == 1
    assert len(_csv(b"".join(response.response))) == 8
    response.close()


def test_rows_of_people_missing_from_the_audit_are_left_out(
        app: Flask, people: dict[str, int]) -> None:
    with app.test_request_context():
        body = b"".join(csv_chunks(get_engine(app), RecordFilter(),
                                   frozenset({people["Olga"]}), {}))
    table = _csv(body)
    assert [row[1] for row in table[1:]] == ["Olga"]


def test_a_missing_purpose_is_asked_for_and_nothing_is_exported(
        app: Flask, hr: FlaskClient, people: dict[str, int]) -> None:
    response = export(hr, "csv", purpose="  ")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert 'class="error-summary"' in html and 'href="#purpose"' in html
    assert "Enter what the export is for." in html or "Describe the purpose" in html
    assert export(hr, "csv", purpose="short").status_code == 200
    assert 'href="#format"' in export(hr, "zip").get_data(as_text=True)
    with app.app_context():
        assert db.scalar(select(AuditEntry).where(AuditEntry.what == "hr.export")) is None


def test_an_export_without_csrf_token_is_refused(app: Flask, hr: FlaskClient,
                                                 people: dict[str, int]) -> None:
    response = export(hr, "csv", token="")
    assert response.status_code == 400
    assert b"record_id" not in response.data
    with app.app_context():
        assert db.scalar(select(AuditEntry).where(AuditEntry.what == "hr.export")) is None


def test_bad_filters_refuse_the_export(app: Flask, hr: FlaskClient,
                                       people: dict[str, int]) -> None:
    response = export(hr, "csv", query={"state": "Maybe"})
    assert response.status_code == 400
    with app.app_context():
        assert db.scalar(select(AuditEntry).where(AuditEntry.what == "hr.export")) is None


def test_exports_are_rate_limited_per_person(app: Flask, hr: FlaskClient,
                                             people: dict[str, int]) -> None:
    app.config["EXPORT_RATE_LIMIT"] = "2 per hour"
    token = csrf_token(hr, "/hr/")
    # A form sent back for its purpose does not count.
    assert export(hr, "csv", purpose="", token=token).status_code == 200
    assert export(hr, "csv", token=token).status_code == 200
    assert export(hr, "json", token=token).status_code == 200
    refused = export(hr, "csv", token=token)
    assert refused.status_code == 429
    html = refused.get_data(as_text=True)
    assert "You have made many exports in a short time, so this one was not made." in html
    assert b"record_id" not in refused.data
    with app.app_context():
        assert db.scalar(select(func.count()).select_from(AuditEntry)
                         .where(AuditEntry.what == "hr.export")) == 2


def test_the_dpo_exports_in_their_own_capacity(app: Flask, sign_in: Any,
                                               people: dict[str, int]) -> None:
    from tests.support.identity import signed_in

    dpo = signed_in(app, sign_in, "dana")
    assert export(dpo, "json").status_code == 200
    with app.app_context():
        entry = db.scalar(select(AuditEntry).where(AuditEntry.what == "hr.export"))
        assert entry is not None and str(entry.actor_role) == "dpo"
        assert entry.subject_count == 7
