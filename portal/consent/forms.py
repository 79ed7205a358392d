"""The consent forms: one button each, carrying the notice version the person read."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField
from wtforms.validators import InputRequired, NumberRange
from wtforms.widgets import HiddenInput


class ConsentChoiceForm(FlaskForm):
    """Give, withdraw, confirm or decline consent for one category."""

    notice_version = IntegerField(widget=HiddenInput(),
                                  validators=[InputRequired(), NumberRange(min=1)])
    next = HiddenField()


class WithdrawAllForm(FlaskForm):
    """Withdraw every consent at once."""

    next = HiddenField()
