"""GDPR Art. 12(3) deadlines: one calendar month, clamped to the month's end; extensions."""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.requests.deadlines import (
    Urgency,
    add_months,
    due_at,
    extended_due_at,
    urgency,
)

# Hypothesis takes naive bounds and attaches the time zone itself.
moments = st.datetimes(min_value=dt.datetime(1970, 1, 1, tzinfo=dt.UTC).replace(tzinfo=None),
                       max_value=dt.datetime(2400, 1, 1, tzinfo=dt.UTC).replace(tzinfo=None),
                       timezones=st.just(dt.UTC))


def test_31_january_gives_the_last_day_of_february() -> None:
    assert due_at(dt.datetime(2026, 1, 31, 9, tzinfo=dt.UTC)).date() == dt.date(2026, 2, 28)
    assert due_at(dt.datetime(2028, 1, 31, 9, tzinfo=dt.UTC)).date() == dt.date(2028, 2, 29)
    assert due_at(dt.datetime(2026, 12, 15, tzinfo=dt.UTC)).date() == dt.date(2027, 1, 15)


def test_an_extension_counts_from_receipt_not_from_the_clamped_deadline() -> None:
    received = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)
    assert extended_due_at(received, 2).date() == dt.date(2026, 4, 30)
    assert extended_due_at(received, 1).date() == dt.date(2026, 3, 31)
    with pytest.raises(ValueError, match="1 to 2"):
        extended_due_at(received, 3)


@given(moments)
def test_one_month_later_is_the_same_day_or_the_last_of_a_shorter_month(moment: dt.datetime
                                                                        ) -> None:
    due = due_at(moment)
    months = (due.year - moment.year) * 12 + due.month - moment.month
    assert months == 1
    assert due.day == min(moment.day, calendar.monthrange(due.year, due.month)[1])
    assert due.time() == moment.time() and due.tzinfo == moment.tzinfo
    assert dt.timedelta(days=28) <= due - moment <= dt.timedelta(days=31)


@given(moments, moments)
def test_deadlines_keep_the_order_of_receipts(first: dt.datetime, second: dt.datetime) -> None:
    early, late = sorted((first, second))
    assert due_at(early) <= due_at(late)


@given(moments, st.integers(min_value=1, max_value=2))
def test_an_extension_is_later_and_at_most_three_months_after_receipt(
        moment: dt.datetime, months: int) -> None:
    extended = extended_due_at(moment, months)
    assert due_at(moment) < extended <= add_months(moment, 3)
    assert (extended.year - moment.year) * 12 + extended.month - moment.month == 1 + months


@given(moments, st.integers(min_value=0, max_value=2400))
def test_adding_months_never_moves_the_day_forward(moment: dt.datetime, months: int) -> None:
    if moment.year + months // 12 + 1 > 9999:
        return
    later = add_months(moment, months)
    assert later.day <= moment.day and later >= moment


def test_urgency_in_words() -> None:
    due = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
    assert urgency(due, due + dt.timedelta(seconds=1)) is Urgency.OVERDUE
    assert urgency(due, due - dt.timedelta(days=7)) is Urgency.DUE_SOON
    assert urgency(due, due - dt.timedelta(days=8)) is Urgency.ON_TIME
