"""Forms of the privacy admin's pages: a new catalog, its approval, publishing; collectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileSize
from wtforms import BooleanField, Field, StringField, SubmitField, TextAreaField, URLField
from wtforms.validators import URL, DataRequired, Length, Optional

from portal.api.service import MAX_NAME_LENGTH
from portal.fields import CheckboxesField
from portal.i18n import LANGUAGES
from portal.webhook_urls import WebhookAddress

#: A catalog of seven categories in two languages is about 60 KB; leave room to grow.
CATALOG_MAX_BYTES = 1024 * 1024


class CatalogSourceForm(FlaskForm):
    """Hand in the new catalog: upload the YAML file or paste it."""

    catalog_file = FileField(
        _l("Upload the catalog file"),
        validators=[FileSize(CATALOG_MAX_BYTES, message=_l("The file must be 1 MB or smaller."))])
    catalog_text = TextAreaField(
        _l("Or paste the catalog"),
        validators=[Optional(), Length(max=CATALOG_MAX_BYTES,
                                       message=_l("The text must be 1 MB or smaller."))],
        render_kw={"rows": 16, "spellcheck": "false", "class": "code-input"})
    submit = SubmitField(_l("Continue"))

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool:
        """Require exactly one of the two ways of handing in the catalog."""
        if not super().validate(extra_validators):
            return False
        has_file = bool(self.catalog_file.data and getattr(self.catalog_file.data, "filename", ""))
        has_text = bool((self.catalog_text.data or "").strip())
        if has_file == has_text:
            self.catalog_file.errors = [
                _l("Upload the catalog file or paste it, not both.") if has_file
                else _l("Upload the catalog file or paste it.")]
            return False
        return True


class NoticeDetailsForm(FlaskForm):
    """Who approved the new version, what changed in plain words, and which changes are material.

    One pair of fields per changed category is added by :func:`details_form`.
    """

    dpo_sign_off = StringField(
        # i18n: the data protection officer's written approval of a notice version
        _l("Data protection officer's sign-off"),
        validators=[DataRequired(message=_l("Enter the data protection officer's sign-off.")),
                    Length(max=255, message=_l("The sign-off must be 255 characters or fewer."))])
    works_council_ref = StringField(
        _l("Works council reference"),
        validators=[Optional(), Length(max=255, message=_l(
            "The reference must be 255 characters or fewer."))])
    submit = SubmitField(_l("Continue"))

    material_keys: list[str] = []

    def material_fields(self, key: str) -> tuple[Field, Field]:
        """Return the checkbox and the reason field of category ``key``."""
        return self[f"material_{key}"], self[f"reason_{key}"]

    def summary_fields(self) -> list[tuple[str, Field]]:
        """Return (language, field) for every change summary."""
        return [(code, self[f"summary_{code}"]) for code in LANGUAGES]

    def material(self) -> dict[str, str]:
        """Return the categories marked material, each with its reason."""
        return {key: (self[f"reason_{key}"].data or "").strip() for key in self.material_keys
                if self[f"material_{key}"].data}

    def change_summary(self) -> dict[str, str]:
        """Return the change summary per language."""
        return {code: (field.data or "").strip() for code, field in self.summary_fields()}

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool:
        """Also require a reason for each category marked material."""
        valid = super().validate(extra_validators)
        for key in self.material_keys:
            checkbox, reason = self.material_fields(key)
            if checkbox.data and not (reason.data or "").strip():
                reason.errors = [*reason.errors, _l(
                    "Say why the change to “%(key)s” is material.", key=key)]
                valid = False
        return valid


def details_form(material_keys: Sequence[str], data: Mapping[str, Any] | None = None, *,
                 stored: bool = False) -> NoticeDetailsForm:
    """Build the details form for a draft whose changed categories are ``material_keys``.

    :param data: answers given before (to show them again).
    :param stored: read only ``data``, never the current request's form data.
    """

    class Form(NoticeDetailsForm):
        pass

    for code, name in LANGUAGES.items():
        setattr(Form, f"summary_{code}", TextAreaField(
            # i18n: %(language)s is a language's own name, e.g. "Deutsch"
            _l("What changed, in %(language)s", language=name),
            validators=[DataRequired(message=_l("Summarise the change in %(language)s.",
                                                language=name)),
                        Length(max=2000, message=_l(
                            "The summary must be 2,000 characters or fewer."))],
            render_kw={"rows": 3, "lang": code}))
    for key in material_keys:
        setattr(Form, f"material_{key}", BooleanField(
            _l("This change is material: people must confirm their consent again")))
        setattr(Form, f"reason_{key}", TextAreaField(
            _l("Why is the change material?"),
            validators=[Length(max=2000, message=_l(
                "The reason must be 2,000 characters or fewer."))],
            render_kw={"rows": 2}))
    Form.material_keys = list(material_keys)
    if stored:
        return Form(formdata=None, data=data or {}, meta={"csrf": False})
    return Form(data=data or {})


class PublishForm(FlaskForm):
    """The last step: publish what the admin checked."""

    submit = SubmitField(_l("Publish this version"))


class CollectorForm(FlaskForm):
    """Register a collector: its name, the categories it records, where it hears of withdrawals.

    The category choices are the catalog in force; the view sets them.
    """

    name = StringField(
        _l("Name"),
        validators=[DataRequired(message=_l("Enter the collector's name.")),
                    Length(max=MAX_NAME_LENGTH, message=_l(
                        "The name must be %(max)d characters or fewer.", max=MAX_NAME_LENGTH))])
    categories = CheckboxesField(
        # The service checks the keys against the catalog in force, with our own words.
        _l("Categories it records"), choices=[], validate_choice=False,
        validators=[DataRequired(message=_l("Choose at least one category."))])
    webhook_url = URLField(
        # i18n: the address the portal calls to tell a collector at once of a withdrawal
        _l("Address for withdrawal notices (optional)"),
        validators=[Optional(), URL(require_tld=False, message=_l(
            "Enter an address that starts with https:// or http://.")),
            Length(max=2048, message=_l("The address must be 2,048 characters or fewer.")),
            WebhookAddress()])
    submit = SubmitField(_l("Register the collector"))


class RevokeForm(FlaskForm):
    """Revoke a collector's token."""

    submit = SubmitField(_l("Revoke the token"))
