"""Legal deadlines of data-subject requests: GDPR Art. 12(3) calendar-month arithmetic.

A request is answered "within one month of receipt", extendable "by two further months". A
calendar month runs to the same day of the next month; when that month is shorter (31
January), the deadline is its last day (28 or 29 February). Extensions are counted from the
receipt, not from the first deadline, so a clamped day is never carried on (31 January plus
three months is 30 April, not 28 April).
"""

from __future__ import annotations

import datetime as dt
import enum

from dateutil.relativedelta import relativedelta

#: At most this many further months may be added, once (GDPR Art. 12(3)).
MAX_EXTENSION_MONTHS = 2
#: A request due within this many days is marked as due soon in the DPO's queue.
DUE_SOON = dt.timedelta(days=7)


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Return the same day and time ``months`` calendar months later (clamped to month end)."""
    if months < 0:
        raise ValueError("months must not be negative")
    # relativedelta keeps the day of the month and clamps it to the month's last day.
    result: dt.datetime = moment + relativedelta(months=months)
    return result


def due_at(received_at: dt.datetime) -> dt.datetime:
    """Return the deadline of a request received at ``received_at``: one calendar month."""
    return add_months(received_at, 1)


def extended_due_at(received_at: dt.datetime, further_months: int) -> dt.datetime:
    """Return the deadline after an extension by ``further_months`` (1 or 2) months."""
    if not 1 <= further_months <= MAX_EXTENSION_MONTHS:
        raise ValueError(f"an extension is of 1 to {MAX_EXTENSION_MONTHS} further months")
    return add_months(received_at, 1 + further_months)


class Urgency(enum.StrEnum):
    """How close a request is to its deadline, for the DPO's queue."""

    OVERDUE = "overdue"
    DUE_SOON = "due_soon"
    ON_TIME = "on_time"


def urgency(due: dt.datetime, now: dt.datetime) -> Urgency:
    """Say whether a request due at ``due`` is overdue, due within seven days, or on time."""
    if now > due:
        return Urgency.OVERDUE
    if due - now <= DUE_SOON:
        return Urgency.DUE_SOON
    return Urgency.ON_TIME
