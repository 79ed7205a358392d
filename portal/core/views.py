"""The dashboard, the language switch and the health endpoints."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from portal.auth.views import safe_next
from portal.catalog.notices import current_notice
from portal.core.forms import LocaleForm
from portal.core.overview import list_categories_for
from portal.db import db, ping
from portal.i18n import current_locale

bp = Blueprint("core", __name__)
log = logging.getLogger(__name__)


@bp.get("/")
def dashboard() -> str:
    """Show the signed-in person their overview, or explain the portal to a visitor."""
    if not current_user.is_authenticated:
        return render_template("core/welcome.html")
    entries = list_categories_for(current_user, current_locale())
    return render_template("core/dashboard.html", entries=entries, notice=current_notice(),
                           held_anything=any(entry.held for entry in entries))


@bp.post("/locale")
def set_locale() -> Response:
    """Remember the chosen language (on the person when signed in, else in the session)."""
    form = LocaleForm()
    if not form.validate_on_submit():
        abort(400, description=_("Please choose one of the offered languages."))
    session["locale"] = form.locale.data
    if current_user.is_authenticated:
        current_user.locale = form.locale.data
        db.flush()
    return redirect(safe_next(request.form.get("next")) or url_for(".dashboard"))


@bp.get("/healthz")
def healthz() -> Response:
    """Say that the process is up (for the process supervisor)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Say whether the portal can serve: its database answers (for the load balancer)."""
    try:
        ping()
    except SQLAlchemyError as exc:
        log.error("readiness check failed: database unreachable: %s", type(exc).__name__)
        return jsonify(status="unavailable", checks={"database": "unreachable"}), 503
    return jsonify(status="ok", checks={"database": "ok"}), 200
