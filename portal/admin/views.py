"""The privacy admin's pages: notice versions, publishing one, and notices to collectors.

The collector pages themselves are in :mod:`portal.admin.collectors`.

Publishing follows the pattern of one decision per page: hand in the catalog, review the
difference and record the approval, check the answers, publish. The draft waits in the
admin's server-side session between the steps; nothing is saved until the last one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.admin.forms import CatalogSourceForm, PublishForm, details_form
from portal.api.models import DeliveryState
from portal.api.webhooks import delivery_overview
from portal.auth.access import role_required
from portal.auth.models import Role
from portal.catalog.changes import (
    NoticeComparison,
    compare_with_current,
    describe_version,
    removed_categories,
)
from portal.catalog.document import CatalogError, parse_catalog
from portal.catalog.notices import find_notice, notice_history
from portal.catalog.publication import PublishRefused, publish_notice
from portal.consent.service import active_consents, expired_consents
from portal.i18n import LANGUAGES, current_locale

# No URL prefix: the page about withdrawal notices keeps its address under /consent/admin/.
bp = Blueprint("admin", __name__)
DRAFT = "notice_draft"


@bp.get("/admin/")
@role_required(Role.ADMIN)
def index() -> str:
    """List the published notice versions with who approved them."""
    return render_template("admin/index.html", versions=notice_history())


# max: numbers are 32-bit in the database; a larger one is a 404, not a crash in the driver.
@bp.get("/admin/notices/<int(max=2147483647):number>")
@role_required(Role.ADMIN)
def notice(number: int) -> str:
    """Show one published version: its approval, what changed, and the consents it ended."""
    version = find_notice(number)
    if version is None:
        abort(404)
    return render_template("admin/notice.html", version=version,
                           changes=describe_version(version, current_locale()),
                           removed=removed_categories(version),
                           expired=expired_consents(version), LANGUAGES=LANGUAGES)


def _catalog_text(form: CatalogSourceForm) -> str | None:
    upload = form.catalog_file.data
    if upload and upload.filename:
        try:
            return str(upload.read().decode("utf-8"))
        except UnicodeDecodeError:
            form.catalog_file.errors = [_("The file must be UTF-8 text (a YAML file).")]
            return None
    return form.catalog_text.data or ""


@bp.route("/admin/notices/new", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def new_notice() -> str | Response | tuple[str, int]:
    """Take the new catalog (upload or paste) and check it before anything else."""
    form = CatalogSourceForm()
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return render_template("admin/new_notice.html", form=form), status
    source = _catalog_text(form)
    field = form.catalog_file if form.catalog_file.data else form.catalog_text
    if source is not None:
        try:
            comparison = compare_with_current(parse_catalog(source))
        except CatalogError as exc:
            field.errors = list(exc.problems)
        else:
            if comparison.document_changed:
                session[DRAFT] = {"source": source, "based_on": comparison.next_number - 1,
                                  "answers": None}
                return redirect(url_for(".review_notice"))
            assert comparison.current is not None
            field.errors = [_("This catalog is the same as notice version %(number)d: there "
                              "is nothing to publish.", number=comparison.current.number)]
    return render_template("admin/new_notice.html", form=form), 400


def _load_draft() -> tuple[dict[str, Any], NoticeComparison] | None:
    """Return the draft and its comparison, or ``None`` when it is gone or out of date."""
    draft = session.get(DRAFT)
    if not draft:
        return None
    try:
        comparison = compare_with_current(parse_catalog(draft["source"]))
    except CatalogError:
        session.pop(DRAFT, None)
        return None
    if comparison.next_number - 1 != draft["based_on"]:
        # Someone published meanwhile: the difference the admin reviewed is no longer true.
        session.pop(DRAFT, None)
        flash(_("Another notice version was published while you worked on this one. Please "
                "hand in your catalog again and review the new difference."), "warning")
        return None
    return draft, comparison


def _materiality_candidates(comparison: NoticeComparison) -> list[str]:
    # Removed categories end their consents anyway; there is nothing to confirm.
    return [change.key for change in comparison.changed if change.new is not None
            and comparison.current is not None]


@bp.route("/admin/notices/new/review", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def review_notice() -> str | Response | tuple[str, int]:
    """Show the difference per category; record approval, summaries and material changes."""
    loaded = _load_draft()
    if loaded is None:
        return redirect(url_for(".new_notice"))
    draft, comparison = loaded
    form = details_form(_materiality_candidates(comparison), draft.get("answers"))
    if form.validate_on_submit():
        session[DRAFT] = {**draft, "answers": {
            name: field.data for name, field in form._fields.items()
            if name not in {"csrf_token", "submit"}}}
        return redirect(url_for(".check_notice"))
    return render_template("admin/review_notice.html", form=form, comparison=comparison,
                           active_consents=active_consents, LANGUAGES=LANGUAGES), \
        400 if form.errors else 200


@bp.route("/admin/notices/new/check", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def check_notice() -> str | Response:
    """Show every answer once more; publishing happens only from here."""
    loaded = _load_draft()
    if loaded is None:
        return redirect(url_for(".new_notice"))
    draft, comparison = loaded
    if not draft.get("answers"):
        return redirect(url_for(".review_notice"))
    details = details_form(_materiality_candidates(comparison), draft["answers"], stored=True)
    form = PublishForm()
    if form.validate_on_submit():
        try:
            version = publish_notice(
                comparison.document, published_by=current_user,
                dpo_sign_off=details.dpo_sign_off.data or "",
                works_council_ref=details.works_council_ref.data or "",
                change_summary=details.change_summary(), material=details.material()).notice
        except PublishRefused as exc:
            flash(str(exc), "error")
            return redirect(url_for(".review_notice"))
        session.pop(DRAFT, None)
        # The page it leads to says so in a confirmation panel, with what happens next.
        return redirect(url_for(".notice", number=version.number, published=1))
    return render_template("admin/check_notice.html", form=form, details=details,
                           comparison=comparison, active_consents=active_consents,
                           LANGUAGES=LANGUAGES)


@bp.get("/consent/admin/webhooks")
@role_required(Role.ADMIN)
def webhook_deliveries() -> str:
    """Show the privacy admin how withdrawal notices to collectors are getting on.

    Deliberately without person or category: the admin learns whether collectors hear of
    withdrawals, not who withdrew what.
    """
    counts, lines = delivery_overview()
    return render_template("admin/webhook_deliveries.html", counts=counts, lines=lines)


@bp.app_template_global()
def webhook_kind_label(kind: str) -> str:
    """Name the kind of a notice sent to collectors."""
    labels = {
        "consent.withdrawn": _l("Consent withdrawn: stop"),
        "consent.expired": _l("Notice changed: pause"),
        "consent.refused": _l("Consent declined: stop"),
        # i18n: a notice telling a collector to delete its own copies after a deletion request
        "data.delete": _l("Deletion request: delete local copies"),
    }
    return str(labels.get(kind, kind))


@bp.app_template_global()
def webhook_state_label(state: DeliveryState) -> str:
    """Name where a notice to a collector stands."""
    labels = {
        # i18n: a notice to a collector that is waiting to be sent or retried
        DeliveryState.PENDING: pgettext("webhook delivery", "Waiting"),
        DeliveryState.DELIVERED: pgettext("webhook delivery", "Delivered"),
        DeliveryState.FAILED: pgettext("webhook delivery", "Failed"),
    }
    return labels[state]


@bp.app_template_global()
def webhook_state_tag(state: DeliveryState) -> str:
    """Return the CSS class of a delivery state's tag."""
    return {DeliveryState.PENDING: "tag-attention", DeliveryState.DELIVERED: "tag-given",
            DeliveryState.FAILED: "tag-withdrawn"}[state]
