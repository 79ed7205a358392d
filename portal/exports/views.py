"""A person's own data: what is held (``/my-data``) and the download of all of it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    abort,
    current_app,
    make_response,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from portal.auth.access import fresh_sign_in_age, fresh_sign_in_redirect, signed_in_within
from portal.auth.models import Person
from portal.exports import service
from portal.exports.forms import DownloadForm
from portal.exports.sections import registered_sections
from portal.i18n import current_locale, select_timezone
from portal.limits import download_limit, limiter, per_person

bp = Blueprint("exports", __name__)


def _person() -> Person:
    person: Person = current_user._get_current_object()  # type: ignore[attr-defined]
    return person


def _no_store(response: Response) -> Response:
    # The person's own data: no browser, proxy or shared cache may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/my-data")
@login_required
def my_data() -> Response:
    """Show, per category, what is held about the person and their latest events."""
    categories = service.view_my_data(_person(), current_locale())
    return _no_store(make_response(render_template("exports/my_data.html",
                                                   categories=categories)))


def _download_form(person: Person, *, from_query: bool = False) -> DownloadForm:
    # Flask-WTF reads the posted form by default; a GET reads the query only when asked to.
    form = DownloadForm(formdata=request.args) if from_query else DownloadForm()
    form.categories.choices = service.category_choices(person, current_locale())
    if not from_query and request.method == "GET":
        form.categories.data = [key for key, _title in form.categories.choices]
    return form


def _render_form(form: DownloadForm, status: int = 200) -> Response:
    response = make_response(render_template("exports/download.html", form=form), status)
    return _no_store(response)


@bp.get("/my-data/download")
@login_required
def download_form() -> Response:
    """Offer the download: categories and period to choose, everything chosen at first.

    After a fresh sign-in the choices made before it come back in the query string.
    """
    return _render_form(_download_form(_person(), from_query=bool(request.args)))


def _period(form: DownloadForm) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Turn the chosen days into moments: whole days in the person's time zone, in UTC."""
    zone = ZoneInfo(select_timezone())
    since = until = None
    if form.date_from.data is not None:
        since = dt.datetime.combine(form.date_from.data, dt.time.min, tzinfo=zone)
    if form.date_to.data is not None:
        next_day = dt.datetime.combine(form.date_to.data + dt.timedelta(days=1), dt.time.min,
                                       tzinfo=zone)
        until = next_day - dt.timedelta(microseconds=1)
    return (since.astimezone(dt.UTC) if since else None,
            until.astimezone(dt.UTC) if until else None)


def _rate_limited_message() -> str:
    return _("You have downloaded your data as often as the portal allows for now. Nothing was "
             "downloaded this time. Please try again later; the files you downloaded before "
             "are still complete.")


@bp.post("/my-data/download")
@login_required
@limiter.limit(download_limit, key_func=per_person, error_message=_rate_limited_message,
               # Only a download counts: a form error or a sign-in check is not one.
               deduct_when=lambda response: response.status_code == 200)
def download() -> Response:
    """Stream the person's data as a ZIP, after a fresh sign-in, audited before it starts."""
    person = _person()
    form = _download_form(person)
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400, description=_(
                "The form could not be accepted, perhaps because it was open for a long time. "
                "Nothing was downloaded. Please go back, reload the page and try again."))
        return _render_form(form, 400)
    keys = tuple(key for key, _title in form.categories.choices
                 if key in set(form.categories.data or ()))
    from_date = form.date_from.data.isoformat() if form.date_from.data else ""
    to_date = form.date_to.data.isoformat() if form.date_to.data else ""
    if not signed_in_within(fresh_sign_in_age()):
        # Back to the form after the provider checked the person, with the same choices:
        # a browser cannot repeat a POST after a redirect.
        query: dict[str, object] = {"categories": list(keys)}
        query.update({name: value for name, value in (("date_from", from_date),
                                                      ("date_to", to_date)) if value})
        return fresh_sign_in_redirect(url_for(".download_form", **query))
    since, until = _period(form)
    choice = service.DownloadChoice(keys, since, until, from_date, to_date)
    made = service.download(person, choice, language=current_locale(),
                            sections=registered_sections(current_app))
    response = Response(stream_with_context(made.chunks), mimetype="application/zip",
                        direct_passthrough=True)
    response.headers["Content-Disposition"] = f'attachment; filename="{made.filename}"'
    return _no_store(response)
