"""What a person sees of the notice in force: each category with their consent and holdings.

It reads from several features at once (the catalog's texts, the consent ledger's state, the
catalog's objections, the vault's counts), so it lives here, above all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _

from portal.auth.models import Person
from portal.catalog.models import Category, CategoryNotice, LegalBasis, Objection
from portal.catalog.notices import current_notice, find_section
from portal.catalog.objections import list_objections
from portal.catalog.wording import LocalText, localize
from portal.consent import wording as consent_wording
from portal.consent.models import ConsentStatus
from portal.consent.service import current_states
from portal.vault.reading import held_counts


@dataclass(frozen=True)
class CategoryEntry:
    """One category of the notice in force, as one person sees it."""

    section: CategoryNotice
    local: LocalText
    status: ConsentStatus | None
    objections: list[Objection]
    held: int | None

    @property
    def key(self) -> str:
        """Return the category's key."""
        return self.section.category_key

    @property
    def content(self) -> dict[str, Any]:
        """Return the category's notice as published."""
        return self.section.content

    @property
    def category(self) -> Category:
        """Return the category's row."""
        return self.section.category

    @property
    def needs_consent(self) -> bool:
        """Say whether collection rests on the person's consent."""
        return LegalBasis(self.content["legal_basis"]) is LegalBasis.CONSENT

    @property
    def state(self) -> tuple[str, str]:
        """Return the person's state as (words, tag class); the words carry the meaning."""
        if not self.needs_consent:
            if self.objections:
                return _("Objection received"), "tag-attention"
            # i18n: state of a category that does not rest on consent: no switch, but the
            # person may object
            return _("You can object"), "tag-not-given"
        # The consent pages' own words, so that a state reads the same everywhere.
        state = self.status.state if self.status else None
        return consent_wording.state_label(state), consent_wording.state_tag(state)


def list_categories_for(person: Person, language: str) -> list[CategoryEntry]:
    """Return every category of the notice in force with the person's state, in order."""
    notice = current_notice()
    if notice is None:
        return []
    states = current_states(person.id)
    held = held_counts(person.id)
    objections: dict[str, list[Objection]] = {}
    for objection in list_objections(person):
        objections.setdefault(objection.category_key, []).append(objection)
    return [CategoryEntry(section, localize(section.content, language),
                          states.get(section.category_key),
                          objections.get(section.category_key, []),
                          held.get(section.category_key))
            for section in notice.sections]


def describe_category_for(person: Person, key: str, language: str) -> CategoryEntry | None:
    """Return one category of the notice in force as the person sees it (``None``: unknown)."""
    section = find_section(key)
    if section is None:
        return None
    return CategoryEntry(section, localize(section.content, language),
                         current_states(person.id).get(key),
                         list_objections(person, key), held_counts(person.id).get(key))
