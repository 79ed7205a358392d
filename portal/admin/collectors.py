"""The privacy admin's collector pages: register one, revoke its token, see what it missed."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from portal.admin.forms import CollectorForm, RevokeForm
from portal.api.models import Collector
from portal.api.service import (
    CollectorRefused,
    categories_in_force,
    create_collector,
    list_collectors,
    revoke_collector,
    unacknowledged_stops,
)
from portal.auth.access import role_required
from portal.auth.models import Role
from portal.db import db

bp = Blueprint("collectors", __name__, url_prefix="/admin/collectors")


@bp.get("/")
@role_required(Role.ADMIN)
def index() -> str:
    """List the collectors with their state, and the withdrawals they have not acknowledged."""
    return render_template("admin/collectors.html", collectors=list_collectors(),
                           pending=unacknowledged_stops())


@bp.route("/new", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def create() -> str | tuple[str, int]:
    """Register a collector and show its token, once."""
    form = CollectorForm()
    form.categories.choices = [(key, key) for key in categories_in_force()]
    if form.validate_on_submit():
        try:
            collector, token, webhook_secret = create_collector(
                form.name.data or "", form.categories.data or [],
                webhook_url=form.webhook_url.data or "")
        except CollectorRefused as exc:
            for field, message in exc.problems.items():
                form[field].errors = [*form[field].errors, _problem(field, message)]
        else:
            return render_template("admin/collectors_created.html", collector=collector,
                                   token=token, webhook_secret=webhook_secret)
    status = 400 if form.errors else 200
    return render_template("admin/collectors_new.html", form=form), status


def _problem(field: str, message: str) -> str:
    """Word a refusal of the service for the page (its own words are for the command line)."""
    if field == "name":
        return _("Another collector already has this name. Choose another one.") \
            if "taken" in message else _("Enter a name of printable characters.")
    if field == "categories":
        return _("Choose categories from the catalog in force.")
    return _("Enter an address that starts with https:// or http://.")


def _find(collector_id: int) -> Collector:
    collector = db.get(Collector, collector_id)
    if collector is None:
        abort(404)
    return collector


# max: ids are 32-bit in the database; a larger one is a 404, not a crash in the driver.
@bp.route("/<int(max=2147483647):collector_id>/revoke", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def revoke(collector_id: int) -> str | Response:
    """Ask to confirm, then revoke a collector's token at once."""
    collector = _find(collector_id)
    form = RevokeForm()
    if form.validate_on_submit():
        if revoke_collector(collector):
            flash(_("The token of “%(name)s” is revoked. The collector can no longer ask or "
                    "submit anything.", name=collector.name), "success")
        return redirect(url_for(".index"), code=303)
    return render_template("admin/collectors_revoke.html", collector=collector, form=form)
