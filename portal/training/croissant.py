"""A snapshot's ``croissant.json``: MLCommons Croissant 1.1 metadata with its Responsible-AI fields.

Croissant (https://docs.mlcommons.org/croissant/docs/croissant-spec-1.1.html) lets any
Croissant-aware loader (``mlcroissant``, and through the Parquet files DuckDB, Spark, Ray or
Hugging Face ``datasets``) read the snapshot: one ``cr:FileSet`` and one ``cr:RecordSet`` per
category, one ``cr:FileObject`` (with its SHA-256) per Parquet file. The Responsible-AI
vocabulary (http://mlcommons.org/croissant/RAI/1.0) says how the records were collected, on
what basis, what was left out and why, and what personal information remains.

Every sentence here is made from facts the portal holds (the notice version's texts, the
snapshot's request, its counts): nothing is said about the data that the portal does not know.
The document is English only, like the field explanations it quotes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import select

from portal.catalog.models import CategoryNotice, NoticeVersion
from portal.db import db
from portal.hashchain import format_time
from portal.training.models import ExclusionReason, TrainingSnapshot
from portal.training.schema import columns

CROISSANT_VERSION = "http://mlcommons.org/croissant/1.1"
RAI_VERSION = "http://mlcommons.org/croissant/RAI/1.0"
#: Parquet, as Croissant and Hugging Face name it.
PARQUET = "application/x-parquet"
LANGUAGE = "en"

#: The JSON-LD context of Croissant 1.1 (its appendix 1), with the RAI prefix and the
#: ``https://schema.org/`` that mlcroissant and Hugging Face write.
CONTEXT: dict[str, Any] = {
    "@language": LANGUAGE,
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "annotation": "cr:annotation",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "excludes": "cr:excludes",
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "name": {"@container": "@language"},
    "parentField": "cr:parentField",
    "path": "cr:path",
    "readLines": "cr:readLines",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sdVersion": "cr:sdVersion",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "unArchive": "cr:unArchive",
    "value": "cr:value",
}

#: What each exclusion rule left out, in the words of the preprocessing protocol.
RULES: dict[ExclusionReason, str] = {
    ExclusionReason.NO_CONSENT: (
        "records of people whose consent to the category was not in force under the "
        "snapshot's notice version (never given, refused, withdrawn, or ended by a material "
        "change of the notice)"),
    ExclusionReason.OBJECTION: (
        "records of people with an objection to the category that was pending or upheld"),
    ExclusionReason.DELETION_REQUEST: (
        "records of people with a deletion request for them that was pending or approved"),
    ExclusionReason.PAST_RETENTION: (
        "records older than the category's retention period"),
    ExclusionReason.ABOVE_MAX_DSS: (
        "records of batches rated above the snapshot's highest DSS level"),
    ExclusionReason.SENSITIVE_DOCUMENT: (
        "activity records made while the person was working on a document rated DSS 3 or 4 "
        "according to their own sensitivity ratings"),
    ExclusionReason.RATINGS_MISSING: (
        "all activity records of people without sensitivity ratings, since nothing shows "
        "which of their records are safe"),
    ExclusionReason.RATINGS_OBJECTED: (
        "all activity records of people who objected to their sensitivity ratings, since "
        "nothing shows which of their records are safe"),
    ExclusionReason.COLLEAGUE_NOT_CONSENTED: (
        "conversation messages written by a colleague who has not consented to "
        "conversations themselves"),
}

# A property holding the workplace pseudonym of another person ("p-" and 12 hex digits).
_WORKPLACE_PSEUDONYM = re.compile(r"p-\[0-9a-f\]\{12\}")


class DescribedFile(Protocol):
    """A file of the snapshot as the manifest lists it."""

    path: str
    size: int
    sha256: str


def file_set_id(category_key: str) -> str:
    """Return the ``@id`` of a category's set of Parquet files."""
    return f"{category_key}-parquet-files"


def _time(value: dt.datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _english(content: Mapping[str, Any]) -> dict[str, Any]:
    texts = content.get("text") or {}
    chosen = texts.get(LANGUAGE) or next(iter(texts.values()), {})
    return dict(chosen) if isinstance(chosen, Mapping) else {}


def _purpose_text(document: Mapping[str, Any], key: str) -> tuple[str, str]:
    """Return the purpose's English name and description from the notice (the key if absent)."""
    texts = (document.get("training_purposes") or {}).get(key) or {}
    chosen = texts.get(LANGUAGE) or next(iter(texts.values()), {})
    return str(chosen.get("name") or key), str(chosen.get("description") or "")


def _count(value: int) -> str:
    return f"{value:,}"


def _sections(snapshot: TrainingSnapshot) -> list[CategoryNotice]:
    found = {section.category_key: section for section in db.scalars(
        select(CategoryNotice).where(
            CategoryNotice.notice_version_id == snapshot.notice_version_id))}
    missing = [key for key in snapshot.categories if key not in found]
    if missing:
        raise ValueError(f"notice version of snapshot {snapshot.number} has no section for "
                         f"{', '.join(missing)}")
    return [found[key] for key in snapshot.categories]


def build_croissant(snapshot: TrainingSnapshot, files: Sequence[DescribedFile], *,
                    rows: Mapping[str, int], issued_at: dt.datetime) -> dict[str, Any]:
    """Return the snapshot's Croissant 1.1 JSON-LD document.

    :param files: the Parquet files (paths relative to the snapshot's folder, "<category>/…").
    :param rows: records written per category.
    """
    notice = db.get(NoticeVersion, snapshot.notice_version_id)
    if notice is None:
        raise ValueError(f"snapshot {snapshot.number} names no notice version")
    document = notice.document or {}
    controller = document.get("controller") or {}
    controller_name = str(controller.get("name") or "the controller")
    sections = _sections(snapshot)
    titles = {section.category_key: str(_english(section.content).get("title")
                                        or section.category_key) for section in sections}
    purpose_name, purpose_description = _purpose_text(document, snapshot.purpose_key)
    base_url = str(current_app.config["BASE_URL"])
    totals = snapshot.totals or {}
    included = int(totals.get("included", sum(rows.values())))
    excluded = {str(reason): int(count)
                for reason, count in (totals.get("excluded") or {}).items()}
    period = (f"{snapshot.collected_from:%Y-%m-%d %H:%M} to "
              f"{snapshot.collected_to:%Y-%m-%d %H:%M} UTC")
    listed = ", ".join(titles[key] for key in snapshot.categories)

    distribution: list[dict[str, Any]] = []
    record_sets: list[dict[str, Any]] = []
    for section in sections:
        key = section.category_key
        for item in files:
            if item.path.split("/", 1)[0] == key:
                distribution.append({
                    "@type": "cr:FileObject", "@id": item.path, "name": item.path,
                    "contentUrl": item.path, "encodingFormat": PARQUET,
                    "contentSize": f"{item.size} B", "sha256": item.sha256})
        distribution.append({
            "@type": "cr:FileSet", "@id": file_set_id(key), "name": f"{key} Parquet files",
            "description": f"Every Parquet file of the category {titles[key]}: one per part "
                           "of the snapshot's work, all with the same columns.",
            "encodingFormat": PARQUET, "includes": f"{key}/*.parquet"})
        record_sets.append(_record_set(section, titles[key], rows.get(key, 0)))

    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": [CROISSANT_VERSION, RAI_VERSION],
        "name": f"training-dataset-{snapshot.number}",
        "description": (
            f"Training dataset {snapshot.number} of {controller_name}: {listed}, recorded "
            f"from {period}, for the training purpose “{purpose_name}”. Built by the "
            f"consent portal from its vault: {_count(included)} records of the people whose "
            "consent (or, for a category on another legal basis, the absence of an "
            "objection) allowed it when the snapshot was built, each person under a "
            "pseudonym of this snapshot only."),
        "url": f"{base_url}/api/v1/training/snapshots/{snapshot.public_id}",
        "identifier": snapshot.public_id,
        "version": "1.0.0",  # a sealed snapshot never changes; a new one gets a new number
        "citeAs": f"{controller_name}, training dataset {snapshot.number} "
                  f"({snapshot.public_id}), consent portal, {issued_at:%Y-%m-%d}.",
        "creator": {"@type": "sc:Organization", "name": controller_name,
                    "email": str(controller.get("contact") or "")},
        "publisher": {"@type": "sc:Organization", "name": controller_name},
        "dateCreated": _time(snapshot.requested_at),
        "datePublished": _time(issued_at),
        "license": {
            "@type": "sc:CreativeWork",
            "name": f"Internal use by {controller_name} only",
            "description": (
                f"No open licence. For {controller_name}'s internal model training for the "
                f"purpose “{purpose_name}” only: the people in it agreed to that purpose and "
                "no other. Not to be shared outside the company, joined with other data to "
                "find out who someone is, or kept after the snapshot is retired.")},
        "keywords": ["consent-based", "pseudonymised", "workplace activity",
                     *snapshot.categories],
        "distribution": distribution,
        "recordSet": record_sets,
        # Responsible AI (Croissant RAI 1.0).
        "rai:dataCollection": _collection(controller_name, notice, sections, titles),
        "rai:dataCollectionType": ["Software Collection"],
        "rai:dataCollectionTimeframe": [_time(snapshot.collected_from),
                                        _time(snapshot.collected_to)],
        "rai:dataCollectionRawData": (
            "Batches of events sent by collector software through the consent portal's "
            "collector API and kept in its vault, encrypted with a key per person and "
            "category (AES-256-GCM)."),
        "rai:personalSensitiveInformation": _personal(snapshot, sections, titles, document),
        "rai:dataUseCases": [
            f"{purpose_name}: {purpose_description}".rstrip(": "),
            "Only this purpose: the consent the records rest on covers it and no other.",
        ],
        "rai:dataPreprocessingProtocol": _preprocessing(snapshot, notice, included, excluded,
                                                        rows, titles),
        "rai:dataLimitations": [
            "Holds only the records of people whose consent (or, on another legal basis, "
            "the absence of an objection) allowed their use when the snapshot was built; "
            "everyone else is absent, whatever they did at work.",
            f"Holds only records collected from {period} and rated at most DSS level "
            f"{snapshot.max_dss_level}; activity on documents rated DSS 3 or 4 was left out "
            "(see the preprocessing protocol).",
            "A copy in time: people may withdraw, object or have their data erased after it "
            "was built. The portal then marks the snapshot outdated and tells its client; an "
            "outdated snapshot must not be used for new training.",
        ],
        "rai:dataBiases": [
            "Selected by consent: the people who agreed, and their work, may differ from "
            "those who declined, so the records are not a sample of all employees.",
            "Work on confidential documents (DSS 3-4) is under-represented by design.",
        ],
        "rai:dataReleaseMaintenancePlan": (
            "Not maintained or updated: a new snapshot is asked for instead. The files are "
            "encrypted at rest under this snapshot's own key; retiring the snapshot destroys "
            "that key, so every copy at the portal becomes unreadable, and the portal issues "
            "a certificate. Withdrawals, objections and erasures that touch it are announced "
            "to the client (webhook training.snapshot.outdated and the changes feed)."),
    }


def _record_set(section: CategoryNotice, title: str, rows: int) -> dict[str, Any]:
    key = section.category_key
    content = section.content
    explanations = {name: str(text) for name, text in
                    (_english(content).get("fields") or {}).items()}
    fields = []
    for column in columns(content.get("event_schema") or section.category.event_schema,
                          explanations):
        field: dict[str, Any] = {
            "@type": "cr:Field", "@id": f"{key}/{column.name}", "name": column.name,
            "description": column.description or column.name,
            "dataType": column.croissant_type,
            "source": {"fileSet": {"@id": file_set_id(key)},
                       "extract": {"column": column.name}}}
        if column.repeated:
            field["isArray"] = True
            field["arrayShape"] = "-1"
        fields.append(field)
    return {
        "@type": "cr:RecordSet", "@id": key, "name": key,
        "description": f"{title}: {_count(rows)} records, one row per recorded event, "
                       f"the person's pseudonym first. {_english(content).get('summary', '')}"
                       .strip(),
        "field": fields,
    }


def _collection(controller_name: str, notice: NoticeVersion, sections: list[CategoryNotice],
                titles: Mapping[str, str]) -> str:
    told = " ".join(
        f"{titles[section.category_key]}: “{_english(section.content).get('summary', '')}”"
        for section in sections)
    return (
        f"Recorded on the work computers of {controller_name}'s employees by collector "
        "software registered with the consent portal. The portal accepts a batch only for a "
        "person whose consent to the category is in force (or, for a category on another "
        "legal basis, who has no upheld objection), and only with the fields the notice "
        "discloses: every event is checked against the category's event schema on arrival. "
        f"What notice version {notice.number} told each person the category records: {told}")


def _personal(snapshot: TrainingSnapshot, sections: list[CategoryNotice],
              titles: Mapping[str, str], document: Mapping[str, Any]) -> list[str]:
    levels = document.get("sensitivity_levels") or {}
    found = [
        "People appear under a pseudonym of this snapshot only (column “person”, “s-” and 16 "
        "hex digits, keyed per snapshot): no name, e-mail address or account. The same person "
        "has unrelated pseudonyms in two snapshots."]
    for section in sections:
        content = section.content
        level = int(content.get("sensitivity") or section.category.sensitivity)
        level_text = (levels.get(str(level)) or levels.get(level) or {}).get(LANGUAGE) or {}
        named = f" ({level_text['name']}: {level_text['meaning']})" if level_text else ""
        found.append(f"{titles[section.category_key]}: sensitivity level {level}{named}.")
        schema = content.get("event_schema") or {}
        others = [name for name, spec in (schema.get("properties") or {}).items()
                  if _WORKPLACE_PSEUDONYM.search(str(spec.get("pattern", ""))
                                                 + str((spec.get("items") or {})
                                                       .get("pattern", "")))]
        if others:
            found.append(
                f"{titles[section.category_key]}: the fields {', '.join(others)} name other "
                "people by their workplace pseudonym (“p-” and 12 hex digits), which is the "
                "same in every snapshot.")
    found.append(f"No batch rated above DSS level {snapshot.max_dss_level} is included. Free "
                 "text, where a category records it, can still hold anything a person wrote, "
                 "names included.")
    return found


def _preprocessing(snapshot: TrainingSnapshot, notice: NoticeVersion, included: int,
                   excluded: Mapping[str, int], rows: Mapping[str, int],
                   titles: Mapping[str, str]) -> list[str]:
    steps = [
        f"Consent was the basis: each person's consent (or, for a category on another legal "
        f"basis, the absence of an objection) was checked for each category against notice "
        f"version {notice.number} when the snapshot was built, not when the records were "
        "collected.",
        f"Included: {_count(included)} records ("
        + ", ".join(f"{titles[key]} {_count(rows.get(key, 0))}" for key in snapshot.categories)
        + ").",
    ]
    for reason, rule in RULES.items():
        steps.append(f"Left out ({reason.value}): {rule}: "
                     f"{_count(excluded.get(reason.value, 0))} records.")
    steps.append("Each person's identity replaced by the snapshot's pseudonym; the events' "
                 "fields kept as collected, in the columns of the category's event schema.")
    return steps
