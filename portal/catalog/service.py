"""The catalog's operations: check a catalog file, publish notice versions, read them for people.

A catalog file is checked whole before anything is saved (structure by pydantic, rules that
span several parts by :func:`check_rules`); every problem names the category and the field.
Publishing writes an immutable notice version and, for a category changed materially, says so
(a signal), so that the consent ledger ends every consent given under the old text. Functions
here only flush; the request or the command commits.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import difflib
import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import yaml
from flask_babel import force_locale, format_datetime, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
)
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.models import (
    Category,
    CategoryNotice,
    LegalBasis,
    NoticeVersion,
    Objection,
    ObjectionState,
)
from portal.db import db, utcnow
from portal.i18n import LANGUAGES
from portal.signals import notice_published

try:  # libyaml's loader when PyYAML was built with it: the pure-Python one is ten times slower.
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: The catalog shipped with the portal; a company's own file replaces it.
SHIPPED_CATALOG = Path(__file__).resolve().parent / "catalog.yaml"
#: Collectors and URLs name categories by these keys, so they must stay simple and stable.
KEY_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
#: Every catalog must be complete in this language; others fall back to it, with a note.
FALLBACK_LANGUAGE = "en"
SENSITIVITY_LEVELS = (1, 2, 3, 4)
#: An objection's reason is read by a person, not parsed: enough for a page of reasons.
REASON_MAX_LENGTH = 2000

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]

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


# --- the catalog file ------------------------------------------------------------------------

class CatalogError(Exception):
    """The catalog file cannot be used; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Part(BaseModel):
    # A misspelt key ("purpose" for "purposes") must fail, not silently drop a text.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Storage(_Part):
    """Where a category's records are kept and how they are protected (facts, not translated)."""

    location: NonEmpty
    encryption: NonEmpty


class CategoryText(_Part):
    """Everything a person reads about a category, in one language."""

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    summary: NonEmpty
    fields: dict[str, NonEmpty]
    purposes: list[NonEmpty] = Field(min_length=1)
    access: list[NonEmpty] = Field(min_length=1)
    recipients: list[NonEmpty] = Field(min_length=1)
    if_declined: NonEmpty
    how_to_withdraw: NonEmpty
    legal_basis_explained: NonEmpty


class CategorySpec(_Part):
    """One category as the file states it: facts, the event format, an example, the texts."""

    key: Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
    legal_basis: LegalBasis
    optional: StrictBool
    retention_days: int = Field(gt=0, le=36500)
    sensitivity: int = Field(ge=1, le=4)
    storage: Storage
    event_schema: dict[str, Any]
    example: dict[str, Any]
    text: dict[Language, CategoryText]


class LevelText(_Part):
    """What a sensitivity level is called and what it means, in one language."""

    name: NonEmpty
    meaning: NonEmpty


class Controller(_Part):
    """Who is responsible for the processing, and whom to ask or complain to."""

    name: NonEmpty
    contact: NonEmpty
    dpo_contact: NonEmpty
    supervisory_authority: dict[Language, NonEmpty]


class CatalogDocument(_Part):
    """A whole catalog file."""

    format: Literal[1]
    controller: Controller
    sensitivity_levels: dict[int, dict[Language, LevelText]]
    categories: list[CategorySpec] = Field(min_length=1)

    def to_json(self) -> dict[str, Any]:
        """Return the document as plain JSON values, as it is stored in a notice version."""
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        """Return the hash of the whole document (order of categories included)."""
        return content_sha256(self.to_json())

    def category_content(self, category: CategorySpec) -> dict[str, Any]:
        """Return what a person reads about ``category``, self-contained.

        The meaning of its sensitivity level is part of it: rewording what "level 4" means
        changes what the person was told about this category.
        """
        content = category.model_dump(mode="json")
        content["sensitivity_level"] = {
            language: text.model_dump(mode="json")
            for language, text in self.sensitivity_levels[category.sensitivity].items()}
        return content


def content_sha256(value: Any) -> str:
    """Hash ``value`` as canonical JSON (sorted keys, no spaces, UTF-8)."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def read_catalog_file(path: Path) -> CatalogDocument:
    """Read and check the catalog file at ``path``.

    :raise CatalogError: the file cannot be read or breaks a rule.
    """
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([f"{path}: cannot be read as UTF-8 text ({exc})"]) from exc
    return parse_catalog(source)




@functools.lru_cache(maxsize=8)
def _load_yaml(source: str) -> Any:
    """Parse YAML once per distinct text (the shipped catalog is read at every load)."""
    # A catalog never needs aliases (*name), and expanding them can blow up memory.
    for event in yaml.parse(source, Loader=SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1
            raise CatalogError([f"The file uses a YAML alias at line {line}; write the "
                                "value out instead."])
    return yaml.load(source, Loader=SafeLoader)


def parse_catalog(source: str) -> CatalogDocument:
    """Parse catalog YAML and check every rule.

    :raise CatalogError: with one line per problem, naming the category and the field.
    """
    try:
        raw = copy.deepcopy(_load_yaml(source))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError([f"The file is not valid YAML{line}: {problem}."]) from exc
    if not isinstance(raw, dict):
        raise CatalogError(["The file must be a YAML mapping with the keys format, controller, "
                            "sensitivity_levels and categories."])
    try:
        document = CatalogDocument.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(list(_describe_errors(raw, exc))) from exc
    problems = list(check_rules(document))
    if problems:
        raise CatalogError(problems)
    return document


def _describe_errors(raw: dict[str, Any], error: ValidationError) -> Iterable[str]:
    """Turn pydantic's errors into lines naming the category (by key) and the field."""
    categories = raw.get("categories")
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"]]
        message = item["msg"]
        if len(location) >= 2 and location[0] == "categories" and location[1].isdigit():
            index = int(location[1])
            key = None
            if isinstance(categories, list) and index < len(categories) \
                    and isinstance(categories[index], dict):
                key = categories[index].get("key")
            who = f"Category '{key}'" if isinstance(key, str) and key \
                else f"Category number {index + 1}"
            field = ".".join(location[2:]) or "(the whole entry)"
            yield f"{who}, field '{field}': {message}."
        else:
            yield f"Field '{'.'.join(location) or '(top level)'}': {message}."


def check_rules(document: CatalogDocument) -> Iterable[str]:
    """Yield every broken rule that spans several parts of the document."""
    levels = set(document.sensitivity_levels)
    if levels != set(SENSITIVITY_LEVELS):
        yield ("Field 'sensitivity_levels': must describe exactly the levels 1, 2, 3 and 4 "
               f"(found {', '.join(map(str, sorted(levels))) or 'none'}).")
    for level, texts in sorted(document.sensitivity_levels.items()):
        if FALLBACK_LANGUAGE not in texts:
            yield (f"Field 'sensitivity_levels.{level}': the {FALLBACK_LANGUAGE} text is "
                   "missing; every other language falls back to it.")
    if FALLBACK_LANGUAGE not in document.controller.supervisory_authority:
        yield (f"Field 'controller.supervisory_authority': the {FALLBACK_LANGUAGE} text is "
               "missing.")
    seen: set[str] = set()
    for category in document.categories:
        if category.key in seen:
            yield f"Category '{category.key}', field 'key': is used by more than one category."
        seen.add(category.key)
        yield from _check_category(category)


def _check_category(category: CategorySpec) -> Iterable[str]:
    where = f"Category '{category.key}'"
    if category.legal_basis is LegalBasis.CONSENT and not category.optional:
        yield (f"{where}, field 'optional': a category based on consent must be optional "
               "(consent that cannot be refused is not consent).")
    if category.legal_basis is not LegalBasis.CONSENT and category.optional:
        yield (f"{where}, field 'optional': only a category based on consent can be optional; "
               "on any other legal basis the person has a right to object instead.")
    if FALLBACK_LANGUAGE not in category.text:
        yield (f"{where}, field 'text.{FALLBACK_LANGUAGE}': is missing; every other language "
               "falls back to it.")
    schema_ok = True
    try:
        validator_class = jsonschema.validators.validator_for(
            category.event_schema, default=jsonschema.Draft202012Validator)
        validator_class.check_schema(category.event_schema)
    except jsonschema.SchemaError as exc:
        schema_ok = False
        path = ".".join(str(part) for part in exc.path)
        yield (f"{where}, field 'event_schema{'.' + path if path else ''}': is not a valid "
               f"JSON Schema: {exc.message}.")
    properties = category.event_schema.get("properties")
    if category.event_schema.get("type") != "object" or not isinstance(properties, dict) \
            or not properties:
        schema_ok = False
        yield (f"{where}, field 'event_schema': must describe an object (type: object) and "
               "list its properties, so that the page can say what each field is.")
        properties = {}
    elif category.event_schema.get("additionalProperties") is not False:
        yield (f"{where}, field 'event_schema.additionalProperties': must be false, so that "
               "a collector cannot send fields the notice does not disclose.")
    for language, text in category.text.items():
        missing = [name for name in properties if name not in text.fields]
        extra = [name for name in text.fields if name not in properties]
        if missing:
            yield (f"{where}, field 'text.{language}.fields': explain every recorded field; "
                   f"missing: {', '.join(missing)}.")
        if extra:
            yield (f"{where}, field 'text.{language}.fields': explains fields that are not "
                   f"in event_schema: {', '.join(extra)}.")
    if schema_ok:
        validator = validator_class(category.event_schema,
                                    format_checker=validator_class.FORMAT_CHECKER)
        for error in sorted(validator.iter_errors(category.example), key=str):
            path = ".".join(str(part) for part in error.absolute_path)
            yield (f"{where}, field 'example{'.' + path if path else ''}': does not match "
                   f"event_schema: {error.message}.")


# --- reading notices -------------------------------------------------------------------------

def current_notice() -> NoticeVersion | None:
    """Return the notice version in force: the latest published."""
    return db.scalar(select(NoticeVersion).order_by(NoticeVersion.number.desc()).limit(1))


def notice_history() -> list[NoticeVersion]:
    """Return every published notice version, newest first."""
    return list(db.scalars(select(NoticeVersion).order_by(NoticeVersion.number.desc())))


def find_notice(number: int) -> NoticeVersion | None:
    """Return the notice version with ``number``."""
    return db.scalar(select(NoticeVersion).where(NoticeVersion.number == number))


def find_section(key: str, notice: NoticeVersion | None = None) -> CategoryNotice | None:
    """Return a category's part of ``notice`` (default: the one in force)."""
    notice = notice or current_notice()
    if notice is None:
        return None
    return db.get(CategoryNotice, (notice.id, key))


def previous_section(section: CategoryNotice) -> CategoryNotice | None:
    """Return the same category's part of the latest version before ``section``'s."""
    return db.scalar(
        select(CategoryNotice).join(CategoryNotice.notice_version)
        .where(CategoryNotice.category_key == section.category_key,
               NoticeVersion.number < section.notice_version.number)
        .order_by(NoticeVersion.number.desc()).limit(1))


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


# --- differences between versions ------------------------------------------------------------

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


# --- publishing ------------------------------------------------------------------------------

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


# --- objections ------------------------------------------------------------------------------

class ObjectionRefused(Exception):
    """An objection cannot be filed here (the category rests on consent: withdraw instead)."""


def one_month_after(moment: dt.datetime) -> dt.datetime:
    """Return the same day one calendar month later (the month's last day if it is shorter)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def file_objection(person: Person, section: CategoryNotice, reason: str) -> Objection:
    """Record the person's objection to a category that does not rest on consent.

    The data protection officer must answer within one calendar month (GDPR Art. 12(3)).

    :raise ObjectionRefused: the category rests on consent.
    """
    if LegalBasis(section.content["legal_basis"]) is LegalBasis.CONSENT:
        raise ObjectionRefused(section.category_key)
    reason = reason.strip()
    if not reason or len(reason) > REASON_MAX_LENGTH:
        raise ValueError("an objection needs a reason of 1 to 2000 characters")
    filed_at = utcnow()
    objection = Objection(person_id=person.id, category_key=section.category_key,
                          notice_version_id=section.notice_version_id, reason=reason,
                          state=ObjectionState.RECEIVED, filed_at=filed_at,
                          due_at=one_month_after(filed_at))
    db.add(objection)
    db.flush()
    return objection


def list_objections(person: Person, category_key: str | None = None) -> list[Objection]:
    """Return the person's objections (to one category, if given), newest first."""
    query = select(Objection).where(Objection.person_id == person.id)
    if category_key is not None:
        query = query.where(Objection.category_key == category_key)
    return list(db.scalars(query.order_by(Objection.filed_at.desc(), Objection.id.desc())))
