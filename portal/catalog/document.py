"""The catalog file: its format (checked by pydantic), the rules across its parts, reading it.

A catalog file is checked whole before anything is saved (structure by pydantic, rules that
span several parts by :func:`check_rules`); every problem names the category and the field.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
)

from portal.catalog.models import LegalBasis

try:  # libyaml's loader when PyYAML was built with it: the pure-Python one is ten times slower.
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader  # type: ignore[assignment]

#: The catalog shipped with the portal; a company's own file replaces it.
SHIPPED_CATALOG = Path(__file__).resolve().parent / "catalog.yaml"
#: Collectors and URLs name categories by these keys, so they must stay simple and stable.
KEY_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
#: Every catalog must be complete in this language; others fall back to it, with a note.
FALLBACK_LANGUAGE = "en"
SENSITIVITY_LEVELS = (1, 2, 3, 4)

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]


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


Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]


class CategorySpec(_Part):
    """One category as the file states it: facts, the event format, an example, the texts."""

    key: Key
    legal_basis: LegalBasis
    optional: StrictBool
    retention_days: int = Field(gt=0, le=36500)
    sensitivity: int = Field(ge=1, le=4)
    # The training purposes (keys of the catalog's ``training_purposes``) its records may be
    # used for; none (the default) means never used for training.
    training_purposes: list[Key] = Field(default_factory=list)
    storage: Storage
    event_schema: dict[str, Any]
    example: dict[str, Any]
    text: dict[Language, CategoryText]


class LevelText(_Part):
    """What a sensitivity level is called and what it means, in one language."""

    name: NonEmpty
    meaning: NonEmpty


class TrainingPurposeText(_Part):
    """What a training purpose is called and what the models trained for it do, in one language."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: NonEmpty


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
    # The purposes a training client may ask for snapshots for (key -> texts per language).
    training_purposes: dict[Key, dict[Language, TrainingPurposeText]] = Field(
        default_factory=dict)
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
        if not category.training_purposes:
            # Never used for training, as a notice stored before purposes existed says by
            # leaving them out: such a category's content (and its hash) stays as it was.
            del content["training_purposes"]
            return content
        # What each allowed purpose means is part of what the person agreed to: rewording it
        # changes this category's notice. Keyed by language first, like the other texts.
        languages = sorted({language for key in category.training_purposes
                            for language in self.training_purposes.get(key, {})})
        content["training_purpose_texts"] = {
            language: {key: self.training_purposes[key][language].model_dump(mode="json")
                       for key in category.training_purposes
                       if language in self.training_purposes.get(key, {})}
            for language in languages}
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
    for key, texts in sorted(document.training_purposes.items()):
        if FALLBACK_LANGUAGE not in texts:
            yield (f"Field 'training_purposes.{key}': the {FALLBACK_LANGUAGE} text is missing; "
                   "every other language falls back to it.")
    seen: set[str] = set()
    for category in document.categories:
        if category.key in seen:
            yield f"Category '{category.key}', field 'key': is used by more than one category."
        seen.add(category.key)
        yield from _check_category(category)
        yield from _check_training_purposes(category, document)


def _check_training_purposes(category: CategorySpec,
                             document: CatalogDocument) -> Iterable[str]:
    where = f"Category '{category.key}', field 'training_purposes'"
    defined = sorted(document.training_purposes)
    for key in sorted(set(category.training_purposes)):
        if key not in document.training_purposes:
            yield (f"{where}: '{key}' is not a training purpose of this catalog (defined in "
                   f"the top-level 'training_purposes': {', '.join(defined) or 'none'}).")
        if category.training_purposes.count(key) > 1:
            yield f"{where}: '{key}' is listed more than once."


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
