"""The record list: each filter, and the state "as of" a date rebuilt from the ledger."""

from __future__ import annotations

import datetime as dt
import html as markup
import json
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from portal.audit.models import AuditEntry, AuditSubject
from portal.auth.models import Person
from portal.consent.models import ConsentState
from portal.db import commit, db
from portal.hr.service import RecordFilter, end_of_day, records_page, records_select
from tests.support.factories import person_id
from tests.support.forms import csrf_token
from tests.support.hr import T0, add_people, decide

GIVEN, WITHDRAWN, REFUSED = ConsentState.GIVEN, ConsentState.WITHDRAWN, ConsentState.REFUSED


def day(offset: int) -> dt.date:
    return (T0 + dt.timedelta(days=offset)).date()


@pytest.fixture
def history(app: Flask, catalog: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Four people and a hand-built history of known times (T0 is 2 March 2026, 09:00 UTC)."""
    ids = add_people(app, [("Ann", "Engineering", "Berlin"), ("Ben", "Engineering", "Munich"),
                           ("Cem", "Design", "Berlin"), ("Dee", "Sales", "")])
    steps = [
        ("Ann", "pointer", "grant", T0),
        ("Ann", "clicks", "grant", T0 + dt.timedelta(days=1)),
        ("Ben", "pointer", "grant", T0 + dt.timedelta(days=2)),
        ("Cem", "keystrokes", "refuse", T0 + dt.timedelta(days=3)),
        ("Dee", "clicks", "grant", T0 + dt.timedelta(days=5)),
        ("Dee", "clicks", "withdraw", T0 + dt.timedelta(days=6)),
        # Exactly at midnight: it belongs to the next day, not to the end of this one.
        ("Ben", "pointer", "withdraw", end_of_day(day(7))),
        ("Ann", "pointer", "withdraw", T0 + dt.timedelta(days=10)),
        ("Cem", "pointer", "grant", T0 + dt.timedelta(days=20)),
        ("Dee", "clicks", "grant", T0 + dt.timedelta(days=30)),
    ]
    for name, key, action, at in steps:
        decide(app, monkeypatch, ids[name], key, action, at)
    return ids


def rows(app: Flask, **filters: object) -> set[tuple[str, str, str]]:
    with app.app_context():
        found = db.execute(records_select(RecordFilter(**filters)))  # type: ignore[arg-type]
        return {(row.person, row.category, str(row.state)) for row in found}


def test_current_records(app: Flask, history: dict[str, int]) -> None:
    assert rows(app) == {("Ann", "pointer", WITHDRAWN), ("Ann", "clicks", GIVEN),
                         ("Ben", "pointer", WITHDRAWN), ("Cem", "keystrokes", REFUSED),
                         ("Cem", "pointer", GIVEN), ("Dee", "clicks", GIVEN)}


def test_each_filter(app: Flask, history: dict[str, int]) -> None:
    assert {r[:2] for r in rows(app, department="Engineering")} == {
        ("Ann", "pointer"), ("Ann", "clicks"), ("Ben", "pointer")}
    assert {r[0] for r in rows(app, location="Berlin")} == {"Ann", "Cem"}
    assert {r[0] for r in rows(app, location="")} == {"Dee"}
    assert {r[0] for r in rows(app, category="pointer")} == {"Ann", "Ben", "Cem"}
    assert {r[:2] for r in rows(app, state=GIVEN)} == {
        ("Ann", "clicks"), ("Cem", "pointer"), ("Dee", "clicks")}
    assert len(rows(app, notice_version=1)) == 6
    assert rows(app, notice_version=2) == set()
    assert {r[:2] for r in rows(app, changed_from=day(2), changed_to=day(10))} == {
        ("Ben", "pointer"), ("Cem", "keystrokes"), ("Ann", "pointer")}
    assert {r[:2] for r in rows(app, changed_from=day(8), changed_to=day(8))} == {
        ("Ben", "pointer")}
    assert rows(app, department="Engineering", state=GIVEN) == {("Ann", "clicks", GIVEN)}


def test_as_of_rebuilds_the_state_from_the_ledger(app: Flask, history: dict[str, int]) -> None:
    assert rows(app, as_of=end_of_day(day(-1))) == set()
    assert rows(app, as_of=end_of_day(day(4))) == {
        ("Ann", "pointer", GIVEN), ("Ann", "clicks", GIVEN), ("Ben", "pointer", GIVEN),
        ("Cem", "keystrokes", REFUSED)}
    assert ("Dee", "clicks", GIVEN) in rows(app, as_of=end_of_day(day(5)))
    assert ("Dee", "clicks", WITHDRAWN) in rows(app, as_of=end_of_day(day(6)))
    # Ben withdrew at midnight after day 7: still given at the end of day 7.
    assert ("Ben", "pointer", GIVEN) in rows(app, as_of=end_of_day(day(7)))
    assert ("Ben", "pointer", WITHDRAWN) in rows(app, as_of=end_of_day(day(8)))
    assert ("Ann", "pointer", WITHDRAWN) in rows(app, as_of=end_of_day(day(10)))
    # Filters apply to the rebuilt state.
    assert rows(app, as_of=end_of_day(day(4)), state=GIVEN, location="Berlin") == {
        ("Ann", "pointer", GIVEN), ("Ann", "clicks", GIVEN)}
    assert {r[:2] for r in rows(app, as_of=end_of_day(day(9)), changed_from=day(6))} == {
        ("Dee", "clicks"), ("Ben", "pointer")}


def test_as_of_today_equals_the_derived_state(app: Flask, history: dict[str, int]) -> None:
    tomorrow = dt.datetime.now(dt.UTC).date()
    with app.app_context():
        now = {tuple(row) for row in db.execute(records_select(RecordFilter()))}
        rebuilt = {tuple(row) for row in db.execute(
            records_select(RecordFilter(as_of=end_of_day(tomorrow))))}
    assert now == rebuilt and len(now) == 6


def test_the_page_filters_and_audits_what_it_shows(app: Flask, hr: FlaskClient,
                                                   history: dict[str, int]) -> None:
    page = hr.get("/hr/", query_string={"department": "Engineering", "state": "ConsentGiven"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "1 consent record" in html and "Ann" in html
    assert "Ben" not in html and "Dee" not in html
    with app.app_context():
        entry = db.scalar(select(AuditEntry).where(AuditEntry.what == "hr.view"))
        assert entry is not None and entry.actor_name == "Chris Okafor"
        subjects = set(db.scalars(select(AuditSubject.person_id)
                                  .where(AuditSubject.entry_id == entry.id)))
        assert subjects == {history["Ann"]}


def test_the_page_rebuilds_a_past_state_and_finds_people_without_a_location(
        app: Flask, hr: FlaskClient, history: dict[str, int]) -> None:
    html = hr.get("/hr/", query_string={"as_of": day(5).isoformat(),
                                        "location": "__none__"}).get_data(as_text=True)
    assert "1 consent record" in html and "Dee" in html
    assert "the state as it was at the end of March 7, 2026" in html
    assert html.count("Given</strong>") == 1


def test_bad_filters_show_errors_and_nothing_else(app: Flask, hr: FlaskClient,
                                                  history: dict[str, int]) -> None:
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    page = hr.get("/hr/", query_string={"changed_from": day(5).isoformat(),
                                        "changed_to": day(1).isoformat(),
                                        "as_of": tomorrow.isoformat(), "state": "Maybe"})
    html = page.get_data(as_text=True)
    assert 'class="error-summary"' in html
    assert 'href="#changed_to"' in html and 'href="#as_of"' in html and 'href="#state"' in html
    assert "The end of the period must be the same as or after its start." in html
    assert "consent record" not in html and "Ann" not in html
    with app.app_context():
        assert db.scalar(select(AuditEntry).where(AuditEntry.what == "hr.view")) is None


def _date_hints(html: str) -> dict[str, str]:
    return {name: markup.unescape(text) for name, text in re.findall(
        r'<p class="hint" id="(as_of|changed_from|changed_to)-hint">([^<]*)</p>', html)}


def _errors(html: str) -> dict[str, str]:
    return {name: markup.unescape(text) for name, text in re.findall(
        r'<p class="error-message" id="([a-z_]+)-error">([^<]*)</p>', html)}


def _views(app: Flask) -> list[AuditEntry]:
    with app.app_context():
        return list(db.scalars(select(AuditEntry).where(AuditEntry.what == "hr.view")))


def test_date_filters_give_a_day_in_the_pages_language_and_read_one_typed(
        app: Flask, hr: FlaskClient, history: dict[str, int]) -> None:
    # Chromium shows a date input in the browser's format (mm/dd/yyyy even on a German page):
    # each hint gives a day written out in the page's language, never "2026-03-01".
    english = hr.get("/hr/").get_data(as_text=True)
    assert english.count('type="date"') == 3
    hints = _date_hints(english)
    assert "March 1, 2026" in hints["changed_from"], hints
    assert "March 31, 2026" in hints["changed_to"] and "March 31, 2026" in hints["as_of"]
    assert not any("2026-03" in hint for hint in hints.values())
    with app.app_context():
        db.execute(update(Person).where(Person.id == person_id(app, "sub-chris"))
                   .values(locale="de"))
        commit()
    german = hr.get("/hr/").get_data(as_text=True)
    assert '<html lang="de">' in german
    assert _date_hints(german) == {
        "as_of": "Der Stand zum Ende dieses Tages (UTC), zum Beispiel des 31. März 2026, "
                 "rekonstruiert aus dem Einwilligungsregister. Leer: aktueller Stand.",
        "changed_from": "Letzte Änderung an diesem Tag oder danach, zum Beispiel 1. März 2026.",
        "changed_to": "Letzte Änderung an diesem Tag oder davor, zum Beispiel 31. März 2026."}

    # A day that cannot be read is said at its field, with an example; nothing is shown.
    seen = len(_views(app))
    unreadable = hr.get("/hr/", query_string={"as_of": "gestern", "changed_from": "31.02.2026"})
    page = unreadable.get_data(as_text=True)
    assert _errors(page) == {
        "as_of": "Geben Sie ein gültiges Datum ein, zum Beispiel 31. März 2026",
        "changed_from": "Geben Sie ein gültiges Datum ein, zum Beispiel 1. März 2026"}
    assert 'href="#as_of"' in page and 'href="#changed_from"' in page
    assert 'id="records"' not in page and "Dee" not in page
    assert len(_views(app)) == seen

    # A browser without a date picker shows a text box: the day as the hint writes it works,
    # and gives the same records as the day a date picker sends (7 March, T0 + 5 days).
    typed = hr.get("/hr/", query_string={"as_of": "7. März 2026", "location": "__none__"})
    page = typed.get_data(as_text=True)
    assert typed.status_code == 200 and _errors(page) == {}
    assert "1 Einwilligungsnachweis" in page and "Dee" in page
    assert "Sie sehen den Stand zum Ende des 7. März 2026 (UTC)" in page
    # Sent back as a date picker writes it: a picker shows no text it cannot read.
    assert 'value="2026-03-07"' in page
    views = _views(app)
    assert len(views) == seen + 1
    assert json.loads(views[-1].detail)["filter_asOf"] == day(5).isoformat()
    # The export form carries the day the same way, so it still works after HR switches to
    # English (where "7. März 2026" would not be read).
    action = markup.unescape(re.search(r'<form method="post" action="([^"]+)" class="hr-export"',
                                       page).group(1))
    assert "as_of=2026-03-07" in action and "location=__none__" in action
    with app.app_context():
        db.execute(update(Person).where(Person.id == person_id(app, "sub-chris"))
                   .values(locale="en"))
        commit()
    english = hr.post(action, data={"csrf_token": csrf_token(hr, "/hr/"), "format": "csv",
                                    "purpose": "Audit of withdrawn consent"})
    assert english.status_code == 200, english.get_data(as_text=True)[:500]
    assert english.get_data(as_text=True).count("\n") == 2  # the header and Dee's record


def test_pages_of_records(app: Flask, history: dict[str, int]) -> None:
    with app.app_context():
        first = records_page(RecordFilter(), page=1, per_page=4)
        second = records_page(RecordFilter(), page=2, per_page=4)
    assert (first.total, first.pages, len(first.rows), len(second.rows)) == (6, 2, 4, 2)
    assert [row.department for row in first.rows] == ["Design", "Design", "Engineering",
                                                      "Engineering"]
