"""The access log page: others' accesses to one's data, newest first, paginated, localised."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from babel.dates import format_datetime as babel_format
from flask import Flask
from sqlalchemy import select, update

from portal.audit.models import AuditAction, AuditEntry, AuditRole
from portal.audit.service import record
from portal.auth.models import Person
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.db import commit, db
from tests.support.identity import ACCOUNTS, SignIn, signed_in


def _person(who: str) -> Person:
    found = db.scalar(select(Person).where(Person.subject == ACCOUNTS[who].sub))
    assert found is not None
    return found


def _log(app: Flask, what: str, role: AuditRole, actor: str, subjects: list[str],
         purpose: str = "") -> None:
    with app.app_context():
        record(what, action=AuditAction.READ, role=role,
               subjects=[_person(who).id for who in subjects], actor=_person(actor),
               purpose=purpose)
        commit()


def test_lists_others_accesses_newest_first_without_ones_own(app: Flask,
                                                             sign_in: SignIn) -> None:
    alex = signed_in(app, sign_in, "alex")
    signed_in(app, sign_in, "chris")
    signed_in(app, sign_in, "dana")
    _log(app, "hr.export", AuditRole.HR, "chris", ["alex", "chris"], "Annual consent audit")
    _log(app, "my_data.view", AuditRole.SUBJECT, "alex", ["alex"])
    _log(app, "requests.view", AuditRole.DPO, "dana", ["alex"], "Deletion request R-7")
    response = alex.get("/access-log")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert "2 accesses in total" in page
    assert page.index("Opened your request") < page.index("Exported consent records")
    assert "Dana Novak" in page and "Data protection officer" in page
    assert "Chris Okafor" in page and "Annual consent audit" in page
    assert "Concerned 2 people, you included" in page
    assert "Viewed the data held about you" not in page
    # The exact UTC time is there on hover.
    assert 'title="20' in page and ' UTC"' in page


def test_shows_only_ones_own_log(app: Flask, sign_in: SignIn) -> None:
    bea = signed_in(app, sign_in, "bea")
    signed_in(app, sign_in, "alex")
    signed_in(app, sign_in, "dana")
    _log(app, "requests.view", AuditRole.DPO, "dana", ["alex"], "About Alex only")
    page = bea.get("/access-log?person=1&person_id=1").get_data(as_text=True)
    assert "About Alex only" not in page and "No one else has accessed your data" in page


def test_is_paginated_and_in_the_persons_language(app: Flask, sign_in: SignIn) -> None:
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
    alex = signed_in(app, sign_in, "alex")
    signed_in(app, sign_in, "chris")
    for number in range(30):
        _log(app, "hr.view", AuditRole.HR, "chris", ["alex"], f"check {number}")
    first = alex.get("/access-log").get_data(as_text=True)
    assert "check 29" in first and "check 4" not in first and "Page 1 of 2" in first
    second = alex.get("/access-log?page=2").get_data(as_text=True)
    assert "check 4" in second and "check 29" not in second
    assert alex.get("/access-log?page=99").status_code == 200
    with app.app_context():
        db.execute(update(Person).where(Person.subject == ACCOUNTS["alex"].sub)
                   .values(locale="de"))
        moment = db.scalar(select(AuditEntry.occurred_at).order_by(AuditEntry.id.desc()))
        commit()
    assert moment is not None
    german = alex.get("/access-log").get_data(as_text=True)
    # German dates, in the person's time zone (Europe/Berlin, from the provider).
    assert babel_format(moment, "medium", tzinfo=ZoneInfo("Europe/Berlin"),
                        locale="de") in german
    assert '<html lang="de">' in german


def test_needs_a_sign_in(app: Flask) -> None:
    response = app.test_client().get("/access-log")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
