"""Publishing notice versions and installing the first one from a catalog file.

Publishing writes an immutable notice version and, for a category changed materially or
removed, says so (:data:`portal.signals.notice_published`), so that the consent ledger ends
every consent given under the old text. Functions here only flush; the request or the command
commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.changes import SectionChange, compare_with_current
from portal.catalog.document import CatalogDocument, content_sha256
from portal.catalog.models import Category, CategoryNotice, NoticeVersion
from portal.db import db, utcnow
from portal.i18n import LANGUAGES
from portal.signals import notice_published

log = logging.getLogger(__name__)


class PublishRefused(Exception):
    """Publishing was refused; the message says why, in plain words."""


@dataclass(frozen=True)
class Publication:
    """A published notice version, and how many consents it ended per category."""

    notice: NoticeVersion
    #: Per category whose consents had to end (material change, or removed), as the
    #: receivers of :data:`portal.signals.notice_published` counted them.
    consents_ended: dict[str, int]


def publish_notice(document: CatalogDocument, *, published_by: Person | str,
                   dpo_sign_off: str, works_council_ref: str = "",
                   change_summary: Mapping[str, str], material: Mapping[str, str],
                   ) -> Publication:
    """Publish ``document`` as the next notice version.

    Computes each category's content hash and whether it changed since the version in force,
    upserts the categories' facts, and sends :data:`portal.signals.notice_published` naming
    each category in ``material`` (key: why the change is material) and each removed one, so
    that the consent ledger ends every consent given under the old text.

    :param published_by: the privacy admin, or (from the CLI) the name of the operator.
    :raise PublishRefused: nothing changed, a material flag is on an unchanged or unknown
        category, or the sign-off or change summary is missing.
    """
    comparison = compare_with_current(document)
    current = comparison.current
    if not comparison.document_changed:
        assert current is not None
        raise PublishRefused(_("Nothing changed since notice version %(number)d: there is "
                               "nothing to publish.", number=current.number))
    sections = {section.key: section for section in comparison.sections}
    for key, reason in material.items():
        if key not in sections or sections[key].new is None:
            raise PublishRefused(_("Category “%(key)s” is not in the new catalog, so it "
                                   "cannot be marked material.", key=key))
        if not sections[key].changed:
            raise PublishRefused(_("Category “%(key)s” did not change; only a changed "
                                   "category can be marked material.", key=key))
        if not reason.strip():
            raise PublishRefused(_("Say why the change to “%(key)s” is material.", key=key))
    material = {**_widened_training(comparison.sections), **material}
    dpo_sign_off = dpo_sign_off.strip()
    summary = {language: text.strip() for language, text in change_summary.items()
               if text.strip()}
    if current is not None:
        # The first version is the installation; every later one changes a standing contract.
        if not dpo_sign_off:
            raise PublishRefused(_("A new notice version needs the data protection "
                                   "officer's sign-off."))
        missing = [code for code in LANGUAGES if code not in summary]
        if missing:
            raise PublishRefused(_("Summarise the change in every language of the portal; "
                                   "missing: %(languages)s.", languages=", ".join(missing)))

    _upsert_categories(document)
    person = published_by if isinstance(published_by, Person) else None
    notice = NoticeVersion(
        number=comparison.next_number,
        published_at=utcnow(),
        published_by_id=person.id if person else None,
        published_by_name=person.display_name if person else str(published_by).strip(),
        dpo_sign_off=dpo_sign_off,
        works_council_ref=works_council_ref.strip(),
        change_summary=summary,
        document=document.to_json(),
        document_sha256=document.sha256(),
    )
    for position, section in enumerate(s for s in comparison.sections if s.new is not None):
        assert section.new is not None
        notice.sections.append(CategoryNotice(
            category_key=section.key, position=position, content=section.new,
            content_sha256=content_sha256(section.new), changed=section.changed,
            material=section.key in material,
            material_reason=material.get(section.key, "").strip()))
    db.add(notice)
    db.flush()

    ending = dict(material)
    # A category left out of the catalog is no longer disclosed: nothing may be collected
    # under consents given for it, so they end as they would for a material change.
    ending.update({section.key: "removed from the catalog"
                   for section in comparison.changed if section.status == "removed"})
    consents_ended: dict[str, int] = {}
    for _receiver, counts in notice_published.send(notice, ending=ending, actor=person):
        for key, count in (counts or {}).items():
            consents_ended[key] = consents_ended.get(key, 0) + count
    for key in ending:
        log.info("notice version %d: %d consents for %s expired", notice.number,
                 consents_ended.get(key, 0), key)
    return Publication(notice, consents_ended)


def _widened_training(sections: list[SectionChange]) -> dict[str, str]:
    """Return the categories now allowed for more training purposes, each with why it is material.

    Not left to the publisher: a consent given for fewer purposes cannot cover more, so
    these consents end like those of any other material change.
    """
    return {section.key: "now also used to train: " + ", ".join(section.added_training_purposes)
            + " (a consent given for fewer training purposes cannot cover more)"
            for section in sections if section.added_training_purposes}


def _upsert_categories(document: CatalogDocument) -> None:
    """Make the categories' facts (what gates collection) those of ``document``."""
    existing = {category.key: category for category in db.scalars(select(Category))}
    for position, spec in enumerate(document.categories):
        category = existing.get(spec.key)
        if category is None:
            category = Category(key=spec.key)
            db.add(category)
        category.position = position
        category.legal_basis = spec.legal_basis
        category.optional = spec.optional
        category.retention_days = spec.retention_days
        category.sensitivity = spec.sensitivity
        category.event_schema = spec.event_schema
    db.flush()


@dataclass(frozen=True)
class LoadOutcome:
    """What :func:`load_catalog` did with a catalog file.

    It published version 1, or compared the file with the version in force: differences
    become a new version only through :func:`publish_notice`.
    """

    notice: NoticeVersion
    published: bool
    pending: list[SectionChange]
    document_changed: bool


def load_catalog(document: CatalogDocument, *, published_by: Person | str,
                 dpo_sign_off: str = "", works_council_ref: str = "") -> LoadOutcome:
    """Install ``document``: publish it as version 1 if nothing was published yet.

    Once a notice is published, a changed file becomes a new version only through
    :func:`publish_notice`, which records who approved it and which changes are material.
    """
    comparison = compare_with_current(document)
    if comparison.current is None:
        notice = publish_notice(document, published_by=published_by, dpo_sign_off=dpo_sign_off,
                                works_council_ref=works_council_ref, change_summary={},
                                material={}).notice
        return LoadOutcome(notice, published=True, pending=[], document_changed=True)
    return LoadOutcome(comparison.current, published=False, pending=comparison.changed,
                       document_changed=comparison.document_changed)
