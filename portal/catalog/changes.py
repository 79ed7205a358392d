"""Differences between notice versions, in words a person reads: per category and language.

A new catalog document is compared with the version in force before it is published; a
published version is shown with its difference to the version before.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from portal.catalog.document import CatalogDocument, content_sha256
from portal.catalog.models import CategoryNotice, NoticeVersion
from portal.catalog.notices import current_notice, previous_section
from portal.catalog.wording import (
    example_rows,
    field_rows,
    legal_basis_article,
    legal_basis_name,
    localize,
    retention_words,
    training_purposes,
)
from portal.db import db
from portal.i18n import LANGUAGES


@dataclass(frozen=True)
class DiffLine:
    """One line of a readable difference: ``removed`` or ``added``."""

    kind: Literal["removed", "added"]
    text: str


def notice_lines(content: Mapping[str, Any], language: str) -> list[str]:
    """Render a category's notice as plain lines in ``language`` (labels included).

    The lines are what a person reads, one statement each, so that a line-by-line difference
    reads as "this sentence went, this one came".
    """
    local = localize(content, language)
    text = local.text
    lines: list[str] = []
    with force_locale(language):
        lines.append(_("Title: %(text)s", text=text["title"]))
        lines.append(_("Summary: %(text)s", text=text["summary"]))
        for name, meaning in field_rows(content, text):
            lines.append(_("Recorded field %(field)s: %(text)s", field=name, text=meaning))
        for name, rule in content["event_schema"].get("properties", {}).items():
            lines.append(_("Format of %(field)s: %(rule)s", field=name,
                           rule=json.dumps(rule, ensure_ascii=False, sort_keys=True)))
        for name, value in example_rows(content, readable_dates=False):
            lines.append(_("Example %(field)s: %(value)s", field=name, value=value))
        lines.extend(_("Purpose: %(text)s", text=purpose) for purpose in text["purposes"])
        lines.extend(_("Used to train: %(name)s: %(description)s", name=purpose.name,
                       description=purpose.description)
                     for purpose in training_purposes(content, language))
        lines.append(_("Legal basis: %(text)s (%(article)s)",
                       text=legal_basis_name(content["legal_basis"]),
                       article=legal_basis_article(content["legal_basis"])))
        lines.append(_("Legal basis explained: %(text)s", text=text["legal_basis_explained"]))
        lines.append(_("Optional: %(text)s", text=_("yes") if content["optional"] else _("no")))
        lines.append(_("Kept for: %(text)s", text=retention_words(content["retention_days"])))
        lines.extend(_("Who can see it: %(text)s", text=who) for who in text["access"])
        lines.extend(_("Recipient: %(text)s", text=who) for who in text["recipients"])
        lines.append(_("Stored: %(text)s", text=content["storage"]["location"]))
        lines.append(_("Protected by: %(text)s", text=content["storage"]["encryption"]))
        lines.append(_("Sensitivity: level %(level)d, %(name)s: %(meaning)s",
                       level=content["sensitivity"], name=local.level.get("name", ""),
                       meaning=local.level.get("meaning", "")))
        lines.append(_("If you say no: %(text)s", text=text["if_declined"]))
        lines.append(_("How to withdraw or object: %(text)s", text=text["how_to_withdraw"]))
    return lines


def describe_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
                     language: str) -> list[DiffLine]:
    """Return the lines removed from and added to a category's notice, in ``language``."""
    before = notice_lines(old, language) if old is not None else []
    after = notice_lines(new, language) if new is not None else []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    lines: list[DiffLine] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        lines.extend(DiffLine("removed", line) for line in before[i1:i2])
        lines.extend(DiffLine("added", line) for line in after[j1:j2])
    return lines


@dataclass(frozen=True)
class SectionChange:
    """How one category differs between the version in force and a new document."""

    key: str
    status: Literal["new", "changed", "unchanged", "removed"]
    old: dict[str, Any] | None
    new: dict[str, Any] | None

    @property
    def changed(self) -> bool:
        """Say whether the category's notice is different in the new document."""
        return self.status != "unchanged"

    def title(self, language: str) -> str:
        """Return the category's title in ``language`` (the new one, else the old)."""
        content = self.new or self.old
        assert content is not None
        return str(localize(content, language).text["title"])

    def languages(self) -> list[str]:
        """Return the languages either side has texts in, the portal's languages first."""
        found = set((self.old or {}).get("text", {})) | set((self.new or {}).get("text", {}))
        return [code for code in LANGUAGES if code in found] + sorted(found - set(LANGUAGES))

    @property
    def added_training_purposes(self) -> list[str]:
        """Return the training purposes the new text allows and the version in force did not.

        Consent given for fewer purposes cannot cover more: such a change is always material
        (see :func:`portal.catalog.publication.publish_notice`).
        """
        if self.old is None or self.new is None:
            return []
        before = set(self.old.get("training_purposes", []))
        return [key for key in self.new.get("training_purposes", []) if key not in before]

    def differences(self, language: str) -> list[DiffLine]:
        """Return the readable difference in ``language``."""
        return describe_changes(self.old, self.new, language)


@dataclass(frozen=True)
class VersionChange:
    """One category of a published version, and how it differs from the version before."""

    section: CategoryNotice
    title: str
    is_new: bool
    diffs: list[tuple[str, list[DiffLine]]]


def describe_version(notice: NoticeVersion, language: str) -> list[VersionChange]:
    """Return every category of ``notice`` with its difference to the version before.

    The difference is given per language the portal speaks; unchanged categories have none.
    """
    changes = []
    for section in notice.sections:
        before = previous_section(section) if section.changed else None
        diffs = [(code, describe_changes(before.content if before else None,
                                         section.content, code))
                 for code in LANGUAGES if section.changed and code in section.content["text"]]
        changes.append(VersionChange(section, localize(section.content, language).text["title"],
                                     section.changed and before is None, diffs))
    return changes


def removed_categories(notice: NoticeVersion) -> list[str]:
    """Return the keys of the categories the version before ``notice`` had and it has not."""
    before = db.scalar(select(NoticeVersion).where(NoticeVersion.number < notice.number)
                       .order_by(NoticeVersion.number.desc()).limit(1))
    if before is None:
        return []
    kept = {section.category_key for section in notice.sections}
    return [section.category_key for section in before.sections if section.category_key not in kept]


@dataclass(frozen=True)
class NoticeComparison:
    """A new catalog document next to the notice version in force."""

    current: NoticeVersion | None
    document: CatalogDocument
    sections: list[SectionChange]

    @property
    def document_changed(self) -> bool:
        """Say whether publishing would record anything new (any text, fact or order)."""
        return self.current is None or self.current.document_sha256 != self.document.sha256()

    @property
    def changed(self) -> list[SectionChange]:
        """Return the categories whose notice is new, different or removed."""
        return [section for section in self.sections if section.changed]

    @property
    def next_number(self) -> int:
        """Return the number the new version would get."""
        return (self.current.number if self.current else 0) + 1


def compare_with_current(document: CatalogDocument) -> NoticeComparison:
    """Compare ``document`` with the notice version in force, category by category."""
    current = current_notice()
    old_sections = {section.category_key: section
                    for section in (current.sections if current else [])}
    sections = []
    for category in document.categories:
        content = document.category_content(category)
        old = old_sections.get(category.key)
        if old is None:
            status: Literal["new", "changed", "unchanged", "removed"] = "new"
        elif old.content_sha256 == content_sha256(content):
            status = "unchanged"
        else:
            status = "changed"
        sections.append(SectionChange(category.key, status, old.content if old else None,
                                      content))
    new_keys = {category.key for category in document.categories}
    sections.extend(SectionChange(key, "removed", section.content, None)
                    for key, section in old_sections.items() if key not in new_keys)
    return NoticeComparison(current, document, sections)
