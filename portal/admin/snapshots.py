"""The privacy admin's view of training datasets: purposes, counts, states and models, no names."""

from __future__ import annotations

from flask import Blueprint, render_template

from portal.auth.access import role_required
from portal.auth.models import Role
from portal.i18n import current_locale
from portal.training.overview import describe_snapshots

bp = Blueprint("training_admin", __name__, url_prefix="/admin/training")


@bp.get("/snapshots")
@role_required(Role.ADMIN)
def index() -> str:
    """List every training dataset with its counts over everyone and the models trained on it."""
    return render_template("training/admin_snapshots.html",
                           snapshots=describe_snapshots(current_locale()))
