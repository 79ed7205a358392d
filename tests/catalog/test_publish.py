"""Publishing notice versions: numbers, hashes, changed flags, refusals, immutability."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from portal.catalog.document import content_sha256
from portal.catalog.models import Category, CategoryNotice, NoticeVersion
from portal.catalog.publication import PublishRefused, publish_notice
from portal.db import db
from portal.i18n import LANGUAGES
from tests.support.catalog import (
    Raw,
    category,
    changed_document,
    in_app,
    new_purpose,
    publish,
    shipped_raw,
    versions,
    write_catalog,
)

#: A change summary in every language of the portal, as publishing requires.
SUMMARY = {code: f"A change ({code})." for code in LANGUAGES}


def _sections(app: Flask, number: int) -> dict[str, CategoryNotice]:
    with app.app_context():
        return {section.category_key: section for section in db.scalars(
            select(CategoryNotice).join(CategoryNotice.notice_version)
            .where(NoticeVersion.number == number))}


def test_new_version_flags_exactly_the_changed_categories(shipped: Flask) -> None:
    before = _sections(shipped, 1)
    number = publish(shipped, changed_document(new_purpose("keystrokes")))
    assert number == 2
    after = _sections(shipped, 2)
    assert [key for key, s in after.items() if s.changed] == ["keystrokes"]
    assert after["keystrokes"].content_sha256 != before["keystrokes"].content_sha256
    assert after["keystrokes"].content_sha256 == content_sha256(after["keystrokes"].content)
    for key in ("pointer", "performance"):
        assert after[key].content_sha256 == before[key].content_sha256
    [first, second] = versions(shipped)
    assert second.document_sha256 != first.document_sha256
    assert second.dpo_sign_off == "Dana Novak" and second.works_council_ref == "WC-1"
    assert second.change_summary == {"en": "A change.", "de": "Eine Änderung.",
                                     "fr": "Une modification."}


def test_a_fact_change_is_a_change_and_updates_the_category(shipped: Flask) -> None:
    def shorter(raw: Raw) -> None:
        category(raw, "clicks")["retention_days"] = 60

    publish(shipped, changed_document(shorter))
    assert _sections(shipped, 2)["clicks"].changed
    with shipped.app_context():
        clicks = db.get(Category, "clicks")
        assert clicks is not None and clicks.retention_days == 60


def test_rewording_a_sensitivity_level_changes_the_categories_at_that_level(
        shipped: Flask) -> None:
    def reword(raw: Raw) -> None:
        raw["sensitivity_levels"][4]["en"]["meaning"] = "For named people only."

    publish(shipped, changed_document(reword))
    changed = {key for key, s in _sections(shipped, 2).items() if s.changed}
    assert changed == {"conversations", "performance"}


def test_reordering_only_is_not_a_category_change(shipped: Flask) -> None:
    def reorder(raw: Raw) -> None:
        raw["categories"].reverse()

    publish(shipped, changed_document(reorder))
    sections = _sections(shipped, 2)
    assert not any(s.changed for s in sections.values())
    assert sections["sensitivity_ratings"].position == 0


def test_publishing_the_same_catalog_is_refused(shipped: Flask) -> None:
    with in_app(shipped), pytest.raises(
            PublishRefused, match="Nothing changed since notice version 1"):
        publish_notice(changed_document(lambda raw: None), published_by="tests",
                       dpo_sign_off="Dana", change_summary=SUMMARY, material={})
    assert len(versions(shipped)) == 1


@pytest.mark.parametrize(("material", "message"), [
    ({"pointer": "It changed."}, "Category “pointer” did not change; only a changed category "
                                 "can be marked material."),
    ({"nonsense": "It changed."}, "Category “nonsense” is not in the new catalog"),
    ({"keystrokes": "  "}, "Say why the change to “keystrokes” is material."),
])
def test_material_flags_must_name_a_changed_category_with_a_reason(
        shipped: Flask, material: dict[str, str], message: str) -> None:
    with in_app(shipped), pytest.raises(PublishRefused, match=message):
        publish_notice(changed_document(new_purpose("keystrokes")), published_by="tests",
                       dpo_sign_off="Dana", change_summary=SUMMARY,
                       material=material)
    assert len(versions(shipped)) == 1


def test_a_new_version_needs_sign_off_and_summaries(shipped: Flask) -> None:
    document = changed_document(new_purpose("keystrokes"))
    with in_app(shipped):
        with pytest.raises(PublishRefused, match="needs the data protection officer's sign-off"):
            publish_notice(document, published_by="tests", dpo_sign_off=" ",
                           change_summary=SUMMARY, material={})
        with pytest.raises(PublishRefused, match="missing: de, fr"):
            publish_notice(document, published_by="tests", dpo_sign_off="Dana",
                           change_summary={"en": "x"}, material={})


def test_cli_publish_records_approval_and_material_reason(shipped: Flask,
                                                          tmp_path: Path) -> None:
    raw = shipped_raw()
    new_purpose("keystrokes")(raw)
    result = shipped.test_cli_runner().invoke(args=[
        "catalog", "publish", str(write_catalog(tmp_path, raw)),
        "--dpo-sign-off", "Dana Novak, 2026-11-20", "--works-council", "WC-2026-14",
        "--summary-en", "Keystrokes also train the summariser.",
        "--summary-de", "Tastatureingaben trainieren auch den Zusammenfasser.",
        "--summary-fr", "Les frappes au clavier entraînent aussi le résumeur.",
        "--material", "keystrokes=A new purpose", "--by", "Eli Laurent"])
    assert result.exit_code == 0, result.output
    assert "Published notice version 2." in result.output
    assert "keystrokes: changed, material (A new purpose); 0 consents now wait" in result.output
    [_, second] = versions(shipped)
    assert (second.published_by_name, second.dpo_sign_off, second.works_council_ref) == (
        "Eli Laurent", "Dana Novak, 2026-11-20", "WC-2026-14")
    section = _sections(shipped, 2)["keystrokes"]
    assert section.material and section.material_reason == "A new purpose"


def test_cli_publish_refusals_are_plain(shipped: Flask, tmp_path: Path) -> None:
    runner = shipped.test_cli_runner()
    same = write_catalog(tmp_path, shipped_raw())
    result = runner.invoke(args=["catalog", "publish", str(same), "--dpo-sign-off", "Dana",
                                 "--by", "Eli", "--summary-en", "x", "--summary-de", "y",
                                 "--summary-fr", "z"])
    assert result.exit_code == 1
    assert "Not published: Nothing changed since notice version 1" in result.output
    result = runner.invoke(args=["catalog", "publish", str(same), "--dpo-sign-off", "Dana",
                                 "--by", "Eli", "--material", "keystrokes"])
    assert result.exit_code == 2
    assert "'keystrokes' is not KEY=REASON" in result.output


def test_removing_a_category_is_a_change(shipped: Flask) -> None:
    def drop(raw: Raw) -> None:
        raw["categories"] = [c for c in raw["categories"] if c["key"] != "clicks"]

    publish(shipped, changed_document(drop))
    assert "clicks" not in _sections(shipped, 2)


# --- immutability ----------------------------------------------------------------------------

@pytest.mark.parametrize("statement", [
    "UPDATE notice_version SET dpo_sign_off = 'forged'",
    "UPDATE notice_version SET document = '{}'",
    "DELETE FROM notice_version",
    "UPDATE category_notice SET content_sha256 = 'forged'",
    "UPDATE category_notice SET material = true",
    "DELETE FROM category_notice",
])
def test_the_database_refuses_to_rewrite_a_published_version(
        shipped: Flask, backend: str, statement: str) -> None:
    with shipped.app_context():
        with pytest.raises(DBAPIError, match="is append-only"):
            db.execute(text(statement))
        db.rollback()
        if backend == "postgresql":
            # TRUNCATE skips row triggers; a statement trigger refuses it as well.
            for table in ("category_notice", "notice_version"):
                with pytest.raises(DBAPIError, match="is append-only"):
                    db.execute(text(f"TRUNCATE {table} CASCADE"))
                db.rollback()
    [notice] = versions(shipped)
    assert notice.dpo_sign_off == ""


def test_an_edit_through_the_models_fails_too(shipped: Flask) -> None:
    with shipped.app_context():
        notice = db.scalars(select(NoticeVersion)).one()
        notice.dpo_sign_off = "forged after the fact"
        with pytest.raises(DBAPIError, match="is append-only"):
            db.flush()
        db.rollback()
        assert db.scalars(select(NoticeVersion)).one().dpo_sign_off == ""
