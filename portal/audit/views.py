"""The person's access log: who other than themselves accessed their data, and why."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, make_response, render_template, request
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from portal.audit import service
from portal.audit.wording import ROLES, WHY, describe_entry
from portal.i18n import current_locale

bp = Blueprint("audit", __name__)


@bp.get("/access-log")
@login_required
def access_log() -> Response:
    """List every access to the person's data by anyone else, newest first, page by page."""
    person_id = int(current_user.get_id())
    page = service.access_log(person_id, page=request.args.get("page", 1, type=int))
    # Each entry in the reader's own terms (a training dataset names their own counts).
    describe = partial(describe_entry, person_id=person_id, language=current_locale())
    response = make_response(render_template(
        "audit/access_log.html", page=page, describe=describe, role_labels=ROLES,
        why=WHY))
    # Names of who read the person's data: no cache may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response
