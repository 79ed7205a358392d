"""The person's own view of training: which datasets and models hold their records."""

from __future__ import annotations

from flask import Blueprint, Flask, make_response, render_template
from flask_babel import format_number
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from portal.auth.models import Person
from portal.i18n import current_locale
from portal.training import wording
from portal.training.overview import view_my_training

bp = Blueprint("training", __name__)


@bp.get("/my-data/training")
@login_required
def my_training() -> Response:
    """Show which training datasets hold the person's records, what was left out, and models.

    Only the signed-in person's own holdings: there is no way to name someone else.
    """
    person: Person = current_user._get_current_object()  # type: ignore[attr-defined]
    datasets = view_my_training(person, current_locale())
    response = make_response(render_template("training/my_training.html", datasets=datasets))
    # The person's own data: no browser, proxy or shared cache may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def connect_person_views(app: Flask) -> None:
    """Serve the person's training page; add it to their download and their access log."""
    from portal.audit.wording import register_entry_describer
    from portal.training.sections import register_training_section

    app.register_blueprint(bp)
    app.jinja_env.globals.update(training_wording=wording, format_number=format_number)
    register_training_section(app)
    register_entry_describer(app, "training.snapshot", wording.describe_snapshot_read)
