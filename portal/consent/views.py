"""Consent pages: give and withdraw (POST only), history, receipts, the public key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_date, format_datetime, ngettext
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from portal.auth.models import Person
from portal.auth.views import safe_next
from portal.catalog.models import Category, NoticeVersion
from portal.catalog.notices import find_notice
from portal.consent import receipts, service, wording
from portal.consent.forms import ConsentChoiceForm, WithdrawAllForm
from portal.consent.models import (
    ConsentEvent,
    ConsentMethod,
    ConsentState,
    ConsentStatus,
)
from portal.db import db
from portal.i18n import current_locale
from portal.pdf import render_pdf

bp = Blueprint("consent", __name__)


# --- helpers that own each refusal -----------------------------------------------------------

def _person() -> Person:
    person: Person = current_user._get_current_object()  # type: ignore[attr-defined]
    return person


def _consent_category(key: str) -> Category:
    """Return the category, 404 if unknown, 400 if it is not collected on consent."""
    category = db.get(Category, key)
    if category is None:
        abort(404)
    if not category.needs_consent:
        abort(400, description=_(
            "This category is not collected on the basis of your consent, so there is no "
            "consent to give or withdraw. You can object to it instead, on its page. Nothing "
            "was changed."))
    return category


def _validated(form: ConsentChoiceForm | WithdrawAllForm) -> None:
    if not form.validate_on_submit():
        abort(400, description=_(
            "The form could not be accepted, perhaps because it was open for a long time. "
            "Nothing was changed. Please go back, reload the page and choose again."))


def _title(key: str, notice_version_id: int) -> str:
    # Once per request: a page that shows every category's controls asks for each title, and
    # each ask would read and parse every section of the notice again.
    cache: dict[tuple[int, str], dict[str, str]] = g.setdefault("category_titles", {})
    wanted = (notice_version_id, current_locale())
    if wanted not in cache:
        cache[wanted] = service.category_titles(*wanted)
    return cache[wanted].get(key, key)


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def _answer(category: Category, form: ConsentChoiceForm, event: ConsentEvent | None,
            message: str) -> Response:
    """Confirm a choice: a message and a way back for people, JSON for scripts."""
    if _wants_json():
        status = db.get(ConsentStatus, (_person().id, category.key))
        return jsonify(changed=event is not None,
                       receipt_id=event.receipt_id if event else None,
                       state=str(status.state) if status else None)
    flash(message, "success")
    target = safe_next(form.next.data) or url_for("catalog.show", key=category.key)
    return redirect(target, code=303)


def _seen_version(form: ConsentChoiceForm) -> NoticeVersion:
    seen = find_notice(form.notice_version.data or 0)
    if seen is None:
        abort(400, description=_("The notice version in the form does not exist. Nothing was "
                                 "changed. Please reload the page and choose again."))
    return seen


# --- giving and withdrawing ------------------------------------------------------------------

@bp.post("/consent/<key>/grant")
@login_required
def grant(key: str) -> Response:
    """Give (or, after a material change, confirm) consent under the notice the person read."""
    category = _consent_category(key)
    form = ConsentChoiceForm()
    _validated(form)
    seen = _seen_version(form)
    try:
        event = service.grant_consent(_person(), category, notice_version=seen,
                                      method=ConsentMethod.WEB, actor=_person())
    except service.NoticeChanged:
        if _wants_json():
            return Response(status=409)
        flash(_("The description of this category changed while you were reading it, so your "
                "choice was not recorded. Please read the new text below, then decide again."),
              "warning")
        return redirect(url_for("catalog.show", key=key), code=303)
    title = _title(key, seen.id)
    if event is None:
        message = _("Nothing changed: you had already given consent for %(title)s.",
                    title=title)
    elif event.state is ConsentState.RENEWED:
        message = _("Consent confirmed for %(title)s under notice version %(number)s. "
                    "Recording may start again now. You can withdraw at any time, here or on "
                    "your overview; your receipt is in your consent history.",
                    title=title, number=seen.number)
    else:
        message = _("Consent given for %(title)s. Recording may start now. You can withdraw "
                    "at any time, here or on your overview; your receipt is in your consent "
                    "history.", title=title)
    return _answer(category, form, event, message)


def _say_no(key: str, record: Callable[..., ConsentEvent | None], *,
            unchanged: Callable[[str], str], changed: Callable[[str], str]) -> Response:
    """Record a "no" (withdraw, refuse) for the category ``key`` and confirm it.

    The notice the person saw is recorded when it still exists, but a "no" is never refused
    for an unknown or outdated notice. ``unchanged`` and ``changed`` word the answer, given
    the category's title.
    """
    category = _consent_category(key)
    form = ConsentChoiceForm()
    _validated(form)
    seen = find_notice(form.notice_version.data or 0)
    event = record(_person(), category, notice_version=seen, method=ConsentMethod.WEB,
                   actor=_person())
    title = _title(key, event.notice_version_id if event else (seen.id if seen else 0))
    return _answer(category, form, event, unchanged(title) if event is None else changed(title))


@bp.post("/consent/<key>/withdraw")
@login_required
def withdraw(key: str) -> Response:
    """Withdraw consent for one category."""
    return _say_no(
        key, service.withdraw_consent,
        unchanged=lambda title: _("Nothing changed: consent for %(title)s was not given, so "
                                  "nothing is recorded.", title=title),
        changed=lambda title: _("Consent withdrawn for %(title)s. Recording stops now, and the "
                                "collecting software is told within seconds. Your receipt is "
                                "in your consent history.", title=title))


@bp.post("/consent/<key>/refuse")
@login_required
def refuse(key: str) -> Response:
    """Say no: before ever deciding, or declining after the notice changed materially."""
    return _say_no(
        key, service.refuse_consent,
        unchanged=lambda title: _("Nothing changed for %(title)s.", title=title),
        changed=lambda title: _("You declined %(title)s. Nothing is recorded, and declining has "
                                "no consequence for you. You can change your mind at any time.",
                                title=title))


@bp.post("/consent/withdraw-all")
@login_required
def withdraw_all() -> Response:
    """Withdraw every consent the person has given, in one action."""
    form = WithdrawAllForm()
    _validated(form)
    events = service.withdraw_all(_person(), method=ConsentMethod.WEB, actor=_person())
    if _wants_json():
        return jsonify(changed=bool(events), receipt_ids=[event.receipt_id for event in events])
    if events:
        titles = ", ".join(_title(event.category_key, event.notice_version_id)
                           for event in events)
        flash(ngettext("Consent withdrawn for %(num)d category: %(titles)s. Recording stops "
                       "now, and the collecting software is told within seconds.",
                       "Consent withdrawn for %(num)d categories: %(titles)s. Recording stops "
                       "now, and the collecting software is told within seconds.",
                       len(events), titles=titles), "success")
    else:
        flash(_("Nothing changed: you had not given consent for any category."), "success")
    return redirect(safe_next(form.next.data) or url_for(".history"), code=303)


# --- history and receipts --------------------------------------------------------------------

@bp.get("/consent/history")
@login_required
def history() -> str:
    """List every change of the person's consent, newest first, each with its receipts."""
    page = service.history(_person().id, page=request.args.get("page", 1, type=int))
    titles: dict[int, dict[str, str]] = {}
    for event in page.events:
        if event.notice_version_id not in titles:
            titles[event.notice_version_id] = service.category_titles(
                event.notice_version_id, current_locale())
    states = service.current_states(_person().id)
    given = [key for key, status in states.items() if status.allows_collection]
    return render_template("consent/history.html", page=page, titles=titles,
                           given=given, withdraw_all_form=WithdrawAllForm())


def _own_event(receipt_id: str) -> ConsentEvent:
    """Return the person's own event behind a receipt id; anyone else's is a 404."""
    event = service.find_own_event(_person().id, receipt_id)
    if event is None:
        abort(404)
    return event


def _facts(event: ConsentEvent) -> receipts.ReceiptFacts:
    base_url = str(current_app.config["BASE_URL"])
    facts = receipts.receipt_facts(
        event, _person(), language=current_locale(), base_url=base_url,
        notice_url=base_url + url_for("catalog.show", key=event.category_key))
    if facts is None:
        abort(404)
    return facts


@bp.get("/consent/receipts/<receipt_id>.jws")
@login_required
def receipt_jws(receipt_id: str) -> Response:
    """Download the signed receipt (a compact JWS of the JSON receipt)."""
    event = _own_event(receipt_id)
    now = int(dt.datetime.now(dt.UTC).timestamp())
    token = receipts.sign_receipt(receipts.build_receipt(_facts(event), issued_at=now))
    return Response(token + "\n", mimetype="application/jose", headers={
        "Content-Disposition": f'attachment; filename="consent-receipt-{event.receipt_id}.jws"'})


@bp.get("/consent/receipts/<receipt_id>.pdf")
@login_required
def receipt_pdf(receipt_id: str) -> Response:
    """Download the receipt as a document to keep."""
    event = _own_event(receipt_id)
    facts = _facts(event)
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = receipts.build_receipt(facts, issued_at=now)
    pdf = render_pdf("pdf/consent_receipt.html", **receipt_context(facts, claims))
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="consent-receipt-{event.receipt_id}.pdf"'})


def receipt_context(facts: receipts.ReceiptFacts, claims: dict[str, Any]) -> dict[str, Any]:
    """Put a receipt into the primitive values its printed form shows."""
    event = facts.event
    record = claims["consentRecord"]
    base_url = facts.base_url
    return {
        "reference": event.receipt_id,
        "title": str(facts.texts.get("title") or facts.category.key),
        "summary": str(facts.texts.get("summary", "")),
        "state": str(event.state),
        "state_label": wording.state_label(event.state),
        "allows_collection": event.state.allows_collection,
        "person_name": facts.person.display_name,
        "person_email": facts.person.email,
        "person_subject": facts.person.subject,
        "occurred_local": format_datetime(event.occurred_at, "full"),
        "occurred_utc": event.occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "method": wording.method_label(event.method, event.actor_role),
        "notice_number": event.notice_version.number,
        "notice_published": format_date(event.notice_version.published_at, "long"),
        "notice_url": facts.notice_url,
        "purposes": record["purposes"],
        "recipients": record["recipients"],
        "retention_days": record["retention"]["days"],
        "how_to_withdraw": record["withdrawal"]["how"],
        "controller_name": record["controller"]["name"],
        "controller_contact": record["controller"]["contact"],
        "dpo_contact": record["controller"]["dpoContact"],
        "jwks_url": base_url + receipts.JWKS_PATH,
        "key_id": receipts.key_id(receipts.signing_key()),
        "leaf_hash": event.leaf_hash,
        "chain_hash": event.chain_hash,
        "ledger_position": event.id,
        "issued_local": format_datetime(dt.datetime.fromtimestamp(claims["iat"], dt.UTC),
                                        "medium"),
        "portal_url": base_url,
    }


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """Publish the public key that verifies consent receipts."""
    response = jsonify(receipts.public_jwks())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# --- for templates that include the consent controls -----------------------------------------

@bp.app_template_global()
def consent_category_title(category_key: str, notice_version: NoticeVersion | None) -> str:
    """Return a category's title as the notice version words it, in the reader's language."""
    if notice_version is None:
        return category_key
    return _title(category_key, notice_version.id)


@bp.app_template_global()
def consent_state_label(state: ConsentState | None) -> str:
    """Name a consent state for a page."""
    return wording.state_label(state)


@bp.app_template_global()
def consent_state_tag(state: ConsentState | None) -> str:
    """Return the CSS class of a consent state's tag."""
    return wording.state_tag(state)


@bp.app_template_global()
def consent_method_label(event: ConsentEvent) -> str:
    """Say how and by whom a change was made."""
    return wording.method_label(event.method, event.actor_role)


@bp.app_template_global()
def consent_given_count() -> int:
    """Count the categories the signed-in person currently consents to."""
    if not current_user.is_authenticated:
        return 0
    return sum(status.allows_collection for status in service.current_states(_person().id)
               .values())
