"""Forms of the sign-in area."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SubmitField


class SignOutForm(FlaskForm):
    """Confirm sign-out; a POST, so that no other site can sign a person out by a link."""

    submit = SubmitField(_l("Sign out"))
