"""Forms shown on every page."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, SubmitField

from portal.i18n import LANGUAGES


class LocaleForm(FlaskForm):
    """Choose the language of the portal (works without JavaScript: it has its own button)."""

    locale = SelectField(_l("Language"), choices=[
        SelectChoice(code, name, render_kw={"lang": code}) for code, name in LANGUAGES.items()])
    submit = SubmitField(_l("Change language"))
