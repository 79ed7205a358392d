"""The training part of a person's data download: the datasets and models holding their records.

The same facts as ``/my-data/training``: per dataset its purpose, period, state, how many of
the person's records of each category it holds, how many were left out and why, and the models
trained on it (training.json, training.csv), and one sentence per fact in the summary.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from flask import Flask
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.auth.models import Person
from portal.exports.sections import DownloadSection, SectionFile, register_section
from portal.exports.service import csv_value
from portal.hashchain import format_time
from portal.i18n import current_locale
from portal.training import wording
from portal.training.overview import DatasetHeld, describe_training_for

CSV_COLUMNS = ("dataset", "purpose", "purpose_name", "collected_from", "collected_to", "made_at",
               "state", "category", "category_title", "included", "excluded",
               "excluded_by_reason", "outdated_at", "outdated_reason", "models")


def _time(value: Any) -> str | None:
    return format_time(value) if value is not None else None


def _dataset_document(dataset: DatasetHeld) -> dict[str, Any]:
    return {
        "dataset": dataset.number, "purpose": dataset.purpose_key,
        "purpose_name": dataset.purpose_name,
        "collected_from": _time(dataset.collected_from),
        "collected_to": _time(dataset.collected_to), "made_at": _time(dataset.made_at),
        "state": dataset.state, "state_label": wording.state_label(dataset.state),
        "outdated_at": _time(dataset.outdated_at), "retired_at": _time(dataset.retired_at),
        "categories": [{
            "category": category.key, "title": category.title, "included": category.included,
            "excluded": dict(category.excluded),
            "excluded_explained": [wording.exclusion_sentence(reason, count)
                                   for reason, count in category.excluded],
            "outdated_at": _time(category.outdated_at),
            "outdated_reason": category.outdated_reason,
        } for category in dataset.categories],
        "models": [{"name": model.name, "version": model.version,
                    "registered_at": _time(model.registered_at)} for model in dataset.models],
    }


def _csv(datasets: list[DatasetHeld]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for dataset in datasets:
        models = "; ".join(f"{model.name} {model.version}" for model in dataset.models)
        for category in dataset.categories:
            writer.writerow([csv_value(value) for value in (
                dataset.number, dataset.purpose_key, dataset.purpose_name,
                _time(dataset.collected_from), _time(dataset.collected_to),
                _time(dataset.made_at), dataset.state, category.key, category.title,
                category.included, category.excluded_total,
                "; ".join(f"{reason}={count}" for reason, count in category.excluded),
                _time(category.outdated_at), category.outdated_reason, models)])
    return buffer.getvalue().encode("utf-8")


def training_files(person: Person) -> Iterator[SectionFile]:
    """Write the person's training datasets (counts and states only, never content)."""
    datasets = describe_training_for(person.id, current_locale())
    if not datasets:
        return
    document = {"person": person.subject,
                "datasets": [_dataset_document(dataset) for dataset in datasets]}
    yield "training.json", json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
    yield "training.csv", _csv(datasets)


def training_summary(person: Person) -> list[str]:
    """Say in sentences, one per dataset, what each holds of the person's records."""
    sentences = []
    for dataset in describe_training_for(person.id, current_locale()):
        parts = [_("Training dataset %(number)s for the purpose “%(purpose)s” (%(state)s).",
                   number=dataset.number, purpose=dataset.purpose_name,
                   state=wording.state_label(dataset.state))]
        for category in dataset.categories:
            if category.included:
                parts.append(wording.category_records(category.included, category.title)
                             + ".")
            parts.extend(wording.exclusion_sentence(reason, count)
                         for reason, count in category.excluded)
        if dataset.models:
            parts.append(_("Models trained on it: %(models)s.", models=", ".join(
                f"{model.name} {model.version}" for model in dataset.models)))
        sentences.append(" ".join(parts))
    return sentences


def register_training_section(app: Flask) -> None:
    """Add the training datasets to every person's data download."""
    register_section(app, DownloadSection(
        key="training",
        # i18n: a folder of the person's data download
        title=_l("Training datasets holding your records"),
        explanation=_l("Which training datasets hold how many of your records per category, "
                       "which were left out and why, and which models were trained on them "
                       "(training.json, training.csv). Counts and dates only: the records "
                       "themselves are in the “collected” folder."),
        files=training_files, summary=training_summary))
