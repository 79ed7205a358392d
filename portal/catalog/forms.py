"""The objection form: a person's reasons against a category that does not rest on consent."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length

from portal.catalog.objections import REASON_MAX_LENGTH


class ObjectionForm(FlaskForm):
    """Object to a category (GDPR Art. 21); the reason goes to the data protection officer."""

    reason = TextAreaField(
        # i18n: label of the text box where a person explains their objection
        _l("Why do you object?"),
        validators=[
            DataRequired(message=_l("Write why you object, so that the data protection "
                                    "officer can weigh your reasons.")),
            Length(max=REASON_MAX_LENGTH,
                   message=_l("Your reason must be 2,000 characters or fewer.")),
        ],
        render_kw={"rows": 6})
    submit = SubmitField(_l("Send my objection"))
