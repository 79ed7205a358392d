"""Objections to a category that does not rest on consent (GDPR Art. 21): filing and listing."""

from __future__ import annotations

import calendar
import datetime as dt

from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.models import CategoryNotice, LegalBasis, Objection, ObjectionState
from portal.db import db, utcnow
from portal.signals import objection_filed

#: An objection's reason is read by a person, not parsed: enough for a page of reasons.
REASON_MAX_LENGTH = 2000


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
    # While it is open, training may not use the category (a snapshot holding it is outdated).
    objection_filed.send(objection)
    return objection


def list_objections(person: Person, category_key: str | None = None) -> list[Objection]:
    """Return the person's objections (to one category, if given), newest first."""
    query = select(Objection).where(Objection.person_id == person.id)
    if category_key is not None:
        query = query.where(Objection.category_key == category_key)
    return list(db.scalars(query.order_by(Objection.filed_at.desc(), Objection.id.desc())))
