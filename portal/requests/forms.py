"""Forms of the request pages: the employee's request and cancellation, the DPO's decisions."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    RadioField,
    SelectChoice,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import (
    InputRequired,
    Length,
    Optional,
    ValidationError,
)

from portal.dates import FIRST_DAY_EXAMPLE, LAST_DAY_EXAMPLE, DayField, written_day
from portal.fields import CheckboxesField
from portal.requests.service import MAX_REASON


class DeletionRequestForm(FlaskForm):
    """What the employee asks to be deleted."""

    scope = RadioField(
        # i18n: question on the deletion request form
        _l("What should be deleted?"),
        choices=[SelectChoice("all", _l("Everything collected about me")),
                 SelectChoice("categories", _l("Only the categories I choose")),
                 SelectChoice("range", _l("Everything collected in a period I choose"))],
        validators=[InputRequired(message=_l("Choose what should be deleted"))])
    categories = CheckboxesField(_l("Categories"), choices=[], validate_choice=False)
    # Not Optional(): it would stop the chain for an empty field before validate_since and
    # validate_until, which need the days only when the person chose a period.
    since = DayField(_l("First day"), example=FIRST_DAY_EXAMPLE)
    until = DayField(_l("Last day"), example=LAST_DAY_EXAMPLE)
    reason = TextAreaField(_l("Your reason (optional)"),
                           validators=[Optional(), Length(max=MAX_REASON)])
    withdraw = BooleanField(_l("Also withdraw my consent for these categories now, so that "
                               "nothing more is recorded"))
    submit = SubmitField(_l("Send my deletion request"))

    def validate_categories(self, field: Any) -> None:
        """Require a known category when the person deletes chosen categories."""
        if self.scope.data != "categories":
            return
        known = {choice.value for choice in self.categories.choices}  # type: ignore[union-attr]
        if not field.data:
            raise ValidationError(_l("Choose at least one category"))
        if set(field.data) - known:
            raise ValidationError(_l("Choose categories from the list"))

    def validate_since(self, field: Any) -> None:
        """Require a complete, ordered period when the person deletes a period."""
        if self.scope.data != "range":
            return
        if field.data is None:
            raise ValidationError(_("Enter the first day of the period, such as %(date)s",
                                    date=written_day(FIRST_DAY_EXAMPLE)))

    def validate_until(self, field: Any) -> None:
        """Require the last day to follow the first."""
        if self.scope.data != "range":
            return
        if field.data is None:
            raise ValidationError(_("Enter the last day of the period, such as %(date)s",
                                    date=written_day(LAST_DAY_EXAMPLE)))
        if self.since.data is not None and field.data < self.since.data:
            raise ValidationError(_l("The last day must be on or after the first day"))


class ConfirmForm(FlaskForm):
    """A consequential step with nothing to fill in: one button."""

    submit = SubmitField(_l("Continue"))


class ReasonForm(FlaskForm):
    """A decision that needs the DPO's reason (refusal)."""

    reason = TextAreaField(_l("Reason"), validators=[
        InputRequired(message=_l("Enter the reason the employee will read")),
        Length(max=MAX_REASON)])
    submit = SubmitField(_l("Refuse the request"))


class OptionalReasonForm(FlaskForm):
    """An approval, with an optional note to the employee."""

    reason = TextAreaField(_l("Note to the employee (optional)"),
                           validators=[Optional(), Length(max=MAX_REASON)])
    submit = SubmitField(_l("Approve the deletion"))


class ExtendForm(FlaskForm):
    """One extension of the deadline, with the reason the employee is told."""

    months = RadioField(_l("By how long?"), choices=[SelectChoice("1", _l("One further month")),
                                                     SelectChoice("2", _l("Two further months"))],
                        validators=[InputRequired(message=_l("Choose how long"))])
    reason = TextAreaField(_l("Reason the employee will read"), validators=[
        InputRequired(message=_l("Enter the reason for the extension")),
        Length(max=MAX_REASON)])
    submit = SubmitField(_l("Extend the deadline"))


class ObjectionDecisionForm(FlaskForm):
    """The DPO's answer to an objection."""

    decision = RadioField(
        _l("Your decision"),
        choices=[SelectChoice("upheld", _l("Uphold the objection: the reasons outweigh the "
                                              "company's interest")),
                 SelectChoice("dismissed", _l("Dismiss the objection: the recording "
                                              "continues"))],
        validators=[InputRequired(message=_l("Choose a decision"))])
    reason = TextAreaField(_l("Reason the employee will read"), validators=[
        InputRequired(message=_l("Enter the reason for your decision")),
        Length(max=MAX_REASON)])
    submit = SubmitField(_l("Send the decision"))


def partial_form(categories: list[tuple[str, str]], data: Any = None) -> FlaskForm:
    """Build the "approve in part" form: per category in scope, keep it and say why.

    Built per request because the categories differ; fields are numbered so that their ids
    are safe whatever the category keys are.
    """

    class PartialForm(FlaskForm):
        reason = TextAreaField(_l("Note to the employee (optional)"),
                               validators=[Optional(), Length(max=MAX_REASON)])
        submit = SubmitField(_l("Approve in part"))

        def validate(self, extra_validators: Any = None) -> bool:
            valid = super().validate(extra_validators)
            kept = [index for index in range(len(categories))
                    if self[f"keep_{index}"].data]
            # Said at the first checkbox, so the error summary leads to the choice to make.
            first = self["keep_0"]
            if not kept:
                first.errors = [*first.errors, str(_l("Choose at least one category to keep"))]
                valid = False
            elif len(kept) == len(categories):
                first.errors = [*first.errors, str(_l(
                    "You chose to keep everything: refuse the request instead"))]
                valid = False
            for index in kept:
                field = self[f"reason_{index}"]
                if not (field.data or "").strip():
                    field.errors = [*field.errors, str(_l(
                        "Say why %(name)s is kept", name=categories[index][1]))]
                    valid = False
            return valid

    for index, (_key, title) in enumerate(categories):
        setattr(PartialForm, f"keep_{index}",
                BooleanField(_l("Keep %(name)s", name=title)))
        setattr(PartialForm, f"reason_{index}",
                TextAreaField(_l("Why %(name)s is kept (such as a legal hold)", name=title),
                              validators=[Optional(), Length(max=MAX_REASON)]))
    return PartialForm(formdata=data) if data is not None else PartialForm()
