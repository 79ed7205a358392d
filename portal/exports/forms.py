"""The download form: which categories and which period of one's own data to download."""

from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SubmitField
from wtforms.validators import Optional, ValidationError

from portal.dates import FIRST_DAY_EXAMPLE, LAST_DAY_EXAMPLE, DayField
from portal.fields import CheckboxesField


class DownloadForm(FlaskForm):
    """Choose what goes into the download; every category and all time unless narrowed."""

    categories = CheckboxesField(
        # i18n: legend of the checkboxes choosing the categories in the data download
        _l("Categories of recorded data"),
        choices=[],
        validate_choice=True)
    # A day from a date picker or typed as the hint writes it, in the page's language.
    date_from = DayField(
        # i18n: first day of the period of recorded data to download
        _l("From (first day)"), validators=[Optional()], example=FIRST_DAY_EXAMPLE,
        render_kw={"autocomplete": "off"})
    date_to = DayField(
        # i18n: last day of the period of recorded data to download
        _l("To (last day)"), validators=[Optional()], example=LAST_DAY_EXAMPLE,
        render_kw={"autocomplete": "off"})
    submit = SubmitField(_l("Download my data"))

    def validate_categories(self, field: CheckboxesField) -> None:
        """Ask for at least one category."""
        if not field.data:
            raise ValidationError(_l("Choose at least one category to download."))

    def validate_date_to(self, field: DayField) -> None:
        """Refuse a period that ends before it starts."""
        start: dt.date | None = self.date_from.data
        if field.data is not None and start is not None and field.data < start:
            raise ValidationError(_l("The last day must be the same as or after the first "
                                     "day."))
