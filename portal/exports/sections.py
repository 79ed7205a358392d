"""Parts of a person's data download that other features contribute.

The download (:mod:`portal.exports.service`) holds the collected data, the consent history
and the access log itself; a feature with more records about the person (their requests,
their objections, certificates of deletion) registers a section here in its ``init_app``, so
that the download stays complete without the exports package knowing every feature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Flask
from flask_babel.speaklater import LazyString

from portal.auth.models import Person

#: A file of a section: its path inside the ZIP (under the section's folder) and its bytes.
SectionFile = tuple[str, bytes]
EXTENSION = "portal.exports.sections"


@dataclass(frozen=True)
class DownloadSection:
    """Records a feature holds about a person, written into their download."""

    #: The folder inside the ZIP, such as "requests".
    key: str
    #: How the summary names it, and what it explains about its files.
    title: LazyString
    explanation: LazyString
    #: Returns the section's files for the person; metadata and the person's own words only,
    #: never another person's data. Called inside the download's unit of work.
    files: Callable[[Person], Iterable[SectionFile]]
    #: Sentences the human-readable summary shows about what the section holds for the person
    #: (in the download's language); none: the summary lists the section's files only.
    summary: Callable[[Person], list[str]] | None = None


def register_section(app: Flask, section: DownloadSection) -> None:
    """Add ``section`` to every download made by ``app``."""
    sections: dict[str, DownloadSection] = app.extensions.setdefault(EXTENSION, {})
    if section.key in sections:
        raise ValueError(f"a download section {section.key!r} is already registered")
    sections[section.key] = section


def registered_sections(app: Flask) -> list[DownloadSection]:
    """Return the sections registered on ``app``, in the order they were registered."""
    return list(app.extensions.get(EXTENSION, {}).values())
