"""Form fields that several features' forms share."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import SelectMultipleField
from wtforms.validators import ValidationError
from wtforms.widgets import CheckboxInput, ListWidget


class CheckboxesField(SelectMultipleField):
    """Several choices as a list of checkboxes, one label each.

    Not a multi-select box, which is hard to use by keyboard; nothing needs JavaScript.
    With ``validate_choice`` (the default), a value that was not offered gets a plain
    message; without it, the form checks the values itself.
    """

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form: Any) -> None:
        """Accept only the choices offered (a crafted form gets a plain message)."""
        if not self.validate_choice:
            return
        offered = {str(value) for value, *_rest in self.choices or []}
        if any(value not in offered for value in self.data or []):
            raise ValidationError(_l("Choose only from the categories listed."))
