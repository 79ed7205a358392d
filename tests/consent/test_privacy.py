"""Privacy of the choice: no page shows a person's individual choices to anyone but them."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.consent.models import ConsentEvent
from portal.db import db
from tests.support.consent import Chooser
from tests.support.identity import SignIn, signed_in

PAGES = ("/", "/consent/history", "/consent/admin/webhooks", "/categories/",
         "/categories/keystrokes", "/categories/clicks", "/admin/")


def test_nobody_else_sees_alexs_choices(app: Flask, client: FlaskClient, alex: Chooser,
                                        sign_in: SignIn) -> None:
    alex.post("keystrokes", "grant")
    alex.post("clicks", "grant")
    alex.post("clicks", "withdraw")
    with app.app_context():
        receipt_ids = list(db.scalars(select(ConsentEvent.receipt_id)))
    own = client.get("/consent/history").get_data(as_text=True)
    assert all(receipt_id in own for receipt_id in receipt_ids)

    for who in ("bea", "chris", "dana", "eli"):
        other = signed_in(app, sign_in, who)
        for path in PAGES:
            response = other.get(path)
            assert response.status_code in {200, 403, 404}, (who, path, response.status_code)
            page = response.get_data(as_text=True)
            for private in ("Alex Morgan", "alex@example.com", "sub-alex", *receipt_ids):
                assert private not in page, (who, path, private)
        history = other.get("/consent/history").get_data(as_text=True)
        assert "You have not made any choice yet" in history
