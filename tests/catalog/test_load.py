"""`portal catalog load`: the shipped file, a company's own file, and every kind of bad file."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from portal.catalog.document import FALLBACK_LANGUAGE, SHIPPED_CATALOG, CatalogError, parse_catalog
from portal.catalog.models import Category, CategoryNotice, LegalBasis
from portal.db import db
from portal.i18n import LANGUAGES
from tests.support.catalog import Raw, category, shipped_raw, to_yaml, versions, write_catalog

KEYS = ["pointer", "clicks", "keystrokes", "ai_transcripts", "conversations", "performance",
        "sensitivity_ratings"]


def test_load_publishes_the_shipped_catalog_as_version_one(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["catalog", "load", "--by", "Eli Laurent",
                                                "--dpo-sign-off", "Dana Novak, 2026-11-20"])
    assert result.exit_code == 0, result.output
    assert "Published notice version 1 with 7 categories" in result.output
    [notice] = versions(app)
    assert notice.number == 1
    assert notice.published_by_name == "Eli Laurent"
    assert notice.dpo_sign_off == "Dana Novak, 2026-11-20"
    with app.app_context():
        categories = list(db.scalars(select(Category).order_by(Category.position)))
        assert [c.key for c in categories] == KEYS
        facts = {c.key: (c.legal_basis, c.optional, c.retention_days, c.sensitivity)
                 for c in categories}
        assert facts["keystrokes"] == (LegalBasis.CONSENT, True, 30, 3)
        assert facts["performance"] == (LegalBasis.CONTRACT, False, 730, 4)
        assert facts["sensitivity_ratings"][0] is LegalBasis.LEGITIMATE_INTEREST
        sections = list(db.scalars(select(CategoryNotice)))
        assert len(sections) == 7 and all(s.changed and not s.material for s in sections)
        assert all(len(s.content_sha256) == 64 for s in sections)


def test_loading_again_changes_nothing(app: Flask) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["catalog", "load"]).exit_code == 0
    again = runner.invoke(args=["catalog", "load"])
    assert again.exit_code == 0
    assert "matches notice version 1; nothing to do" in again.output
    assert len(versions(app)) == 1


def test_a_changed_file_is_not_published_by_load(app: Flask, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["catalog", "load"])
    raw = shipped_raw()
    category(raw, "clicks")["retention_days"] = 60
    result = runner.invoke(args=["catalog", "load", str(write_catalog(tmp_path, raw))])
    assert result.exit_code == 1
    assert "differs from notice version 1 in: clicks (changed)" in result.output
    assert "portal catalog publish" in result.output
    assert len(versions(app)) == 1
    with app.app_context():
        clicks = db.get(Category, "clicks")
        assert clicks is not None and clicks.retention_days == 90


def test_a_company_file_replaces_the_shipped_one(app: Flask, tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["categories"] = [category(raw, "pointer")]
    raw["controller"]["name"] = "Beispiel GmbH"
    result = app.test_cli_runner().invoke(args=["catalog", "load",
                                                str(write_catalog(tmp_path, raw))])
    assert result.exit_code == 0, result.output
    [notice] = versions(app)
    assert notice.document["controller"]["name"] == "Beispiel GmbH"
    with app.app_context():
        keys = db.scalars(select(CategoryNotice.category_key)
                          .where(CategoryNotice.notice_version_id == notice.id))
        assert list(keys) == ["pointer"]


def test_a_missing_translation_is_accepted_with_a_note(app: Flask, tmp_path: Path) -> None:
    raw = shipped_raw()
    del category(raw, "clicks")["text"]["de"]
    result = app.test_cli_runner().invoke(args=["catalog", "load",
                                                str(write_catalog(tmp_path, raw))])
    assert result.exit_code == 0, result.output
    assert "category 'clicks' has no 'de' text" in result.output


def _set(path: str, value: object) -> Callable[[Raw], None]:
    """Return a change that sets (or deletes) the value at ``path``; a category by its key."""

    def change(raw: Raw) -> None:
        first, *rest = path.split("/")
        keys = {item["key"] for item in raw["categories"]}
        target: Any = category(raw, first) if first in keys else raw
        parts = rest if first in keys else [first, *rest]
        for part in parts[:-1]:
            target = target[int(part) if part.isdigit() and int(part) in target else part]
        last: Any = parts[-1]
        if last.isdigit() and int(last) in target:
            last = int(last)
        if value is DELETE:
            del target[last]
        else:
            target[last] = value

    return change


DELETE = object()


@pytest.mark.parametrize(("change", "message"), [
    (_set("keystrokes/text/de/title", DELETE),
     "Category 'keystrokes', field 'text.de.title': Field required."),
    (_set("keystrokes/text/en", DELETE),
     "Category 'keystrokes', field 'text.en': is missing; every other language falls back"),
    (_set("pointer/key", "Pointer"),
     "Category 'Pointer', field 'key': String should match pattern"),
    (_set("pointer/key", "p"),
     "Category 'p', field 'key': String should match pattern '^[a-z][a-z0-9_]{1,63}$'."),
    (_set("clicks/legal_basis", "vibes"),
     "Category 'clicks', field 'legal_basis': Input should be 'consent', 'legitimate_interest'"),
    (_set("clicks/optional", False),
     "Category 'clicks', field 'optional': a category based on consent must be optional"),
    (_set("performance/optional", True),
     "Category 'performance', field 'optional': only a category based on consent can be"),
    (_set("clicks/retention_days", 0),
     "Category 'clicks', field 'retention_days': Input should be greater than 0."),
    (_set("clicks/sensitivity", 5),
     "Category 'clicks', field 'sensitivity': Input should be less than or equal to 4."),
    (_set("clicks/purpose", ["typo"]),
     "Category 'clicks', field 'purpose': Extra inputs are not permitted."),
    (_set("clicks/text/en/purposes", []),
     "Category 'clicks', field 'text.en.purposes': List should have at least 1 item"),
    (_set("clicks/event_schema/properties/x/type", "integr"),
     "Category 'clicks', field 'event_schema.properties.x.type': is not a valid JSON Schema"),
    (_set("clicks/event_schema/additionalProperties", True),
     "Category 'clicks', field 'event_schema.additionalProperties': must be false"),
    (_set("clicks/example/button", "thumb"),
     "Category 'clicks', field 'example.button': does not match event_schema: 'thumb' is not "
     "one of ['left', 'right', 'middle']."),
    (_set("clicks/example/secret", "x"),
     "Category 'clicks', field 'example': does not match event_schema: Additional properties"),
    (_set("clicks/text/de/fields/button", DELETE),
     "Category 'clicks', field 'text.de.fields': explain every recorded field; missing: "
     "button."),
    (_set("clicks/text/en/fields/mood", "How you felt."),
     "Category 'clicks', field 'text.en.fields': explains fields that are not in "
     "event_schema: mood."),
    (_set("sensitivity_levels/4", DELETE),
     "Field 'sensitivity_levels': must describe exactly the levels 1, 2, 3 and 4 (found 1, 2, "
     "3)."),
    (_set("controller/dpo_contact", DELETE),
     "Field 'controller.dpo_contact': Field required."),
    (_set("format", 2), "Field 'format': Input should be 1."),
])
def test_bad_files_are_refused_with_the_category_and_field(
        app: Flask, tmp_path: Path, change: Callable[[Raw], None], message: str) -> None:
    raw = shipped_raw()
    change(raw)
    with pytest.raises(CatalogError) as caught:
        parse_catalog(to_yaml(raw))
    assert any(problem.startswith(message) for problem in caught.value.problems), \
        caught.value.problems
    result = app.test_cli_runner().invoke(args=["catalog", "load",
                                                str(write_catalog(tmp_path, raw))])
    assert result.exit_code == 1
    assert message in result.output
    assert versions(app) == []


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    raw = shipped_raw()
    raw["categories"].append(copy.deepcopy(category(raw, "clicks")))
    with pytest.raises(CatalogError, match="Category 'clicks', field 'key': is used by more "
                                           "than one category"):
        parse_catalog(to_yaml(raw))


def test_not_yaml_is_refused_with_its_line() -> None:
    with pytest.raises(CatalogError, match=r"not valid YAML at line 2, column 1"):
        parse_catalog("format: 1\n\tcontroller: x\n")
    with pytest.raises(CatalogError, match="must be a YAML mapping"):
        parse_catalog("- just a list\n")
    with pytest.raises(CatalogError, match="uses a YAML alias at line 3"):
        parse_catalog("a: &x [1, 2]\nb: 1\nc: *x\n")


def test_an_unreadable_file_is_named(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("format: 1\ncontroller: Café\n".encode("latin-1"))
    result = app.test_cli_runner().invoke(args=["catalog", "load", str(path)])
    assert result.exit_code == 1
    assert "cannot be read as UTF-8 text" in result.output


def test_shipped_catalog_is_complete_in_every_language() -> None:
    # Other catalogs may fall back to English; the shipped one speaks every portal language.
    document = parse_catalog(SHIPPED_CATALOG.read_text(encoding="utf-8"))
    assert [c.key for c in document.categories] == KEYS
    assert set(document.controller.supervisory_authority) == set(LANGUAGES)
    for level in document.sensitivity_levels.values():
        assert set(level) == set(LANGUAGES)
    for spec in document.categories:
        assert set(spec.text) == set(LANGUAGES)
        english = spec.text[FALLBACK_LANGUAGE]
        for language, text in spec.text.items():
            # A list item or a field left out is a sentence a reader of that language misses.
            for part in ("purposes", "access", "recipients"):
                assert len(getattr(text, part)) == len(getattr(english, part)), \
                    (spec.key, language, part)
            assert list(text.fields) == list(english.fields), (spec.key, language)
            if language != FALLBACK_LANGUAGE:
                assert text.title != english.title, (spec.key, language)  # not copied over
