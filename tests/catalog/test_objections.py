"""The right to object: a form on categories that do not rest on consent, and its record."""

from __future__ import annotations

import datetime as dt
import html
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.models import Objection, ObjectionState
from portal.catalog.objections import one_month_after
from portal.db import db
from tests.support.factories import person_id
from tests.support.forms import csrf_token
from tests.support.identity import ACCOUNTS, SignIn

REASON = "My reviews are already in the HR system; a second copy here is not needed."


def _objections(app: Flask) -> list[Objection]:
    with app.app_context():
        return list(db.scalars(select(Objection).order_by(Objection.id)))


def _object(client: FlaskClient, key: str, reason: str, *, token: str | None = None,
            ) -> tuple[int, str]:
    data = {"reason": reason}
    if token is not None:
        data["csrf_token"] = token
    response = client.post(f"/categories/{key}/objections", data=data)
    return response.status_code, html.unescape(response.get_data(as_text=True))


def test_filing_an_objection_records_it_and_lists_it_with_its_deadline(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    response = client.post("/categories/performance/objections",
                           data={"csrf_token": csrf_token(client), "reason": REASON})
    assert response.status_code == 302
    assert response.headers["Location"] == "/categories/performance#objections"
    [objection] = _objections(shipped)
    assert objection.person_id == person_id(shipped, ACCOUNTS["alex"].sub)
    assert (objection.category_key, objection.reason) == ("performance", REASON)
    assert objection.state is ObjectionState.RECEIVED
    assert objection.due_at == one_month_after(objection.filed_at)
    assert objection.notice_version_id is not None
    page = html.unescape(client.get("/categories/performance").get_data(as_text=True))
    with shipped.app_context():
        person = db.get(Person, objection.person_id)
        assert person is not None
        local = objection.due_at.astimezone(ZoneInfo(person.timezone or "UTC"))
    due = f"{local:%B} {local.day}, {local.year}"
    assert "Your objection has been received." in page  # the confirmation
    assert "Your objections" in page and REASON in page
    assert "Received" in page
    assert f"The data protection officer will answer by {due}." in page
    dashboard = html.unescape(client.get("/").get_data(as_text=True))
    assert "Objection received" in dashboard


def test_objections_are_the_persons_own(shipped: Flask, client: FlaskClient,
                                        sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    _object(client, "sensitivity_ratings", REASON, token=csrf_token(client))
    other = shipped.test_client()
    sign_in.login(other, "bea")
    assert REASON not in other.get("/categories/sensitivity_ratings").get_data(as_text=True)


@pytest.mark.parametrize(("reason", "message"), [
    ("", "Write why you object, so that the data protection officer can weigh your reasons."),
    ("   \n ", "Write why you object, so that the data protection officer can weigh your "
               "reasons."),
    ("x" * 2001, "Your reason must be 2,000 characters or fewer."),
])
def test_a_bad_reason_is_shown_in_the_error_summary(
        shipped: Flask, client: FlaskClient, sign_in: SignIn, reason: str,
        message: str) -> None:
    sign_in.login(client, "alex")
    status, page = _object(client, "performance", reason, token=csrf_token(client))
    assert status == 400
    assert 'class="error-summary"' in page
    assert f'<a href="#reason">{message}</a>' in page
    assert 'aria-describedby="reason-hint reason-error"' in page
    assert _objections(shipped) == []


def test_a_reason_of_exactly_2000_characters_is_accepted(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    status, _ = _object(client, "performance", "x" * 2000, token=csrf_token(client))
    assert status == 302
    assert len(_objections(shipped)) == 1


def test_objecting_needs_the_csrf_token(shipped: Flask, client: FlaskClient,
                                        sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    status, _ = _object(client, "performance", REASON)
    assert status == 400
    assert _objections(shipped) == []


def test_consent_categories_have_no_objection_but_withdrawal(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    status, page = _object(client, "keystrokes", REASON, token=csrf_token(client))
    assert status == 400
    assert "withdraw your consent" in page
    assert _objections(shipped) == []
    status, _ = _object(client, "webcam", REASON, token=csrf_token(client))
    assert status == 404


def test_objecting_needs_sign_in(shipped: Flask, client: FlaskClient) -> None:
    status, _ = _object(client, "performance", REASON, token=csrf_token(client))
    assert status == 302
    assert _objections(shipped) == []


def _utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


@pytest.mark.parametrize(("filed", "due"), [
    (_utc(2026, 1, 31, 9, 0), _utc(2026, 2, 28, 9, 0)),
    (_utc(2028, 1, 31, 9, 0), _utc(2028, 2, 29, 9, 0)),
    (_utc(2026, 12, 15, 23, 59), _utc(2027, 1, 15, 23, 59)),
    (_utc(2026, 3, 31, 12, 0), _utc(2026, 4, 30, 12, 0)),
])
def test_the_deadline_is_one_calendar_month(filed: dt.datetime, due: dt.datetime) -> None:
    assert one_month_after(filed) == due


@pytest.mark.parametrize("where", ["form", "query"])
def test_a_nul_character_is_refused_with_a_400_and_nothing_is_stored(
        shipped: Flask, client: FlaskClient, sign_in: SignIn, where: str) -> None:
    # PostgreSQL cannot store NUL; before this check it failed inside the INSERT with a 500.
    sign_in.login(client, "alex")
    data = {"csrf_token": csrf_token(client), "reason": REASON}
    if where == "form":
        data["reason"] = "before\x00after"
    response = client.post("/categories/performance/objections", data=data,
                           query_string={"x": "\x00"} if where == "query" else None)
    assert response.status_code == 400
    assert "NUL character" in response.get_data(as_text=True)
    assert _objections(shipped) == []
