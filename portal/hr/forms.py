"""HR's forms: the record filters (a GET form) and the export request (purpose and format)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectChoice, SelectField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from portal.consent.models import ConsentState
from portal.dates import FIRST_DAY_EXAMPLE, LAST_DAY_EXAMPLE, DayField
from portal.hr.service import NO_VALUE, RecordFilter, end_of_day

EXPORT_FORMATS = {
    # i18n: export format choices on the HR page
    "csv": _l("CSV (spreadsheet, plain text)"),
    "xlsx": _l("Excel workbook (XLSX)"),
    "json": _l("JSON consent records (ISO/IEC TS 27560)"),
    "pdf": _l("PDF summary report (figures, no names)"),
}


class RecordFilterForm(FlaskForm):
    """Narrow the consent records shown and exported; every field is optional.

    Submitted by GET so that a filtered list has an address (bookmark, back button) and
    changes nothing; so it carries no CSRF token.
    """

    class Meta:
        """A GET form that changes nothing needs no CSRF token."""

        csrf = False

    department = SelectField(_l("Department"), choices=[], default="")
    location = SelectField(_l("Location"), choices=[], default="")
    category = SelectField(_l("Category"), choices=[], default="")
    state = SelectField(_l("Consent state"), choices=[], default="")
    notice_version = SelectField(_l("Notice version"), choices=[], default="")
    # A day from a date picker or typed as the hint writes it, in the page's language.
    changed_from = DayField(_l("Changed on or after"), validators=[Optional()],
                            example=FIRST_DAY_EXAMPLE)
    changed_to = DayField(_l("Changed on or before"), validators=[Optional()],
                          example=LAST_DAY_EXAMPLE)
    as_of = DayField(_l("State as of"), validators=[Optional()], example=LAST_DAY_EXAMPLE)

    def fill_choices(self, *, departments: list[str], locations: list[str],
                     categories: list[tuple[str, str]], states: list[tuple[str, str]],
                     notice_versions: list[int], anywhere: str, no_value: str) -> None:
        """Offer the values that exist, each list starting with "any"."""
        def options(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
            return [SelectChoice("", anywhere)] + [SelectChoice(value, str(label))
                                                   for value, label in pairs]

        self.department.choices = options([(value or NO_VALUE, value or no_value)
                                           for value in departments])
        self.location.choices = options([(value or NO_VALUE, value or no_value)
                                         for value in locations])
        self.category.choices = options(categories)
        self.state.choices = options(states)
        self.notice_version.choices = options([(str(number), str(number))
                                               for number in notice_versions])

    def validate_changed_to(self, field: DayField) -> None:
        """Refuse a period that ends before it starts."""
        start = self.changed_from.data
        if field.data is not None and start is not None and field.data < start:
            raise ValidationError(_l("The end of the period must be the same as or after its "
                                     "start."))

    def validate_as_of(self, field: DayField) -> None:
        """Refuse a date in the future: the ledger cannot say what has not happened yet."""
        if field.data is not None and field.data > dt.datetime.now(dt.UTC).date():
            raise ValidationError(_l("The date for the state must be today or earlier."))

    def to_filter(self) -> RecordFilter:
        """Turn the valid form into the filter the service understands."""
        def chosen(value: Any) -> str | None:
            if not value:
                return None
            return "" if value == NO_VALUE else str(value)

        state = chosen(self.state.data)
        version = chosen(self.notice_version.data)
        return RecordFilter(
            department=chosen(self.department.data), location=chosen(self.location.data),
            category=chosen(self.category.data),
            state=ConsentState(state) if state else None,
            notice_version=int(version) if version else None,
            changed_from=self.changed_from.data, changed_to=self.changed_to.data,
            as_of=end_of_day(self.as_of.data) if self.as_of.data else None)


class ExportForm(FlaskForm):
    """Ask what the export is for (written to the audit log) and in which format."""

    purpose = TextAreaField(
        _l("What is this export for?"), filters=[lambda value: value.strip() if value else value],
        validators=[InputRequired(message=_l("Enter what the export is for.")),
                    Length(min=10, max=1000, message=_l(
                        "Describe the purpose in 10 to 1,000 characters."))])
    format = RadioField(_l("Format"), choices=[SelectChoice(value, label)
                                               for value, label in EXPORT_FORMATS.items()],
                        default="csv",
                        validators=[InputRequired(message=_l("Choose a format."))])

    def validate_purpose(self, field: TextAreaField) -> None:
        """Refuse control characters, which would garble the audit log and printed report."""
        if field.data and any(ord(char) < 32 and char not in "\r\n\t" for char in field.data):
            raise ValidationError(_l("The purpose contains characters that cannot be shown."))
