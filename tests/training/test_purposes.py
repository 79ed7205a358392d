"""Training purposes in the catalog: checked at load, kept in each category's notice, shown on
the category page in every language, and widening them is a material change."""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.changes import describe_changes
from portal.catalog.document import CatalogError, parse_catalog
from portal.catalog.models import CategoryNotice
from portal.catalog.notices import find_notice, find_section
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import commit, db
from tests.support.catalog import (
    Raw,
    category,
    changed_document,
    in_app,
    load_shipped,
    publish,
    shipped_raw,
    to_yaml,
)
from tests.support.factories import add_person, grant
from tests.support.identity import SignIn


def _problems(raw: Raw) -> list[str]:
    with pytest.raises(CatalogError) as refused:
        parse_catalog(to_yaml(raw))
    return refused.value.problems


def test_a_category_naming_an_undefined_purpose_is_refused_by_name() -> None:
    raw = shipped_raw()
    category(raw, "pointer")["training_purposes"] = ["assistant_workflows", "ad_targeting"]
    assert _problems(raw) == [
        "Category 'pointer', field 'training_purposes': 'ad_targeting' is not a training "
        "purpose of this catalog (defined in the top-level 'training_purposes': "
        "assistant_workflows, code_and_text_completion, conversation_summaries)."]


def test_a_purpose_without_its_english_text_or_named_twice_is_refused() -> None:
    raw = shipped_raw()
    del raw["training_purposes"]["conversation_summaries"]["en"]
    category(raw, "clicks")["training_purposes"] = ["assistant_workflows"] * 2
    assert _problems(raw) == [
        "Field 'training_purposes.conversation_summaries': the en text is missing; every other "
        "language falls back to it.",
        "Category 'clicks', field 'training_purposes': 'assistant_workflows' is listed more "
        "than once."]


def test_a_malformed_purpose_is_refused_naming_the_field() -> None:
    raw = shipped_raw()
    category(raw, "keystrokes")["training_purposes"] = ["Code Completion"]
    raw["training_purposes"]["assistant_workflows"]["de"] = {"name": "Abläufe"}
    problems = _problems(raw)
    assert any(line.startswith("Category 'keystrokes', field 'training_purposes.0'")
               for line in problems), problems
    assert any(line.startswith("Field 'training_purposes.assistant_workflows.de.description'")
               for line in problems), problems


def test_the_shipped_catalog_allows_training_only_where_its_purposes_say_so() -> None:
    document = changed_document(lambda raw: None)
    allowed = {spec.key: spec.training_purposes for spec in document.categories}
    assert allowed == {
        "pointer": ["assistant_workflows"], "clicks": ["assistant_workflows"],
        "keystrokes": ["code_and_text_completion"],
        "ai_transcripts": ["code_and_text_completion"],
        "conversations": ["conversation_summaries"],
        "performance": [], "sensitivity_ratings": []}
    for key, texts in document.training_purposes.items():
        assert set(texts) == {"en", "de", "fr"}, key


def test_each_notice_keeps_what_its_purposes_mean(app: Flask, catalog: int) -> None:
    with in_app(app):
        pointer = find_section("pointer")
        performance = find_section("performance")
        assert pointer is not None and performance is not None
        assert pointer.content["training_purposes"] == ["assistant_workflows"]
        texts = pointer.content["training_purpose_texts"]
        assert set(texts) == {"en", "de", "fr"}
        assert texts["en"]["assistant_workflows"]["name"] == \
            "Workflow guidance by the internal assistant"
        # Never used for training: stored as a notice from before purposes existed.
        assert "training_purposes" not in performance.content
        assert "training_purpose_texts" not in performance.content


def _allow_code_completion_for_pointer(raw: Raw) -> None:
    category(raw, "pointer")["training_purposes"].append("code_and_text_completion")


def test_allowing_one_more_purpose_is_material_and_ends_consents(app: Flask,
                                                                 catalog: int) -> None:
    with in_app(app):
        ada = add_person("Ada")
        grant(ada, "pointer", "keystrokes")
        commit()
        ada_id = ada.id
    # The publisher did not mark it material: the rule does.
    number = publish(app, changed_document(_allow_code_completion_for_pointer))
    with in_app(app):
        section = db.scalar(select(CategoryNotice).join(CategoryNotice.notice_version)
                            .where(CategoryNotice.category_key == "pointer",
                                   CategoryNotice.notice_version.has(number=number)))
        assert section is not None and section.changed and section.material
        assert "now also used to train: code_and_text_completion" in section.material_reason
        states = {key: state for key, state in db.execute(
            select(ConsentStatus.category_key, ConsentStatus.state)
            .where(ConsentStatus.person_id == ada_id))}
        # Consent given for less cannot cover more; the other category is untouched.
        assert states == {"pointer": ConsentState.EXPIRED, "keystrokes": ConsentState.GIVEN}
        before = find_section("pointer", find_notice(1))
        assert before is not None
        lines = describe_changes(before.content, section.content, "en")
        assert [(line.kind, line.text) for line in lines] == [
            ("added", "Used to train: Code and text assistance: Training the internal "
                      "assistant and the code assistant to complete code and text the way "
                      "people at the company write, and to answer the questions people "
                      "really ask.")]


def test_allowing_fewer_purposes_is_left_to_the_publisher(app: Flask, catalog: int) -> None:
    def stop_training_on_clicks(raw: Raw) -> None:
        category(raw, "clicks")["training_purposes"] = []

    number = publish(app, changed_document(stop_training_on_clicks))
    with in_app(app):
        section = db.scalar(select(CategoryNotice).where(
            CategoryNotice.category_key == "clicks",
            CategoryNotice.notice_version.has(number=number)))
        assert section is not None and section.changed and not section.material


# --- the category page -----------------------------------------------------------------------

def _text(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def _set_locale(app: Flask, locale: str) -> None:
    with app.app_context():
        for person in db.scalars(select(Person)):
            person.locale = locale
        db.commit()


@pytest.mark.parametrize(("language", "allowed", "never"), [
    # (The page's words, then the purpose's name and description from the catalog.)
    ("en", "Used to train: Code and text assistance : Training the internal assistant",
     "Never used for training."),
    ("de", "Genutzt für das Training von: Unterstützung beim Schreiben von Code und Text : "
           "Den internen Assistenten", "Wird nie für das Training verwendet."),
    ("fr", "Utilisé pour entraîner : Assistance à l\u2019écriture de code et de texte : "
           "Entraîner l\u2019assistant interne", "Jamais utilisé pour l\u2019entraînement."),
])
def test_the_category_page_says_what_the_category_may_train(
        app: Flask, client: FlaskClient, sign_in: SignIn, language: str, allowed: str,
        never: str) -> None:
    load_shipped(app)
    sign_in.login(client, "alex")
    _set_locale(app, language)
    keystrokes = _text(client, "/categories/keystrokes")
    assert allowed in keystrokes
    assert never not in keystrokes
    assert never in _text(client, "/categories/performance")
