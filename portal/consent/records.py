"""The ISO/IEC TS 27560 consent record: the terms a notice states, and the record built on them.

One builder for every document that carries the record: the signed consent receipt (with the
one event it is about) and HR's JSON export (with the state and every event behind it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from portal.catalog.models import Category, CategoryNotice, NoticeVersion

#: The legal basis the consent records rest on.
LEGAL_BASIS = "consent (GDPR Art. 6(1)(a))"


@dataclass(frozen=True)
class NoticeTerms:
    """What a notice version says about one category, in one language."""

    version: int
    published_at: dt.datetime
    category_sha256: str
    document_sha256: str
    title: str
    purposes: list[str]
    recipients: list[str]
    fields: list[str]
    retention_days: int
    sensitivity: int
    how_to_withdraw: str
    #: The controller as the record names it: ``name``, ``contact`` and ``dpoContact``.
    controller: dict[str, str]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return []


def notice_controller(version: NoticeVersion) -> dict[str, Any]:
    """Return the controller a notice version names (empty if it names none)."""
    controller = version.document.get("controller", {})
    return controller if isinstance(controller, dict) else {}


def notice_terms(part: CategoryNotice, version: NoticeVersion, texts: Mapping[str, Any], *,
                 category: Category | None) -> NoticeTerms:
    """Read the terms of ``part`` (a category's section of ``version``) from its ``texts``.

    ``texts`` are the section's texts in one language; ``category`` gives the retention and
    sensitivity the section does not state itself.
    """
    controller = notice_controller(version)
    fields = texts.get("fields")
    return NoticeTerms(
        version=version.number, published_at=version.published_at,
        category_sha256=part.content_sha256, document_sha256=version.document_sha256,
        title=str(texts.get("title") or part.category_key),
        purposes=_strings(texts.get("purposes")),
        recipients=_strings(texts.get("recipients")),
        fields=[str(value) for value in fields.values()] if isinstance(fields, Mapping) else [],
        retention_days=int(part.content.get("retention_days")
                           or (category.retention_days if category else 0)),
        sensitivity=int(part.content.get("sensitivity")
                        or (category.sensitivity if category else 0)),
        how_to_withdraw=str(texts.get("how_to_withdraw", "")),
        controller={"name": str(controller.get("name", "")),
                    "contact": str(controller.get("contact", "")),
                    "dpoContact": str(controller.get("dpo_contact", ""))})


def consent_record(record_id: str, principal: Mapping[str, Any], terms: NoticeTerms | None, *,
                   category_key: str, notice_version: int, notice_url: str, language: str,
                   write_time: Callable[[dt.datetime], str],
                   cite_document: bool = False) -> dict[str, Any]:
    """Return an ISO/IEC TS 27560 consent record: who consented, on which notice's terms.

    The caller adds what happened after ``withdrawal`` (a receipt: its one event; an export:
    the state and the events behind it). ``terms`` is ``None`` when the notice's terms are
    not known: the record then says so with empty values. ``write_time`` writes times as the
    rest of the caller's document does; ``cite_document`` adds the whole notice's SHA-256.
    """
    notice: dict[str, Any] = {
        "version": notice_version,
        "publishedAt": write_time(terms.published_at) if terms else None,
        "categorySha256": terms.category_sha256 if terms else None}
    if cite_document and terms:
        notice["documentSha256"] = terms.document_sha256
    notice["url"] = notice_url
    return {
        "recordId": record_id,
        "piiPrincipal": dict(principal),
        "notice": notice,
        "language": language,
        "legalBasis": LEGAL_BASIS,
        "purposes": terms.purposes if terms else [],
        "dataCategories": [{"key": category_key, "name": terms.title if terms else category_key,
                            "sensitivity": terms.sensitivity if terms else None,
                            "fields": terms.fields if terms else []}],
        "controller": terms.controller if terms else {},
        "retention": {"days": terms.retention_days if terms else None},
        "recipients": terms.recipients if terms else [],
        "withdrawal": {"how": terms.how_to_withdraw if terms else "", "url": notice_url},
    }
