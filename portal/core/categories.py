"""The category pages: what is recorded, why, and the person's choice or right to object.

They show the catalog's texts with the person's consent, objections and holdings, so they live
above those features; the blueprint keeps the name ``catalog`` (its endpoints are the
catalog's pages).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import format_date
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from portal.catalog.forms import ObjectionForm
from portal.catalog.notices import current_notice
from portal.catalog.objections import file_objection
from portal.catalog.wording import (
    example_rows,
    field_rows,
    legal_basis_article,
    legal_basis_name,
    retention_words,
    training_purposes,
)
from portal.consent.reconsent import changes_since_consent
from portal.core.overview import CategoryEntry, describe_category_for, list_categories_for
from portal.i18n import current_locale

bp = Blueprint("catalog", __name__, url_prefix="/categories")
# Wording of the notice's facts, for every template that shows them.
for helper in (legal_basis_name, legal_basis_article, retention_words):
    bp.add_app_template_global(helper)


def get_entry(key: str) -> CategoryEntry:
    """Return the category as the signed-in person sees it.

    :raise 404: no category with ``key`` in the notice in force.
    """
    entry = describe_category_for(current_user, key, current_locale())
    if entry is None:
        abort(404)
    return entry


@bp.get("/")
@login_required
def index() -> str:
    """List every category with its sensitivity, retention, legal basis and the person's state."""
    return render_template("catalog/index.html", notice=current_notice(),
                           entries=list_categories_for(current_user, current_locale()))


def _render_show(entry: CategoryEntry, form: ObjectionForm) -> str:
    return render_template(
        "catalog/show.html", entry=entry, form=form, notice=entry.section.notice_version,
        fields=field_rows(entry.content, entry.local.text), example=example_rows(entry.content),
        training=training_purposes(entry.content, current_locale()),
        reconsent=changes_since_consent(current_user, entry.section, entry.status,
                                        current_locale()))


@bp.get("/<key>")
@login_required
def show(key: str) -> str:
    """Explain one category fully, with the person's consent control or objection form."""
    return _render_show(get_entry(key), ObjectionForm())


@bp.post("/<key>/objections")
@login_required
def object_to(key: str) -> Response | tuple[str, int]:
    """File the person's objection to a category that does not rest on consent."""
    entry = get_entry(key)
    if entry.needs_consent:
        abort(400, description=_("This category rests on your consent: instead of objecting, "
                                 "withdraw your consent on its page."))
    form = ObjectionForm()
    if not form.validate_on_submit():
        return _render_show(entry, form), 400
    objection = file_objection(current_user, entry.section, form.reason.data or "")
    flash(_("Your objection has been received. The data protection officer will answer by "
            "%(date)s.", date=format_date(objection.due_at, "long")), "success")
    return redirect(url_for(".show", key=key, _anchor="objections"))
