"""A material change: consents end, the person sees what changed and confirms or declines."""

from __future__ import annotations

import html
import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.consent.models import ConsentState, ConsentStatus
from portal.consent.service import verify_ledger
from portal.db import db
from tests.support.catalog import (
    Raw,
    category,
    changed_document,
    new_purpose,
    publish,
    shipped_raw,
    to_yaml,
    write_catalog,
)
from tests.support.factories import person_id
from tests.support.forms import csrf_token
from tests.support.identity import ACCOUNTS, SignIn


def _choose(client: FlaskClient, key: str, action: str, notice_number: int) -> None:
    response = client.post(f"/consent/{key}/{action}", data={
        "csrf_token": csrf_token(client), "notice_version": str(notice_number)})
    assert response.status_code in (302, 303), response.get_data(as_text=True)[:500]


def _states(app: Flask, who: str) -> dict[str, ConsentState]:
    pid = person_id(app, ACCOUNTS[who].sub)
    with app.app_context():
        return {row.category_key: row.state for row in db.scalars(
            select(ConsentStatus).where(ConsentStatus.person_id == pid))}


def _page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def _both_agree(app: Flask, sign_in: SignIn) -> tuple[FlaskClient, FlaskClient]:
    alex, bea = app.test_client(), app.test_client()
    sign_in.login(alex, "alex")
    sign_in.login(bea, "bea")
    for key in ("keystrokes", "pointer"):
        _choose(alex, key, "grant", 1)
    _choose(bea, "keystrokes", "grant", 1)
    return alex, bea


def test_material_change_expires_consents_of_that_category_only(
        shipped: Flask, sign_in: SignIn) -> None:
    _both_agree(shipped, sign_in)

    def change(raw: Raw) -> None:
        new_purpose("keystrokes")(raw)
        new_purpose("pointer", "Also measure how far people scroll.")(raw)

    publish(shipped, changed_document(change), material={"keystrokes": "A new purpose."})
    assert _states(shipped, "alex") == {"keystrokes": ConsentState.EXPIRED,
                                        "pointer": ConsentState.GIVEN}
    assert _states(shipped, "bea") == {"keystrokes": ConsentState.EXPIRED}
    with shipped.app_context():
        assert verify_ledger().ok


def test_a_non_material_change_leaves_consents_standing(shipped: Flask,
                                                        sign_in: SignIn) -> None:
    _both_agree(shipped, sign_in)
    publish(shipped, changed_document(new_purpose("keystrokes")))
    assert _states(shipped, "alex")["keystrokes"] is ConsentState.GIVEN


def test_person_sees_what_changed_and_confirms_in_one_step(shipped: Flask,
                                                           sign_in: SignIn) -> None:
    alex, _ = _both_agree(shipped, sign_in)

    def change(raw: Raw) -> None:
        new_purpose("keystrokes")(raw)
        category(raw, "keystrokes")["retention_days"] = 60

    publish(shipped, changed_document(change), material={"keystrokes": "A new purpose."})
    page = _page(alex, "/categories/keystrokes")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "What changed since you agreed" in text
    assert "You agreed under notice version 1. Version 2 changed" in text
    assert "In short: A change." in text
    assert "Removed: Kept for: 30 days" in text
    assert "Added: Kept for: 60 days" in text
    assert "Added: Purpose: Also train the meeting summariser." in text
    assert "Removed: Purpose" not in text
    # The confirm and decline buttons come from the consent ledger's controls.
    assert 'action="/consent/keystrokes/grant"' in page
    assert 'action="/consent/keystrokes/refuse"' in page
    assert "What changed since you agreed" not in _page(alex, "/categories/pointer")
    assert "What changed since you agreed" not in _page(alex, "/categories/clicks")
    dashboard = _page(alex, "/")
    assert dashboard.count("See what changed before you decide") == 1
    assert 'href="/categories/keystrokes#choice-heading">See what changed' in dashboard

    _choose(alex, "keystrokes", "grant", 2)
    assert _states(shipped, "alex")["keystrokes"] is ConsentState.RENEWED
    assert "What changed since you agreed" not in _page(alex, "/categories/keystrokes")


def test_the_difference_is_in_the_persons_language(shipped: Flask, sign_in: SignIn) -> None:
    alex, _ = _both_agree(shipped, sign_in)
    publish(shipped, changed_document(new_purpose("keystrokes")),
            material={"keystrokes": "A new purpose."})
    alex.post("/locale", data={"csrf_token": csrf_token(alex), "locale": "de"})
    page = _page(alex, "/categories/keystrokes")
    assert "Außerdem den Besprechungs-Zusammenfasser trainieren." in page
    assert "Eine Änderung." in page


def test_declining_after_a_material_change(shipped: Flask, sign_in: SignIn) -> None:
    _, bea = _both_agree(shipped, sign_in)
    publish(shipped, changed_document(new_purpose("keystrokes")),
            material={"keystrokes": "A new purpose."})
    _choose(bea, "keystrokes", "refuse", 2)
    assert _states(shipped, "bea")["keystrokes"] is ConsentState.REFUSED


def test_cli_reports_how_many_consents_wait(shipped: Flask, sign_in: SignIn,
                                            tmp_path: Path) -> None:
    _both_agree(shipped, sign_in)
    raw = shipped_raw()
    new_purpose("keystrokes")(raw)
    result = shipped.test_cli_runner().invoke(args=[
        "catalog", "publish", str(write_catalog(tmp_path, raw)), "--dpo-sign-off", "Dana",
        "--by", "Eli", "--summary-en", "x", "--summary-de", "y", "--summary-fr", "z",
        "--material", "keystrokes=A new purpose"])
    assert result.exit_code == 0, result.output
    assert "keystrokes: changed, material (A new purpose); 2 consents now wait" in result.output


def test_admin_sees_how_many_consents_a_material_change_ends(
        shipped: Flask, sign_in: SignIn) -> None:
    _both_agree(shipped, sign_in)
    admin = shipped.test_client()
    sign_in.login(admin, "eli")
    raw = shipped_raw()
    new_purpose("keystrokes")(raw)
    token = csrf_token(admin, "/admin/notices/new")
    admin.post("/admin/notices/new", data={"csrf_token": token, "catalog_text": to_yaml(raw)})
    review = _page(admin, "/admin/notices/new/review")
    assert "A material change ends the 2 consents that allow recording now" in review
    admin.post("/admin/notices/new/review", data={
        "csrf_token": token, "dpo_sign_off": "Dana", "summary_en": "x", "summary_de": "y",
        "summary_fr": "z",
        "material_keystrokes": "y", "reason_keystrokes": "A new purpose."})
    assert "2 consents end; each person must confirm again." in _page(
        admin, "/admin/notices/new/check")
    admin.post("/admin/notices/new/check", data={"csrf_token": token})
    detail = _page(admin, "/admin/notices/2?published=1")
    assert re.search(r"A new purpose\.</td>\s*<td>2</td>", detail)
    assert _states(shipped, "alex")["keystrokes"] is ConsentState.EXPIRED


def test_removing_a_category_ends_its_consents(shipped: Flask, sign_in: SignIn) -> None:
    _both_agree(shipped, sign_in)

    def drop(raw: Raw) -> None:
        raw["categories"] = [c for c in raw["categories"] if c["key"] != "pointer"]

    publish(shipped, changed_document(drop))
    assert _states(shipped, "alex")["pointer"] is ConsentState.EXPIRED
    assert _states(shipped, "alex")["keystrokes"] is ConsentState.GIVEN
