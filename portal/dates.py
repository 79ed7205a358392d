"""Days in forms: read as a date picker sends them or as a person types them, shown by example.

A date picker shows the browser's own format (mm/dd/yyyy even on a German page), so hints and
errors give an example day written out in the page's language ("March 1, 2026", "1. März
2026") rather than a fixed format (2026-03-01) that would contradict what the person sees.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from babel import Locale
from flask_babel import format_date, get_locale
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from wtforms import DateField
from wtforms.validators import StopValidation

#: Example days for the hints and errors of a period's first and last day.
FIRST_DAY_EXAMPLE = dt.date(2026, 3, 1)
LAST_DAY_EXAMPLE = dt.date(2026, 3, 31)
#: Letters after the day that say nothing (1st, 2nd, 1er).
_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th", "er"})
_LONGEST_DAY = 40


def written_day(day: dt.date) -> str:
    """Return a day written out in the page's language, as the examples are."""
    return format_date(day, "long")


def read_day(text: str, locale: Locale) -> dt.date | None:
    """Read a day as a date picker sends it or as a person types it; ``None`` if it is not one.

    A date picker always sends ``2026-03-31``. A browser without one shows a text box, where
    the person writes the day the way the examples do, in the page's language ("31 March
    2026", "31. März 2026", "1er mars 2026"), or in figures in that language's order
    ("3/31/2026" in English, "31.03.2026" in German, "31/03/2026" in French).
    """
    text = text.strip()
    if len(text) > _LONGEST_DAY:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    words = re.findall(r"[0-9]+|[^\W\d_]+", text.casefold())
    numbers = [word for word in words if word.isdigit()]
    names = [word for word in words if not word.isdigit() and word not in _ORDINAL_SUFFIXES]
    if any(len(number) > 4 for number in numbers):
        return None
    if names:
        month = _month_numbers(locale).get(names[0]) if len(names) == 1 else None
        days = [int(number) for number in numbers if len(number) <= 2]
        years = [int(number) for number in numbers if len(number) == 4]
        if month is None or len(days) != 1 or len(years) != 1:
            return None
        day, year = days[0], years[0]
    else:
        if len(numbers) != 3:
            return None
        figures = dict(zip(_figure_order(locale), numbers, strict=True))
        if len(figures["y"]) not in {2, 4}:
            return None
        day, month, year = int(figures["d"]), int(figures["M"]), int(figures["y"])
        if len(figures["y"]) == 2:
            year += 2000  # "31.03.26", as the locale's short date writes this century
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _month_numbers(locale: Locale) -> dict[str, int]:
    """Return the locale's month names, full and short, each with its number."""
    numbers = {}
    for context in ("format", "stand-alone"):
        for width in ("wide", "abbreviated"):
            for number, name in locale.months[context][width].items():
                numbers[name.casefold().rstrip(".")] = number
    return numbers


def _figure_order(locale: Locale) -> str:
    """Return the order of day, month and year in the locale's short date ("Mdy" in English)."""
    pattern = locale.date_formats["short"].pattern
    return "".join(sorted("dMy", key=pattern.index))


class DayField(DateField):
    """One day, from a date picker or typed into a text box (see read_day).

    ``example`` is the day its hint and its error give as an example, written out.
    """

    def __init__(self, *args: Any, example: dt.date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.example = example

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Read the day; say plainly, with an example, what to enter when it is not one."""
        if not valuelist or not str(valuelist[0]).strip():
            self.data = None
            return
        self.data = read_day(str(valuelist[0]), get_locale() or Locale.parse("en"))
        if self.data is None:
            raise ValueError(_("Enter a real date, such as %(date)s",
                               date=written_day(self.example)))

    def _value(self) -> str:
        # A day once read goes back to the page as a date picker writes it (2026-03-31): a
        # picker shows an empty box for text it cannot read, such as "7. März 2026". A day
        # that could not be read goes back as typed, to be corrected.
        if isinstance(self.data, dt.date) and not self.process_errors:
            return self.data.isoformat()
        return str(super()._value())

    def pre_validate(self, form: FlaskForm) -> None:
        """Stop at a day that could not be read: its message says all, a second would not."""
        if self.process_errors:
            raise StopValidation()
