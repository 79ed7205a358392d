"""The person's access log: who other than themselves accessed their data, and why."""

from __future__ import annotations

from flask import Blueprint, make_response, render_template, request
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from portal.audit import service
from portal.audit.wording import ROLES, WHAT

bp = Blueprint("audit", __name__)


@bp.get("/access-log")
@login_required
def access_log() -> Response:
    """List every access to the person's data by anyone else, newest first, page by page."""
    page = service.access_log(int(current_user.get_id()),
                              page=request.args.get("page", 1, type=int))
    response = make_response(render_template(
        "audit/access_log.html", page=page, what_labels=WHAT, role_labels=ROLES))
    # Names of who read the person's data: no cache may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response
