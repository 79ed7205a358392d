"""Looking up published notice versions: the one in force, the history, a category's part."""

from __future__ import annotations

from sqlalchemy import select

from portal.catalog.models import CategoryNotice, NoticeVersion
from portal.db import db


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
