"""What changed in a category since the person last agreed, shown before they decide again."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.changes import DiffLine, describe_changes
from portal.catalog.document import FALLBACK_LANGUAGE
from portal.catalog.models import CategoryNotice, NoticeVersion
from portal.consent.models import ConsentEvent, ConsentState, ConsentStatus
from portal.db import db


@dataclass(frozen=True)
class Reconsent:
    """What changed in a category since the person last agreed, for them to confirm."""

    agreed_under: NoticeVersion
    current: NoticeVersion
    summary: str
    lines: list[DiffLine]


def changes_since_consent(person: Person, section: CategoryNotice,
                          status: ConsentStatus | None, language: str) -> Reconsent | None:
    """Return the difference between the text the person agreed to and ``section`` (in force).

    Only while their consent (``status``) is expired by a material change; ``None`` otherwise.
    """
    if status is None or status.state is not ConsentState.EXPIRED:
        return None
    # The ledger knows the version of the last "yes"; the expiry event names the new version.
    agreed = db.scalar(
        select(ConsentEvent)
        .where(ConsentEvent.person_id == person.id,
               ConsentEvent.category_key == section.category_key,
               ConsentEvent.state.in_([ConsentState.GIVEN, ConsentState.RENEWED]))
        .order_by(ConsentEvent.id.desc()).limit(1))
    if agreed is None:
        return None
    before = db.get(CategoryNotice, (agreed.notice_version_id, section.category_key))
    if before is None:
        return None
    expiring = status.notice_version
    current = section.notice_version
    summary = expiring.change_summary.get(language) \
        or expiring.change_summary.get(FALLBACK_LANGUAGE, "")
    return Reconsent(agreed.notice_version, current, summary,
                     describe_changes(before.content, section.content, language))
