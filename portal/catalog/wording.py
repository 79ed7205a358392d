"""How a category's notice is put into words for a reader.

Its texts in the reader's language (falling back to English), the legal basis, how long records
are kept, the example record and what each recorded field means.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_babel import format_datetime, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.catalog.document import FALLBACK_LANGUAGE
from portal.catalog.models import LegalBasis

LEGAL_BASIS_NAMES = {
    LegalBasis.CONSENT: _l("Your consent"),
    LegalBasis.CONTRACT: _l("Your employment contract"),
    LegalBasis.LEGAL_OBLIGATION: _l("A legal obligation"),
    LegalBasis.LEGITIMATE_INTEREST: _l("The company's legitimate interest"),
}
# The provision itself, for readers who want to look it up; not translated.
LEGAL_BASIS_ARTICLES = {
    LegalBasis.CONSENT: "GDPR Art. 6(1)(a)",
    LegalBasis.CONTRACT: "GDPR Art. 6(1)(b)",
    LegalBasis.LEGAL_OBLIGATION: "GDPR Art. 6(1)(c)",
    LegalBasis.LEGITIMATE_INTEREST: "GDPR Art. 6(1)(f)",
}


@dataclass(frozen=True)
class LocalText:
    """A category's texts in one language, and whether they had to fall back to English."""

    text: dict[str, Any]
    language: str
    fell_back: bool
    level: dict[str, str]


def localize(content: Mapping[str, Any], language: str) -> LocalText:
    """Pick ``content``'s texts in ``language``, falling back to :data:`FALLBACK_LANGUAGE`."""
    texts = content["text"]
    chosen = language if language in texts else FALLBACK_LANGUAGE
    levels = content.get("sensitivity_level", {})
    level = levels.get(language) or levels.get(FALLBACK_LANGUAGE) or {}
    return LocalText(text=texts[chosen], language=chosen, fell_back=chosen != language,
                     level=level)


def legal_basis_name(basis: LegalBasis | str) -> str:
    """Name a legal basis in the reader's language."""
    return str(LEGAL_BASIS_NAMES[LegalBasis(basis)])


def legal_basis_article(basis: LegalBasis | str) -> str:
    """Return the provision of the GDPR a legal basis rests on."""
    return LEGAL_BASIS_ARTICLES[LegalBasis(basis)]


def retention_words(days: int) -> str:
    """Say how long records are kept, in the reader's language."""
    return ngettext("%(num)d day", "%(num)d days", days)


def example_rows(content: Mapping[str, Any], *, readable_dates: bool = True,
                 ) -> list[tuple[str, str]]:
    """Return the example record as (field, readable value) rows, in the schema's order.

    :param readable_dates: write date-times in the reader's language and time zone (the exact
        value stays in the JSON view).
    """
    example = content["example"]
    properties = content["event_schema"].get("properties", {})
    order = list(properties) + [name for name in example if name not in properties]
    rows = []
    for name in order:
        if name not in example:
            continue
        value = example[name]
        if isinstance(value, list):
            readable = ", ".join(str(item) for item in value)
        elif isinstance(value, dict):
            readable = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif isinstance(value, bool):
            readable = _("yes") if value else _("no")
        elif readable_dates and properties.get(name, {}).get("format") == "date-time":
            readable = _readable_time(str(value))
        else:
            readable = str(value)
        rows.append((name, readable))
    return rows


def _readable_time(value: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value  # the schema's format check is lenient; show what the file says
    if moment.tzinfo is None:
        return value
    return format_datetime(moment, "medium")


def field_rows(content: Mapping[str, Any], text: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return (field, what it means) for every recorded field, in the schema's order."""
    return [(name, text["fields"].get(name, ""))
            for name in content["event_schema"].get("properties", {})]


@dataclass(frozen=True)
class TrainingPurposeWords:
    """A training purpose a category allows, in the reader's language (or English)."""

    key: str
    name: str
    description: str
    language: str


def training_purposes(content: Mapping[str, Any], language: str) -> list[TrainingPurposeWords]:
    """Return the training purposes a category's notice allows, in ``language``.

    Empty for a category never used for training (a notice stored before training purposes
    existed lists none, which means the same).
    """
    texts = content.get("training_purpose_texts", {})
    words = []
    for key in content.get("training_purposes", []):
        chosen = language if key in texts.get(language, {}) else FALLBACK_LANGUAGE
        text = texts.get(chosen, {}).get(key, {"name": key, "description": ""})
        words.append(TrainingPurposeWords(key, text["name"], text["description"], chosen))
    return words


def training_purpose_name(document: Mapping[str, Any], key: str, language: str) -> str:
    """Name a training purpose of a notice's whole ``document`` in ``language`` (or English).

    A purpose the document does not define is named by its key.
    """
    texts = document.get("training_purposes", {}).get(key, {})
    text = texts.get(language) or texts.get(FALLBACK_LANGUAGE)
    return str(text["name"]) if text else key
