"""The download form: which categories and which period of one's own data to download."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectMultipleField, SubmitField
from wtforms.validators import Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget


class CheckboxesField(SelectMultipleField):
    """Several choices as a list of checkboxes (one label each), not a multi-select box."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form: FlaskForm) -> None:
        """Accept only the categories offered (a crafted form gets a plain message)."""
        offered = {str(value) for value, *_rest in self.choices or []}
        if any(value not in offered for value in self.data or []):
            raise ValidationError(_l("Choose only from the categories listed."))


class PlainDateField(DateField):
    """A date field whose message for a date it cannot read is in plain words."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Read the date; say plainly what to enter when it is not a date."""
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(str(_l("Enter a real date, such as 2026-03-27."))) from None


class DownloadForm(FlaskForm):
    """Choose what goes into the download; every category and all time unless narrowed."""

    categories = CheckboxesField(
        # i18n: legend of the checkboxes choosing the categories in the data download
        _l("Categories of recorded data"),
        choices=[],
        validate_choice=True)
    date_from = PlainDateField(
        # i18n: first day of the period of recorded data to download
        _l("From (first day)"), validators=[Optional()],
        render_kw={"autocomplete": "off"})
    date_to = PlainDateField(
        # i18n: last day of the period of recorded data to download
        _l("To (last day)"), validators=[Optional()], render_kw={"autocomplete": "off"})
    submit = SubmitField(_l("Download my data"))

    def validate_categories(self, field: CheckboxesField) -> None:
        """Ask for at least one category."""
        if not field.data:
            raise ValidationError(_l("Choose at least one category to download."))

    def validate_date_to(self, field: PlainDateField) -> None:
        """Refuse a period that ends before it starts."""
        start: dt.date | None = self.date_from.data
        if field.data is not None and start is not None and field.data < start:
            raise ValidationError(_l("The last day must be the same as or after the first "
                                     "day."))
