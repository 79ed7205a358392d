"""Giving and withdrawing consent through the forms: POST only, CSRF, the notice the person read."""

from __future__ import annotations

import re

from flask import Flask, render_template_string
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.catalog.notices import current_notice
from portal.consent import service
from portal.consent.models import ConsentEvent, ConsentState, ConsentStatus
from portal.db import db
from tests.support.consent import CONSENT_KEYS, Chooser
from tests.support.factories import account_person, category_row, publish_changed_text
from tests.support.identity import SignIn


def _events(app: Flask) -> list[ConsentEvent]:
    with app.app_context():
        return list(db.scalars(select(ConsentEvent).order_by(ConsentEvent.id)))


def _state(app: Flask, who: str, key: str) -> ConsentState | None:
    with app.app_context():
        status = db.get(ConsentStatus, (account_person(app, who).id, key))
        return status.state if status else None


def test_grant_then_withdraw_each_one_event_with_a_confirmation(
        app: Flask, client: FlaskClient, alex: Chooser) -> None:
    response = alex.post("keystrokes", "grant", next_path="/consent/history")
    assert response.status_code == 303
    assert response.headers["Location"] == "/consent/history"
    page = client.get("/consent/history").get_data(as_text=True)
    assert "Consent given for Keystrokes" in page or "Consent given for" in page
    assert _state(app, "alex", "keystrokes") is ConsentState.GIVEN

    response = alex.post("keystrokes", "withdraw", next_path="/consent/history")
    assert response.status_code == 303
    page = client.get("/consent/history").get_data(as_text=True)
    assert "Recording stops now, and the collecting software is told within seconds." in page
    assert _state(app, "alex", "keystrokes") is ConsentState.WITHDRAWN

    events = _events(app)
    assert [(e.id, e.state, e.method, e.actor_role) for e in events] == [
        (1, ConsentState.GIVEN, "web", "subject"), (2, ConsentState.WITHDRAWN, "web", "subject")]
    assert all(e.notice_version.number == 1 for e in events)


def test_repeating_a_choice_records_nothing_twice(app: Flask, alex: Chooser) -> None:
    alex.post("pointer", "grant")
    alex.post("pointer", "grant")
    alex.post("pointer", "withdraw")
    alex.post("pointer", "withdraw")
    assert [e.state for e in _events(app)] == [ConsentState.GIVEN, ConsentState.WITHDRAWN]


def test_get_never_changes_consent(app: Flask, client: FlaskClient, alex: Chooser) -> None:
    for path in ("/consent/keystrokes/grant", "/consent/keystrokes/withdraw",
                 "/consent/keystrokes/refuse", "/consent/withdraw-all"):
        response = client.get(path, query_string={"notice_version": "1"})
        assert response.status_code == 405
        assert "Nothing was changed" in response.get_data(as_text=True)
    assert _events(app) == []


def test_without_csrf_token_nothing_is_recorded(app: Flask, client: FlaskClient,
                                               alex: Chooser) -> None:
    response = client.post("/consent/keystrokes/grant", data={"notice_version": "1"})
    assert response.status_code == 400
    response = client.post("/consent/keystrokes/grant",
                           data={"notice_version": "1", "csrf_token": "forged"})
    assert response.status_code == 400
    assert _events(app) == []


def test_signed_out_people_are_sent_to_sign_in(app: Flask, catalog: int) -> None:
    response = app.test_client().post("/consent/keystrokes/grant", data={"notice_version": "1"})
    assert response.status_code in {302, 400}
    assert _events(app) == []


def test_only_consent_categories_have_consent_to_change(app: Flask, alex: Chooser) -> None:
    for key in ("performance", "sensitivity_ratings"):
        for action in ("grant", "withdraw", "refuse"):
            response = alex.post(key, action)
            assert response.status_code == 400
            assert "not collected on the basis of your consent" in response.get_data(
                as_text=True)
    assert alex.post("no_such_category", "grant").status_code == 404
    assert _events(app) == []


def test_unknown_notice_version_is_refused(app: Flask, alex: Chooser) -> None:
    assert alex.post("pointer", "grant", version=99).status_code == 400
    assert _events(app) == []


def test_changed_text_records_nothing_and_shows_the_new_text(
        app: Flask, client: FlaskClient, alex: Chooser) -> None:
    new = publish_changed_text(app, "keystrokes", material=False)
    assert new == 2
    response = alex.post("keystrokes", "grant", version=1, next_path="/consent/history")
    assert response.status_code == 303
    assert response.headers["Location"] == "/categories/keystrokes"
    assert _events(app) == []
    with client.session_transaction() as session:
        [(kind, message)] = session["_flashes"]
    assert kind == "warning" and "changed while you were reading it" in message

    # Another category's text did not change: version 1's reader saw the current text.
    assert alex.post("clicks", "grant", version=1).status_code == 303
    assert alex.post("keystrokes", "grant", version=2).status_code == 303
    assert [(e.category_key, e.notice_version.number) for e in _events(app)] == [
        ("clicks", 1), ("keystrokes", 2)]


def test_withdrawal_is_never_refused_for_a_changed_text(app: Flask, alex: Chooser) -> None:
    alex.post("keystrokes", "grant")
    publish_changed_text(app, "keystrokes", material=False)
    assert alex.post("keystrokes", "withdraw", version=1).status_code == 303
    assert _state(app, "alex", "keystrokes") is ConsentState.WITHDRAWN


def test_material_change_expires_then_confirm_or_decline(
        app: Flask, client: FlaskClient, sign_in: SignIn, alex: Chooser) -> None:
    alex.post("keystrokes", "grant")
    alex.post("clicks", "grant")
    publish_changed_text(app, "keystrokes", material=True)
    assert _state(app, "alex", "keystrokes") is ConsentState.EXPIRED
    assert _state(app, "alex", "clicks") is ConsentState.GIVEN
    expired = _events(app)[-1]
    assert (expired.state, expired.method, expired.actor_role, expired.actor_id) == (
        ConsentState.EXPIRED, "system", "system", None)

    assert alex.post("keystrokes", "grant", version=1).status_code == 303  # old text: refused
    assert _state(app, "alex", "keystrokes") is ConsentState.EXPIRED
    alex.post("keystrokes", "grant", version=2)
    assert _state(app, "alex", "keystrokes") is ConsentState.RENEWED

    publish_changed_text(app, "clicks", material=True)
    alex.post("clicks", "refuse", version=3)
    assert _state(app, "alex", "clicks") is ConsentState.REFUSED


def test_declining_before_deciding_is_recorded(app: Flask, alex: Chooser) -> None:
    alex.post("conversations", "refuse")
    assert _state(app, "alex", "conversations") is ConsentState.REFUSED
    # Declining is not a way to withdraw: that has its own button.
    alex.post("pointer", "grant")
    alex.post("pointer", "refuse")
    assert _state(app, "alex", "pointer") is ConsentState.GIVEN


def test_withdraw_all_in_one_action(app: Flask, client: FlaskClient, alex: Chooser) -> None:
    for key in ("pointer", "clicks", "ai_transcripts"):
        alex.post(key, "grant")
    alex.post("conversations", "refuse")
    response = alex.withdraw_all(next_path="/consent/history")
    assert response.status_code == 303
    page = client.get("/consent/history").get_data(as_text=True)
    assert "Consent withdrawn for 3 categories" in page
    states = {key: _state(app, "alex", key) for key in CONSENT_KEYS}
    assert states == {"pointer": ConsentState.WITHDRAWN, "clicks": ConsentState.WITHDRAWN,
                      "keystrokes": None, "ai_transcripts": ConsentState.WITHDRAWN,
                      "conversations": ConsentState.REFUSED}
    assert len(_events(app)) == 7
    alex.withdraw_all()
    assert len(_events(app)) == 7
    assert "Nothing changed" in client.get("/").get_data(as_text=True)


def test_next_must_stay_on_this_site(app: Flask, alex: Chooser) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = alex.post("pointer", "grant", next_path=target)
        assert response.headers["Location"] == "/categories/pointer"
        alex.post("pointer", "withdraw")


def test_json_answer_for_scripts(app: Flask, alex: Chooser) -> None:
    answer = alex.post("pointer", "grant", json=True).get_json()
    [event] = _events(app)
    assert answer == {"changed": True, "receipt_id": event.receipt_id, "state": "ConsentGiven"}
    assert alex.post("pointer", "grant", json=True).get_json() == {
        "changed": False, "receipt_id": None, "state": "ConsentGiven"}


def _controls(app: Flask, who: str, key: str) -> str:
    with app.test_request_context("/categories/" + key):
        from flask_login import login_user

        subject = account_person(app, who)
        login_user(subject)
        notice = current_notice()
        status = service.current_states(subject.id).get(key)
        return render_template_string(
            '{% include "consent/_controls.html" %}', category=category_row(app, key),
            status=status, notice_version=notice)


def test_controls_equal_weight_nothing_preselected(app: Flask, alex: Chooser) -> None:
    html = _controls(app, "alex", "keystrokes")
    assert "Not given" in html
    buttons = re.findall(r'<button type="submit" class="([^"]+)">([^<]+)<', html)
    assert [label for _, label in buttons] == ["Give consent", "Do not give consent"]
    assert len({cls for cls, _ in buttons}) == 1
    assert "checked" not in html and "selected" not in html
    assert html.count('name="notice_version" value="1"') == 2
    assert html.count('name="csrf_token"') == 2
    assert html.count('method="post"') == 2

    alex.post("keystrokes", "grant")
    html = _controls(app, "alex", "keystrokes")
    assert "Given" in html and "notice version 1" in html
    assert [label for _, label in re.findall(
        r'<button type="submit" class="([^"]+)">([^<]+)<', html)] == ["Withdraw consent"]

    publish_changed_text(app, "keystrokes", material=True)
    html = _controls(app, "alex", "keystrokes")
    buttons = re.findall(r'<button type="submit" class="([^"]+)">([^<]+)<', html)
    assert [label for _, label in buttons] == ["Confirm under the new notice", "Decline"]
    assert len({cls for cls, _ in buttons}) == 1
    assert 'name="notice_version" value="2"' in html


def test_controls_show_nothing_for_categories_without_consent(app: Flask,
                                                              alex: Chooser) -> None:
    assert "<form" not in _controls(app, "alex", "performance")

