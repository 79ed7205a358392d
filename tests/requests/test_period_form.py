"""The period on the deletion request form: hints that hold with a date picker or a text box."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from babel import Locale
from babel.dates import format_date
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from portal.auth.models import Person
from portal.dates import read_day
from portal.db import commit, db
from portal.requests import service
from tests.support.config import portal_settings
from tests.support.factories import account_person
from tests.support.forms import csrf_token
from tests.support.identity import ACCOUNTS, SignIn, signed_in

MARCH_1, MARCH_31 = dt.date(2026, 3, 1), dt.date(2026, 3, 31)


@pytest.fixture
def settings(database_url: str, idp: Any) -> dict[str, Any]:
    """The real identity provider; no mail server (mail stays in the outbox)."""
    return portal_settings(database_url, idp[0].issuer, "http://localhost")


@pytest.fixture
def alex(app: Flask, sign_in: SignIn, catalog: int) -> FlaskClient:
    return signed_in(app, sign_in, "alex")


def speak(app: Flask, language: str) -> None:
    """Make Alex's pages come in ``language``, as choosing it in the header does."""
    with app.app_context():
        db.execute(update(Person).where(Person.subject == ACCOUNTS["alex"].sub)
                   .values(locale=language))
        commit()


def hints(page: str) -> list[str]:
    return re.findall(r'<p class="hint" id="(?:since|until)-hint">([^<]*)</p>', page)


def errors(page: str, field: str) -> list[str]:
    return re.findall(rf'<p class="error-message" id="{field}-error">([^<]*)</p>', page)


def test_the_hints_give_a_day_in_the_pages_language_not_a_format(
        app: Flask, alex: FlaskClient) -> None:
    for language in ("en", "de", "fr"):
        speak(app, language)
        page = alex.get("/requests/new").get_data(as_text=True)
        assert f'<html lang="{language}">' in page
        # Chromium shows a date input in the browser's format (such as mm/dd/yyyy): the hint
        # gives a day written out, which no format contradicts, never "2026-03-01".
        assert 'type="date"' in page
        first, last = (format_date(day, "long", locale=language) for day in (MARCH_1, MARCH_31))
        assert len(hints(page)) == 2
        assert first in hints(page)[0] and last in hints(page)[1], hints(page)
        assert "2026-03" not in page


def test_a_day_typed_as_the_hint_writes_it_is_read(app: Flask, alex: FlaskClient) -> None:
    speak(app, "de")
    token = csrf_token(alex, "/consent/history")

    def submit(**data: str) -> Any:
        return alex.post("/requests/new", data={"csrf_token": token, "scope": "range", **data})

    # A period without its days is a form error on the page, in the page's language.
    missing = submit().get_data(as_text=True)
    assert errors(missing, "since") == [
        "Geben Sie den ersten Tag des Zeitraums ein, zum Beispiel 1. März 2026"]
    assert errors(missing, "until") == [
        "Geben Sie den letzten Tag des Zeitraums ein, zum Beispiel 31. März 2026"]
    unreadable = submit(since="gestern", until="31.03.2026")
    assert unreadable.status_code == 400
    assert errors(unreadable.get_data(as_text=True), "since") == [
        "Geben Sie ein gültiges Datum ein, zum Beispiel 1. März 2026"]
    with app.app_context():
        assert service.own_requests(account_person(app, "alex")) == []

    # A browser without a date picker shows a text box: the day as the hint writes it works.
    created = submit(since="1. März 2026", until="31.03.2026")
    assert created.status_code == 303, errors(created.get_data(as_text=True), "since")
    with app.app_context():
        [request] = service.own_requests(account_person(app, "alex"))
        # The person's days, in their time zone (Europe/Berlin, from the provider).
        assert request.since == dt.datetime(2026, 2, 28, 23, tzinfo=dt.UTC)
        assert request.until is not None and request.until.date() == MARCH_31


@pytest.mark.parametrize(("language", "typed", "day"), [
    ("en", "2026-03-31", MARCH_31),  # what every date picker sends
    ("de", "2026-03-31", MARCH_31),
    ("en", "March 31, 2026", MARCH_31),
    ("en", "31 March 2026", MARCH_31),
    ("en", "Mar 1st 2026", MARCH_1),
    ("en", "3/31/2026", MARCH_31),
    ("en", "3/31/26", MARCH_31),
    ("en", "31/3/2026", None),  # English figures are month first
    ("de", "31. März 2026", MARCH_31),
    ("de", "1. Mär 2026", MARCH_1),
    ("de", "31.03.2026", MARCH_31),
    ("de", "31.3.26", MARCH_31),
    ("fr", "1er mars 2026", MARCH_1),
    ("fr", "31 mars 2026", MARCH_31),
    ("fr", "1 févr. 2026", dt.date(2026, 2, 1)),
    ("fr", "31/03/2026", MARCH_31),
    ("fr", "31 févr. 2026", None),  # no such day
    ("en", "yesterday", None),
    ("en", "March 2026", None),
    ("de", "31. March 2026", None),  # another language's month
    ("en", "1/2/3", None),
    ("en", "9" * 5000, None),
])
def test_reading_a_typed_day(language: str, typed: str, day: dt.date | None) -> None:
    assert read_day(typed, Locale.parse(language)) == day
