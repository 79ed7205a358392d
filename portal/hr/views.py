"""HR's consent records: the filtered list, its exports, and the aggregate figures.

Every route is for the HR and DPO roles only. A view of the list and every export are written
to the audit log before anything is read, naming each person included, so that each sees it
in their access log (:mod:`portal.hr.service` does both; the views word and send them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import format_date, format_datetime, format_percent, pgettext
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.audit.models import AuditRole
from portal.auth.access import role_required
from portal.auth.models import Person, Role
from portal.catalog.notices import current_notice
from portal.consent import wording
from portal.consent.models import ConsentState
from portal.consent.service import category_titles
from portal.hr import service
from portal.hr.forms import EXPORT_FORMATS, ExportForm, RecordFilterForm
from portal.i18n import current_locale
from portal.limits import export_limit, limiter, per_person
from portal.pdf import render_pdf

bp = Blueprint("hr", __name__, url_prefix="/hr")

PER_PAGE = 50
FILTER_FIELDS = ("department", "location", "category", "state", "notice_version",
                 "changed_from", "changed_to", "as_of")


# --- helpers ---------------------------------------------------------------------------------

def _person() -> Person:
    person: Person = current_user._get_current_object()  # type: ignore[attr-defined]
    return person


def _titles() -> dict[str, str]:
    """Return each category's title in the reader's language, as the current notice words it."""
    current = current_notice()
    return category_titles(current.id, current_locale()) if current else {}


def _filter_form(titles: dict[str, str]) -> RecordFilterForm:
    """Return the filter form read from the query string, offering the values that exist."""
    options = service.filter_options()
    form = RecordFilterForm(formdata=request.args)
    form.fill_choices(
        departments=options.departments, locations=options.locations,
        categories=[(key, titles.get(key, key)) for key in options.categories],
        states=[(str(state), wording.state_label(state)) for state in ConsentState],
        notice_versions=options.notice_versions,
        # i18n: first choice of a filter list: do not narrow by this
        anywhere=pgettext("filter", "Any"),
        # i18n: filter value for people whose department or location is not known
        no_value=_("Not recorded"))
    return form


def filter_args(form: RecordFilterForm | None) -> dict[str, str]:
    """Return the filters in use, to carry them into links and the export form.

    From the valid ``form``, days as ISO dates (what a date picker sends), which the page
    reads in every language: a day typed in words in one language would not be read after
    HR switched to another. Without one (filters not valid), the query string as it came,
    so that an export refuses them too rather than dropping them.
    """
    if form is None:
        return {name: value for name in FILTER_FIELDS if (value := request.args.get(name, ""))}
    carried = {}
    for name in FILTER_FIELDS:
        value = form[name].data
        if isinstance(value, dt.date):
            carried[name] = value.isoformat()
        elif value:
            carried[name] = str(value)
    return carried


def _group_name(name: str) -> str:
    return name or _("Not recorded")


def rate_text(rate: service.Rate) -> str:
    """Put a rate into words: a percentage, or why it is not shown."""
    if rate.given is None:
        # i18n: a figure withheld so that nobody's choice can be inferred
        return pgettext("aggregate", "hidden")
    if not rate.size:
        return pgettext("aggregate", "no one")
    return format_percent(rate.given / rate.size, "#,##0%")


def size_text(size: int, small: bool, min_group: int) -> str:
    """Say a group's size, or only that it is smaller than the threshold."""
    if small:
        return _("fewer than %(num)d", num=min_group)
    return str(size)


def _describe_filters(form: RecordFilterForm, titles: dict[str, str]) -> list[list[str]]:
    """Return the filters in use as label and value, as the form shows them."""
    lines = []
    for name in FILTER_FIELDS:
        fieldset = form[name]
        value = fieldset.data
        if value in (None, ""):
            continue
        if hasattr(fieldset, "choices") and fieldset.choices:
            shown = next((choice.label for choice in fieldset.choices
                          if choice.value == value), str(value))
        else:
            shown = format_date(value, "long")
        lines.append([str(fieldset.label.text), str(shown)])
    if not lines:
        lines.append([_("Filters"), _("None: every consent record")])
    return lines


def chart_bars(points: list[service.TrendPoint], *, height: int = 60) -> list[dict[str, Any]]:
    """Lay out one category's trend as bars of an SVG chart (hidden months get no bar)."""
    bars = []
    for index, point in enumerate(points):
        percent = point.rate.percent
        bar_height = round(height * percent / 100) if percent is not None else 0
        bars.append({"x": 30 + index * 20, "y": height - bar_height, "height": bar_height,
                     "hidden": point.rate.given is None,
                     "label": format_date(point.month, "MMM yyyy"),
                     "value": rate_text(point.rate)})
    return bars


def _aggregates(filters: service.RecordFilter) -> dict[str, Any]:
    min_group = int(current_app.config["HR_MIN_GROUP_SIZE"])
    return {"rates": service.department_rates(filters.as_of, min_group),
            "trend": service.consent_trend(filters.as_of, min_group),
            "min_group": min_group}


def _render(filter_form: RecordFilterForm, export_form: ExportForm, titles: dict[str, str],
            valid: bool) -> str:
    """Render the page: the records (audited as viewed) and the figures."""
    page = None
    filters = service.RecordFilter()
    if valid:
        filters = filter_form.to_filter()
        page = service.view_records(filters, page=request.args.get("page", 1, type=int),
                                    per_page=PER_PAGE, reader=_person())
    return render_template(
        "hr/index.html", filter_form=filter_form, export_form=export_form, page=page,
        titles=titles, filters=filters, filter_args=filter_args(filter_form if valid else None),
        as_of_day=filter_form.as_of.data if valid else None,
        export_formats=EXPORT_FORMATS, **_aggregates(filters))


# --- the page --------------------------------------------------------------------------------

@bp.get("/")
@role_required(Role.HR, Role.DPO)
def index() -> str:
    """Show the filtered consent records, the export form and the aggregate figures."""
    titles = _titles()
    filter_form = _filter_form(titles)
    return _render(filter_form, ExportForm(formdata=None), titles, filter_form.validate())


# --- exports ---------------------------------------------------------------------------------

def _too_many_exports() -> str:
    return _("You have made many exports in a short time, so this one was not made. Nothing "
             "was exported or recorded. Please wait a while and try again; if you need more, "
             "ask your privacy team.")


@bp.post("/export")
@limiter.limit(export_limit, key_func=per_person, error_message=_too_many_exports,
               deduct_when=lambda _response: bool(g.get("hr_exported")))
@role_required(Role.HR, Role.DPO)
def export() -> Response | str:
    """Export the filtered records in the chosen format, for the purpose given."""
    titles = _titles()
    filter_form = _filter_form(titles)
    if not filter_form.validate():
        abort(400, description=_("The filters of this export are not valid. Nothing was "
                                 "exported. Please go back to the consent records and filter "
                                 "again."))
    export_form = ExportForm()
    if not export_form.validate_on_submit():
        if "csrf_token" in export_form.errors:
            abort(400, description=_("The form could not be accepted, perhaps because it was "
                                     "open for a long time. Nothing was exported. Please "
                                     "reload the page and try again."))
        return _render(filter_form, export_form, titles, True)
    filters = filter_form.to_filter()
    purpose = str(export_form.purpose.data).strip()
    made = service.export_consent_records(
        filters, chosen=str(export_form.format.data), purpose=purpose, reader=_person(),
        titles=titles, language=current_locale(), notice_url=_notice_urls(titles),
        sheet_title=_("Consent records"),
        print_report=lambda facts: render_pdf("pdf/hr_report.html", **_report_context(
            filter_form, filters, titles, facts, purpose=purpose)))
    # Only an export made counts against the limit, not a form sent back for its purpose.
    g.hr_exported = True
    body = made.body if isinstance(made.body, bytes) else stream_with_context(made.body)
    return Response(body, content_type=made.media_type, headers={
        "Content-Disposition": f'attachment; filename="{made.filename}"',
        "Cache-Control": "no-store"})


def _notice_urls(titles: dict[str, str]) -> Callable[[str], str]:
    """Return where each category's notice is read, as an absolute URL."""
    base_url = str(current_app.config["BASE_URL"])
    urls = {key: base_url + url_for("catalog.show", key=key) for key in titles}
    return lambda key: urls.get(key, base_url + "/categories/" + key)


def _report_context(form: RecordFilterForm, filters: service.RecordFilter,
                    titles: dict[str, str], facts: service.ExportFacts, *,
                    purpose: str) -> dict[str, Any]:
    """Put the summary report into the primitive values its printed form shows."""
    reference, generated = facts.reference, facts.generated_at
    figures = _aggregates(filters)
    rates: service.RateTable = figures["rates"]
    trend: service.Trend = figures["trend"]
    min_group = figures["min_group"]
    counts = service.state_counts(filters)
    decision = service.suppress(counts, min_group)
    states = [[wording.state_label(state),
               _("fewer than %(num)d", num=min_group) if str(state) in decision.small
               else pgettext("aggregate", "hidden") if str(state) in decision.hidden
               else str(counts.get(str(state), 0))]
              for state in ConsentState]
    return {
        "reference": reference,
        "generated_by": _person().display_name,
        "generated_role": _("HR") if service.audit_role(_person()) is AuditRole.HR
        else _("Data protection officer"),
        "generated_local": format_datetime(generated, "full"),
        "generated_utc": generated.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "purpose": purpose,
        "filters": _describe_filters(form, titles),
        "as_of": format_date(filters.as_of - dt.timedelta(days=1), "long")
        if filters.as_of else "",
        "records": facts.records,
        "people": facts.people,
        "states": states,
        "states_hidden": bool(decision.hidden),
        "min_group": min_group,
        "categories": [titles.get(key, key) for key in rates.categories],
        "rate_rows": [[_group_name(row.department),
                       size_text(row.size, row.small, min_group),
                       [rate_text(row.rates[key]) for key in rates.categories],
                       row.hidden and not row.small]
                      for row in rates.rows],
        "rate_total": [size_text(rates.total.size, rates.total.small, min_group),
                       [rate_text(rates.total.rates[key]) for key in rates.categories]],
        "complementary": bool(rates.complementary),
        "months": [format_date(month, "MMM yyyy") for month in trend.months],
        "trend_rows": [[titles.get(key, key), [rate_text(point.rate) for point in points]]
                       for key, points in trend.series.items()],
        "audit_note": _("This export is recorded in the portal's audit log with reference "
                        "%(reference)s, and appears in the access log of each of the "
                        "%(num)d people it includes.", reference=reference, num=facts.people),
    }


@bp.app_template_global()
def hr_rate_text(rate: service.Rate) -> str:
    """Put a rate into words for a page."""
    return rate_text(rate)


@bp.app_template_global()
def hr_size_text(size: int, small: bool, min_group: int) -> str:
    """Say a group's size, or only that it is small, for a page."""
    return size_text(size, small, min_group)


@bp.app_template_global()
def hr_chart_bars(points: list[service.TrendPoint]) -> list[dict[str, Any]]:
    """Lay out a trend chart for a page."""
    return chart_bars(points)


@bp.app_template_global()
def hr_group_name(name: str) -> str:
    """Name a department (or say it is not recorded)."""
    return _group_name(name)


@bp.app_template_global()
def hr_percent(share: float) -> str:
    """Format a share (0 to 1) as a percentage in the reader's language."""
    return format_percent(share, "#,##0%")
