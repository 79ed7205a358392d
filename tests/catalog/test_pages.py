"""The category pages and the dashboard: everything the notice says, in the person's language."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.document import SHIPPED_CATALOG, parse_catalog
from portal.db import db
from tests.support.catalog import Raw, category, changed_document, publish
from tests.support.forms import csrf_token
from tests.support.identity import SignIn

DOCUMENT = parse_catalog(SHIPPED_CATALOG.read_text(encoding="utf-8"))


def _page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return html.unescape(response.get_data(as_text=True))


def _text(page: str) -> str:
    """Return the page's visible words, tags removed, spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


@pytest.mark.parametrize("path", ["/categories/", "/categories/keystrokes"])
def test_pages_need_sign_in(shipped: Flask, client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")


def test_index_lists_every_category_with_its_facts_and_state(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    page = _page(client, "/categories/")
    text = _text(page)
    assert "Notice version 1, published" in text
    for spec in DOCUMENT.categories:
        assert spec.text["en"].title in text
    rows = {spec.key: _text(row) for spec in DOCUMENT.categories
            for row in re.findall(r"<tr>.*?</tr>", page, re.DOTALL)
            if f'href="/categories/{spec.key}"' in row}
    assert len(rows) == 7
    assert rows["keystrokes"].endswith("Level 3: Confidential 30 days Your consent GDPR Art. "
                                       "6(1)(a) Not given ")
    assert rows["performance"].endswith("Level 4: Strictly confidential 730 days Your "
                                        "employment contract GDPR Art. 6(1)(b) You can object ")
    assert "The company's legitimate interest GDPR Art. 6(1)(f)" in rows["sensitivity_ratings"]


def test_category_page_shows_everything_the_notice_says(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    page = _page(client, "/categories/conversations")
    text = _text(page)
    spec = next(c for c in DOCUMENT.categories if c.key == "conversations")
    words = spec.text["en"]
    for sentence in [words.title, words.summary, *words.fields.values(), *words.purposes,
                     *words.access, *words.recipients, words.if_declined,
                     words.how_to_withdraw, words.legal_basis_explained,
                     spec.storage.location, spec.storage.encryption,
                     "Level 4: Strictly confidential",
                     DOCUMENT.sensitivity_levels[4]["en"].meaning, "30 days",
                     "Yes. It is off unless you switch it on.",
                     "From notice version 1, published", "dpo@example.com"]:
        assert sentence in text, sentence
    for name in spec.event_schema["properties"]:
        assert f"<code>{name}</code>" in page
    # The example, readable (a list becomes words) and as JSON for the technical reader.
    assert "p-3f9c1a7e22b0, p-a81d44c09e17" in text
    assert '"participants": [' in page and '"author": "self"' in page
    assert "<details" in page
    # The consent control of the consent ledger, not a form of our own.
    assert 'action="/consent/conversations/grant"' in page
    assert "objections" not in page


def test_non_consent_category_has_no_toggle_but_an_objection_form(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    page = _page(client, "/categories/performance")
    assert "/consent/performance/grant" not in page
    assert 'action="/categories/performance/objections"' in page
    assert "Your right to object" in page
    assert "No. You can object instead." in _text(page)


def test_unknown_category_is_404(shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    _page(client, "/categories/webcam", status=404)


def test_pages_speak_the_persons_language(shipped: Flask, client: FlaskClient,
                                          sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    _set_locale(shipped, "de")
    text = _text(_page(client, "/categories/keystrokes"))
    assert "Tastatureingaben" in text
    assert "not yet available in your language" not in text

    _set_locale(shipped, "fr")
    page = _page(client, "/categories/conversations")
    assert '<html lang="fr">' in page and 'role="note"' not in page
    text = _text(page)
    words = next(c for c in DOCUMENT.categories if c.key == "conversations").text["fr"]
    for sentence in [words.title, words.summary, *words.purposes, words.if_declined,
                     words.legal_basis_explained, DOCUMENT.controller.supervisory_authority["fr"],
                     # The portal's own words, the level's name and Babel's plural.
                     "Niveau 4 : Strictement confidentiel", "30 jours", "Votre consentement",
                     "Oui. Il est désactivé tant que vous ne l\u2019activez pas."]:
        # French puts a no-break space before ":" and inside « »; _text() makes it a space.
        assert " ".join(sentence.split()) in text, sentence
    index = _text(_page(client, "/categories/"))
    assert "Frappes au clavier" in index and "L\u2019intérêt légitime de l\u2019entreprise" in index
    assert "730 jours" in index and "Version 1 de la notice, publiée le" in index


def _set_locale(app: Flask, locale: str) -> None:
    with app.app_context():
        for person in db.scalars(select(Person)):
            person.locale = locale
        db.commit()


def test_missing_translation_falls_back_to_english_with_a_note(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    def without_german(raw: Raw) -> None:
        del category(raw, "clicks")["text"]["de"]

    publish(shipped, changed_document(without_german))
    sign_in.login(client, "alex")
    _set_locale(shipped, "de")
    page = _page(client, "/categories/clicks")
    assert 'role="note"' in page
    assert '<h1 lang="en">Clicks</h1>' in page
    # The note itself is in the person's language once the lead's German catalog has it; its
    # English source is the msgid.
    assert "This text is not yet available in your language; it is shown in English." in page \
        or "nicht" in page
    index = _page(client, "/categories/")
    assert 'lang="en">Clicks</a>' in index
    # A category that has German text shows no note.
    assert 'role="note"' not in _page(client, "/categories/pointer")


def test_dashboard_shows_state_and_what_is_held_per_category(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "bea")
    page = _page(client, "/")
    text = _text(page)
    assert "Nothing has been collected about you." in text
    for spec in DOCUMENT.categories:
        assert spec.text["en"].title in text
        assert f'href="/categories/{spec.key}"' in page
    assert text.count("Held about you Nothing collected") == 7
    assert 'action="/consent/keystrokes/grant"' in page
    assert "Your state You can object" in text
    # The account summary stays the page's only summary list (the sign-in test reads it).
    assert page.count('class="summary-list"') == 1


def test_dashboard_and_index_before_any_notice(app: Flask, client: FlaskClient,
                                               sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    assert "No notice has been published yet" in _page(client, "/")
    assert "No notice has been published yet" in _page(client, "/categories/")
    _page(client, "/categories/pointer", status=404)


def test_what_is_held_comes_from_the_vault(shipped: Flask, client: FlaskClient,
                                           sign_in: SignIn) -> None:
    from portal.catalog.models import Category
    from portal.vault.ingest import ingest_batch

    sign_in.login(client, "alex")
    client.post("/consent/keystrokes/grant", data={"csrf_token": csrf_token(client),
                                                   "notice_version": "1"})
    spec = next(c for c in DOCUMENT.categories if c.key == "keystrokes")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    events = [{**spec.example, "t": (start + dt.timedelta(minutes=minute)).isoformat()
               .replace("+00:00", "Z")} for minute in (1, 2, 3)]
    with shipped.test_request_context():
        person = db.scalars(select(Person)).one()
        keystrokes = db.get(Category, "keystrokes")
        assert keystrokes is not None
        ingest_batch(person, keystrokes, events=events, collected_from=start,
                     collected_to=start + dt.timedelta(minutes=5), dss_level=2)
        db.commit()
    text = _text(_page(client, "/"))
    assert "Nothing has been collected about you." not in text
    assert "Held about you 3 records" in text
    assert text.count("Held about you Nothing collected") == 6
