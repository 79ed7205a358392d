"""Forms of the demo identity provider's pages."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, SubmitField
from wtforms.validators import DataRequired


class DemoSignInForm(FlaskForm):
    """Choose the demo person to sign in as; one such form (and button) per person."""

    sub = HiddenField(validators=[DataRequired()])


class DemoSignOutForm(FlaskForm):
    """Confirm a sign-out that came without proof of which sign-in it ends."""

    submit = SubmitField(_l("Sign out of the demo sign-in service"))
