"""Only HR and the DPO reach the consent records; everyone else gets nothing."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.audit.models import AuditEntry
from portal.db import db
from tests.support.identity import SignIn, signed_in


def test_anonymous_people_are_sent_to_sign_in(app: Flask, catalog: int) -> None:
    client = app.test_client()
    response = client.get("/hr/")
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]
    assert client.post("/hr/export", data={"format": "csv"}).status_code in {302, 400}


@pytest.mark.parametrize("who", ["alex", "eli"])
def test_employees_and_privacy_admins_get_403(app: Flask, sign_in: SignIn, catalog: int,
                                              who: str) -> None:
    client = signed_in(app, sign_in, who)
    page = client.get("/hr/")
    assert page.status_code == 403
    assert "Consent records" not in page.get_data(as_text=True)
    token_page = client.get("/consent/history").get_data(as_text=True)
    token = token_page.split('name="csrf_token" value="')[1].split('"')[0]
    refused = client.post("/hr/export", data={"csrf_token": token, "format": "csv",
                                              "purpose": "I would like everyone's choices"})
    assert refused.status_code == 403
    assert b"record_id" not in refused.data
    with app.app_context():
        assert db.scalar(select(func.count()).select_from(AuditEntry)) == 0
    # Nor is the page offered to them.
    assert 'href="/hr/"' not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("who", ["chris", "dana"])
def test_hr_and_the_dpo_see_the_page(app: Flask, sign_in: SignIn, catalog: int,
                                     who: str) -> None:
    client = signed_in(app, sign_in, who)
    page = client.get("/hr/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<h1>Consent records</h1>" in html
    assert page.headers["Cache-Control"] == "no-store"


def test_hr_finds_the_page_in_the_navigation(app: Flask, sign_in: SignIn,
                                             catalog: int) -> None:
    client = signed_in(app, sign_in, "chris")
    assert 'href="/hr/"' in client.get("/").get_data(as_text=True)
