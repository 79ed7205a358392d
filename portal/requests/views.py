"""Request pages: the employee's requests (/requests/) and the DPO's queue (/dpo/requests)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import format_date, get_timezone
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from portal.auth.access import (
    fresh_sign_in_age,
    fresh_sign_in_redirect,
    fresh_sign_in_required,
    role_required,
    signed_in_within,
)
from portal.auth.models import Person, Role
from portal.catalog.models import Objection
from portal.catalog.notices import current_notice
from portal.consent.service import category_titles
from portal.db import db
from portal.i18n import current_locale
from portal.pdf import render_pdf
from portal.requests import service, wording
from portal.requests.certificate import certificate_context
from portal.requests.forms import (
    ConfirmForm,
    DeletionRequestForm,
    ExtendForm,
    ObjectionDecisionForm,
    OptionalReasonForm,
    ReasonForm,
    partial_form,
)
from portal.requests.models import DeletionRequest, DeletionScope, RequestEvent, RequestState
from portal.training.overview import describe_training_for

bp = Blueprint("requests", __name__, url_prefix="/requests")
dpo_bp = Blueprint("dpo", __name__, url_prefix="/dpo")

log = logging.getLogger(__name__)


# --- helpers that own each refusal -----------------------------------------------------------

def _person() -> Person:
    person: Person = current_user._get_current_object()  # type: ignore[attr-defined]
    return person


def _titles() -> dict[str, str]:
    notice = current_notice()
    return category_titles(notice.id, current_locale()) if notice else {}


def get_own_request(reference: str) -> DeletionRequest:
    """Return the signed-in person's request.

    :raise 404: no such request, or someone else's (whose existence is not revealed).
    """
    found = service.find_request(reference)
    if found is None or found.person_id != _person().id:
        abort(404)
    return found


def get_request(reference: str) -> DeletionRequest:
    """Return any request, for the DPO.

    :raise 404: no such request.
    """
    found = service.find_request(reference)
    if found is None:
        abort(404)
    return found


def get_objection(objection_id: int) -> Objection:
    """Return an objection, for the DPO.

    :raise 404: no such objection.
    """
    found = db.get(Objection, objection_id)
    if found is None:
        abort(404)
    return found


def _refuse(exc: service.RequestError) -> Response:
    """Answer a step the request does not allow: a clear 409, nothing changed."""
    if isinstance(exc, service.DeletionUnverified):
        # Data was deleted step by step and those steps stay committed: saying "nothing was
        # changed" here would be false.
        log.error("deletion check failed after execution: %s", exc)
        description = _("The deletion ran, but the check that nothing remains found a problem: "
                        "%(why)s. The request stays “%(state)s”. Run it again; if the problem "
                        "remains, ask your administrator.", why=str(exc),
                        state=wording.state_label("executing"))
    elif isinstance(exc, service.TransitionRefused):
        description = _("This step is not possible now: the request is “%(state)s”. Nothing "
                        "was changed.", state=wording.state_label(str(exc.state)))
    else:
        description = _("This step is not possible: %(why)s. Nothing was changed.", why=str(exc))
    abort(409, description=description)


def _day_start(day: dt.date, *, end: bool = False) -> dt.datetime:
    """Turn a day in the person's time zone into its first (or last) moment, in UTC."""
    zone = ZoneInfo(str(get_timezone()))
    moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min, tzinfo=zone)
    return moment.astimezone(dt.UTC)


# --- the employee's pages --------------------------------------------------------------------

@bp.get("/")
@login_required
def index() -> str:
    """List the person's deletion requests and objections; offer a new request."""
    person = _person()
    objections = service.own_objections(person)
    answers = {objection.id: [event for event in service.timeline(objection) if event.reason]
               for objection in objections}
    return render_template("requests/index.html", requests=service.own_requests(person),
                           objections=objections, answers=answers, titles=_titles())


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new() -> Response | str | tuple[str, int]:
    """Ask for the deletion of everything, of chosen categories, or of a period."""
    titles = _titles()
    form = DeletionRequestForm()
    form.categories.choices = [SelectChoice(key, title) for key, title in
                               sorted(titles.items(), key=lambda item: item[1])]
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("requests/new.html", form=form), status
    scope = DeletionScope(form.scope.data)
    since = _day_start(form.since.data) if scope is DeletionScope.RANGE and form.since.data \
        else None
    until = _day_start(form.until.data, end=True) \
        if scope is DeletionScope.RANGE and form.until.data else None
    try:
        created = service.submit_deletion_request(
            _person(), scope=scope, categories=form.categories.data or [], since=since,
            until=until, reason=form.reason.data or "", withdraw=bool(form.withdraw.data))
    except service.RequestError as exc:
        return _refuse(exc)
    return redirect(url_for(".submitted", reference=created.reference), code=303)


@bp.get("/<reference>/submitted")
@login_required
def submitted(reference: str) -> str:
    """Confirm a new request: its reference, its deadline, what happens next."""
    found = get_own_request(reference)
    return render_template("requests/submitted.html", item=found)


@bp.get("/<reference>")
@login_required
def show(reference: str) -> str:
    """Show one of the person's requests: timeline, deadline, decisions, reasons."""
    found = get_own_request(reference)
    events = service.view_own_request(found, person=_person())
    return render_template("requests/show.html", item=found, events=events, titles=_titles())


@bp.route("/<reference>/cancel", methods=["GET", "POST"])
@login_required
def cancel(reference: str) -> Response | str:
    """Cancel the request while it is undecided (one decision on its own page)."""
    found = get_own_request(reference)
    form = ConfirmForm()
    form.submit.label.text = _("Cancel my request")
    if not form.validate_on_submit():
        return render_template("requests/cancel.html", item=found, form=form)
    try:
        service.cancel_request(found, actor=_person())
    except service.RequestError as exc:
        return _refuse(exc)
    flash(_("Your request has been cancelled. Nothing was deleted. You can make a new request "
            "at any time."), "success")
    return redirect(url_for(".show", reference=reference), code=303)


def _certificate(found: DeletionRequest) -> str:
    token = service.own_certificate(found, person=_person())
    if token is None:
        abort(404)
    return token


@bp.get("/<reference>/certificate.jws")
@login_required
def certificate_jws(reference: str) -> Response:
    """Download the signed certificate of deletion."""
    found = get_own_request(reference)
    token = _certificate(found)
    return Response(token + "\n", mimetype="application/jose", headers={
        "Content-Disposition":
            f'attachment; filename="deletion-certificate-{found.certificate_id}.jws"'})


@bp.get("/<reference>/certificate.pdf")
@login_required
def certificate_pdf(reference: str) -> Response:
    """Download the certificate of deletion as a document to keep."""
    from portal.consent.receipts import load_keys, open_signed, public_jwks

    found = get_own_request(reference)
    opened = open_signed(_certificate(found), load_keys(public_jwks()))
    if not opened.valid:
        abort(500)
    pdf = render_pdf("pdf/deletion_certificate.html", **certificate_context(opened.claims))
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition":
            f'attachment; filename="deletion-certificate-{found.certificate_id}.pdf"'})


# --- the DPO's pages -------------------------------------------------------------------------

@dpo_bp.get("/requests")
@role_required(Role.DPO)
def queue() -> str:
    """List open requests and objections by due date, marking overdue and near-due ones."""
    open_items, closed = service.dpo_queue()
    return render_template("dpo/queue.html", open_items=open_items, closed=closed,
                           titles=_titles())


def _dpo_view(found: DeletionRequest, **context: Any) -> str:
    summary = service.review_request(found, dpo=_person())
    return render_template("dpo/show.html", item=found, events=service.timeline(found),
                           summary=summary, titles=_titles(),
                           training=describe_training_for(found.person_id, current_locale()),
                           second_dpo=service.second_dpo_required(),
                           executable=service.executable(found), **context)


@dpo_bp.get("/requests/<reference>", endpoint="show")
@role_required(Role.DPO)
def dpo_show(reference: str) -> str:
    """Show a request's metadata (categories, counts, periods; never content) and actions."""
    return _dpo_view(get_request(reference))


def _decide(form: Any, act: Callable[[], object], done: str | Callable[[], str], *,
            page: Callable[[], str], back: str) -> Response | str | tuple[str, int]:
    """Run one DPO decision: one form, one service call, one message, back to ``back``.

    Until ``form`` is valid, ``page`` is shown (a 400 after a POST); then ``act`` runs, a step
    the service refuses is a 409, and ``done`` is flashed before a 303 to ``back``. ``done`` may
    be a function, for a message that tells what the decision changed.
    """
    if not form.validate_on_submit():
        shown = page()
        return (shown, 400) if request.method == "POST" else shown
    try:
        act()
    except service.RequestError as exc:
        return _refuse(exc)
    flash(done() if callable(done) else done, "success")
    return redirect(back, code=303)


def _decide_request(found: DeletionRequest, form: Any, template: str, act: Callable[[], object],
                    done: str | Callable[[], str],
                    **context: Any) -> Response | str | tuple[str, int]:
    """Run one DPO decision on a request, on its own page ``template``; back to the request."""
    return _decide(form, act, done,
                   page=lambda: render_template(template, item=found, form=form,
                                                titles=_titles(), **context),
                   back=url_for(".show", reference=found.reference))


@dpo_bp.route("/requests/<reference>/approve", methods=["GET", "POST"])
@role_required(Role.DPO)
def approve(reference: str) -> Response | str | tuple[str, int]:
    """Approve the whole request."""
    found = get_request(reference)
    form = OptionalReasonForm()
    return _decide_request(
        found, form, "dpo/approve.html",
        lambda: service.approve_deletion(found, dpo=_person(), reason=form.reason.data or ""),
        _("Approved. The employee has been told."))


@dpo_bp.route("/requests/<reference>/refuse", methods=["GET", "POST"])
@role_required(Role.DPO)
def refuse(reference: str) -> Response | str | tuple[str, int]:
    """Refuse the request with a reason; the employee is told of their right to complain."""
    found = get_request(reference)
    form = ReasonForm()
    return _decide_request(
        found, form, "dpo/refuse.html",
        lambda: service.refuse_request(found, dpo=_person(), reason=form.reason.data or ""),
        _("Refused. The employee has been told your reason and their right to complain."))


@dpo_bp.route("/requests/<reference>/approve-in-part", methods=["GET", "POST"])
@role_required(Role.DPO)
def approve_in_part(reference: str) -> Response | str | tuple[str, int]:
    """Approve all but some categories, each kept with its reason."""
    found = get_request(reference)
    titles = _titles()
    choices = [(key, titles.get(key, key)) for key in service.plan_categories(found)]
    form = partial_form(choices)

    def approve_keeping() -> None:
        kept = {key: form[f"reason_{index}"].data for index, (key, _title) in enumerate(choices)
                if form[f"keep_{index}"].data}
        service.approve_in_part(found, dpo=_person(), kept=kept,
                                reason=form["reason"].data or "")

    return _decide_request(
        found, form, "dpo/approve_in_part.html", approve_keeping,
        _("Approved in part. The employee has been told what is kept and why."), choices=choices)


@dpo_bp.route("/requests/<reference>/extend", methods=["GET", "POST"])
@role_required(Role.DPO)
def extend(reference: str) -> Response | str | tuple[str, int]:
    """Extend the deadline once, by one or two months, with a reason."""
    found = get_request(reference)
    form = ExtendForm()
    return _decide_request(
        found, form, "dpo/extend.html",
        lambda: service.extend_deadline(found, dpo=_person(), months=int(form.months.data),
                                        reason=form.reason.data or ""),
        lambda: _("Deadline extended to %(date)s. The employee has been told why.",
                  date=format_date(found.due_at, "long")))


@dpo_bp.route("/requests/<reference>/confirm", methods=["GET", "POST"])
@role_required(Role.DPO)
def confirm(reference: str) -> Response | str | tuple[str, int]:
    """Confirm another DPO's approval (when a second confirmation is configured)."""
    found = get_request(reference)
    form = ConfirmForm()
    form.submit.label.text = _("Confirm the approval")
    return _decide_request(
        found, form, "dpo/confirm.html", lambda: service.confirm_deletion(found, dpo=_person()),
        _("Confirmed. The deletion can now be carried out."))


@dpo_bp.get("/requests/<reference>/execute")
@role_required(Role.DPO)
@fresh_sign_in_required
def execute(reference: str) -> str:
    """Ask for the execution, after a fresh sign-in (one decision on its own page)."""
    found = get_request(reference)
    form = ConfirmForm()
    form.submit.label.text = _("Delete the data now")
    return render_template("dpo/execute.html", item=found, form=form, titles=_titles(),
                           plan=service.plan_categories(found),
                           executable=service.executable(found))


@dpo_bp.post("/requests/<reference>/execute")
@role_required(Role.DPO)
def execute_now(reference: str) -> Response:
    """Carry out (or resume) the deletion; a stale sign-in is sent to the provider first."""
    found = get_request(reference)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400, description=_("The form could not be accepted, perhaps because it was open "
                                 "for a long time. Nothing was deleted. Please try again."))
    if not signed_in_within(fresh_sign_in_age()):
        # A browser cannot repeat a POST after the provider's redirect: come back to the page.
        return fresh_sign_in_redirect(url_for(".execute", reference=reference))
    try:
        service.execute_deletion(found, actor=_person())
    except service.RequestError as exc:
        return _refuse(exc)
    return redirect(url_for(".executed", reference=reference), code=303)


@dpo_bp.get("/requests/<reference>/executed")
@role_required(Role.DPO)
def executed(reference: str) -> str:
    """Confirm an execution: what was deleted, and what happens next."""
    found = get_request(reference)
    if found.state is not RequestState.EXECUTED:
        abort(404)
    return render_template("dpo/executed.html", item=found, titles=_titles())


def _objection_page(found: Objection, form: ObjectionDecisionForm, extend_form: ExtendForm,
                    events: list[RequestEvent]) -> str:
    return render_template("dpo/objection.html", item=found, form=form, extend_form=extend_form,
                           events=events, titles=_titles(),
                           person=db.get(Person, found.person_id))


# max: ids are 32-bit in the database; a larger one is a 404, not a crash in the driver.
@dpo_bp.route("/objections/<int(max=2147483647):objection_id>", methods=["GET", "POST"])
@role_required(Role.DPO)
def objection(objection_id: int) -> Response | str | tuple[str, int]:
    """Show an objection (the person's reason and the category) and decide on it."""
    found = get_objection(objection_id)
    form = ObjectionDecisionForm()
    return _decide(
        form,
        lambda: service.decide_objection(found, dpo=_person(),
                                         upheld=form.decision.data == "upheld",
                                         reason=form.reason.data or ""),
        _("Decision sent. The employee has been told your reason."),
        page=lambda: _objection_page(found, form, ExtendForm(prefix="extend"),
                                     service.review_objection(found, dpo=_person())),
        back=url_for(".objection", objection_id=objection_id))


@dpo_bp.post("/objections/<int(max=2147483647):objection_id>/extend")
@role_required(Role.DPO)
def extend_objection(objection_id: int) -> Response | str | tuple[str, int]:
    """Extend the answer to an objection once, with a reason."""
    found = get_objection(objection_id)
    extend_form = ExtendForm(prefix="extend")
    return _decide(
        extend_form,
        lambda: service.extend_deadline(found, dpo=_person(), months=int(extend_form.months.data),
                                        reason=extend_form.reason.data or ""),
        _("Deadline extended. The employee has been told why."),
        page=lambda: _objection_page(found, ObjectionDecisionForm(), extend_form,
                                     service.timeline(found)),
        back=url_for(".objection", objection_id=objection_id))


# --- for the templates -----------------------------------------------------------------------

for helper in (wording.state_label, wording.state_tag, wording.event_label,
               wording.capacity_label, wording.urgency_label, wording.urgency_tag,
               wording.scope_label):
    bp.add_app_template_global(helper, "request_" + helper.__name__)
