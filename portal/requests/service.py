"""Deletion requests and objections: submitting, deciding, executing and proving a deletion.

The moves of a deletion request (anything else raises :class:`TransitionRefused`)::

    received ──extend (once)──> extended
    received / extended ──> approved | approved_in_part | refused      (the DPO)
    received / extended ──> cancelled                                   (the employee)
    approved / approved_in_part ──> confirmed       (a second DPO, if DELETION_SECOND_DPO)
    approved / approved_in_part / confirmed ──> executing ──> executed

Every function but :func:`execute_deletion` only flushes; the request or command commits
once. Execution commits after each category (see its docstring), so that it survives a crash
and a rerun finishes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from sqlalchemy import select

from portal.api import webhooks
from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record
from portal.auth.models import Person, Role
from portal.catalog.models import Category, Objection, ObjectionState
from portal.consent.models import ConsentMethod
from portal.consent.service import current_states, withdraw_consent
from portal.db import commit, db, utcnow
from portal.mail import queue_mail
from portal.requests import deadlines
from portal.requests.certificate import DeletionCheck, issue_certificate
from portal.requests.models import (
    ActorCapacity,
    DeletionRequest,
    DeletionScope,
    DeletionStep,
    EventKind,
    KeptItem,
    RequestEvent,
    RequestState,
)
from portal.vault import erasure as vault

#: Reasons are read by people: enough for a page, short enough for a mail.
MAX_REASON = 2000


class RequestError(Exception):
    """A request cannot be made or moved as asked; nothing was changed."""


class InvalidRequest(RequestError):
    """The request itself is malformed (unknown category, empty period, overlong reason)."""


class DeletionUnverified(RequestError):
    """The deletion ran, but the check afterwards found something left: not "nothing changed"."""


class TransitionRefused(RequestError):
    """The request's state does not allow this step (e.g. executing before approval)."""

    def __init__(self, request: DeletionRequest | Objection, action: str) -> None:
        super().__init__(f"request {_reference(request)} is {request.state}: it cannot be "
                         f"{action} now")
        self.state = request.state
        self.action = action


def _reference(request: DeletionRequest | Objection) -> str:
    return request.reference if isinstance(request, DeletionRequest) else f"objection-{request.id}"


# --- reading ---------------------------------------------------------------------------------

def find_request(reference: str) -> DeletionRequest | None:
    """Return the deletion request with ``reference``."""
    return db.scalar(select(DeletionRequest).where(DeletionRequest.reference == reference))


def own_requests(person: Person) -> list[DeletionRequest]:
    """Return the person's deletion requests, newest first."""
    return list(db.scalars(select(DeletionRequest).where(DeletionRequest.person_id == person.id)
                           .order_by(DeletionRequest.received_at.desc(),
                                     DeletionRequest.id.desc())))


def timeline(request: DeletionRequest | Objection) -> list[RequestEvent]:
    """Return what happened to a request or an objection, oldest first."""
    column = (RequestEvent.request_id if isinstance(request, DeletionRequest)
              else RequestEvent.objection_id)
    return list(db.scalars(select(RequestEvent).where(column == request.id)
                           .order_by(RequestEvent.occurred_at, RequestEvent.id)))


@dataclass(frozen=True)
class QueueItem:
    """One line of the DPO's queue: a deletion request or an objection."""

    kind: str
    reference: str
    person: Person
    state: str
    received_at: dt.datetime
    due_at: dt.datetime
    urgency: deadlines.Urgency | None
    request: DeletionRequest | None = None
    objection: Objection | None = None


def dpo_queue(now: dt.datetime | None = None) -> tuple[list[QueueItem], list[QueueItem]]:
    """Return the open requests and objections by due date, then the finished ones (newest)."""
    now = now or utcnow()
    open_items: list[QueueItem] = []
    closed: list[QueueItem] = []
    for request in db.scalars(select(DeletionRequest)):
        finished = request.state.finished
        item = QueueItem("deletion", request.reference, request.person, str(request.state),
                         request.received_at, request.due_at,
                         None if finished or not request.state.undecided
                         else deadlines.urgency(request.due_at, now), request=request)
        (closed if finished else open_items).append(item)
    for objection in db.scalars(select(Objection)):
        person = db.get(Person, objection.person_id)
        assert person is not None
        undecided = objection.state in {ObjectionState.RECEIVED, ObjectionState.EXTENDED}
        item = QueueItem("objection", str(objection.id), person, str(objection.state),
                         objection.filed_at, objection.due_at,
                         deadlines.urgency(objection.due_at, now) if undecided else None,
                         objection=objection)
        (open_items if undecided else closed).append(item)
    open_items.sort(key=lambda item: (item.due_at, item.reference))
    closed.sort(key=lambda item: item.received_at, reverse=True)
    return open_items, closed


def plan_categories(request: DeletionRequest) -> list[str]:
    """Return the categories an execution deletes from: the scope, less what is kept."""
    kept = {item.category_key for item in request.kept_items}
    if request.scope is DeletionScope.CATEGORIES:
        wanted = set(request.categories)
    else:
        wanted = vault.categories_with_data(request.person_id)
    return sorted(wanted - kept)


def scope_summary(request: DeletionRequest) -> dict[str, vault.ScopeCount]:
    """Count what lies in the request's scope now, per category: metadata only, for the DPO."""
    if request.scope is DeletionScope.CATEGORIES:
        keys = sorted(set(request.categories))
    else:
        keys = sorted(vault.categories_with_data(request.person_id))
    return {key: vault.count_in_scope(request.person_id, key, since=request.since,
                                      until=request.until) for key in keys}


def view_own_request(request: DeletionRequest, *, person: Person) -> list[RequestEvent]:
    """Return the timeline of ``person``'s own request, audited as their read of it."""
    record("requests.view", action=AuditAction.READ, role=AuditRole.SUBJECT,
           subjects=request.person_id, actor=person, detail={"request": request.reference})
    return timeline(request)


def own_certificate(request: DeletionRequest, *, person: Person) -> str | None:
    """Return the signed certificate of ``person``'s own request, audited as downloaded.

    ``None`` (and nothing audited) while the request has none.
    """
    if not request.certificate_jws:
        return None
    record("requests.certificate", action=AuditAction.DOWNLOAD, role=AuditRole.SUBJECT,
           subjects=request.person_id, actor=person,
           detail={"request": request.reference, "certificate": request.certificate_id})
    return request.certificate_jws


def review_request(request: DeletionRequest, *, dpo: Person) -> dict[str, vault.ScopeCount]:
    """Return what lies in the request's scope (see :func:`scope_summary`), audited as read."""
    summary = scope_summary(request)
    record("requests.view", action=AuditAction.READ, role=AuditRole.DPO,
           subjects=request.person_id, actor=dpo,
           detail={"request": request.reference, "categories": len(summary)})
    return summary


def review_objection(objection: Objection, *, dpo: Person) -> list[RequestEvent]:
    """Return the timeline of an objection, audited as the DPO's read of it."""
    record("requests.view", action=AuditAction.READ, role=AuditRole.DPO,
           subjects=objection.person_id, actor=dpo,
           detail={"request": _reference(objection)})
    return timeline(objection)


# --- helpers that every move uses ------------------------------------------------------------

def _capacity(request: DeletionRequest | Objection, actor: Person | None) -> ActorCapacity:
    if actor is None:
        return ActorCapacity.OPERATOR
    if actor.id == request.person_id:
        return ActorCapacity.EMPLOYEE
    return ActorCapacity.DPO


def _event(request: DeletionRequest | Objection, kind: EventKind, actor: Person | None, *,
           actor_name: str = "", reason: str = "", detail: dict[str, Any] | None = None,
           now: dt.datetime | None = None,
           capacity: ActorCapacity | None = None) -> RequestEvent:
    event = RequestEvent(
        request_id=request.id if isinstance(request, DeletionRequest) else None,
        objection_id=request.id if isinstance(request, Objection) else None,
        kind=kind, occurred_at=now or utcnow(), actor_id=actor.id if actor else None,
        actor_name=(actor.display_name if actor else actor_name or "portal")[:255],
        actor_capacity=capacity or _capacity(request, actor), reason=reason,
        detail=detail or {})
    db.add(event)
    db.flush()
    return event


def _audit(request: DeletionRequest | Objection, what: str, action: AuditAction,
           actor: Person | None, *, actor_name: str = "", purpose: str = "",
           detail: Mapping[str, str | int | None] | None = None) -> None:
    if actor is None:
        role = AuditRole.OPERATOR
    elif actor.id == request.person_id:
        role = AuditRole.SUBJECT
    else:
        role = AuditRole.DPO
    record(what, action=action, role=role, subjects=request.person_id, actor=actor,
           actor_name=actor_name or None, purpose=purpose[:1000],
           detail={"request": _reference(request), **(detail or {})})


def _clean_reason(reason: str, *, required: bool, what: str = "reason") -> str:
    reason = (reason or "").strip()
    if required and not reason:
        raise InvalidRequest(f"a {what} is required")
    if len(reason) > MAX_REASON:
        raise InvalidRequest(f"the {what} is longer than {MAX_REASON} characters")
    return reason


def _require_dpo(person: Person) -> None:
    if not person.has_role(Role.DPO):
        raise RequestError("only a data protection officer may decide on requests")


def _require_not_subject(request: DeletionRequest | Objection, dpo: Person) -> None:
    # A DPO deciding on their own request would be judge in their own cause.
    if dpo.id == request.person_id:
        raise RequestError("a data protection officer cannot decide on their own request; "
                           "another DPO must")


#: Subjects of the mail sent at each step (the employee's and the DPO team's).
SUBJECTS: dict[EventKind, LazyString] = {
    # i18n: subject of an e-mail about a deletion request
    EventKind.SUBMITTED: _l("Your deletion request has been received"),
    EventKind.EXTENDED: _l("More time is needed for your deletion request"),
    EventKind.APPROVED: _l("Your deletion request has been approved"),
    EventKind.APPROVED_IN_PART: _l("Your deletion request has been approved in part"),
    EventKind.REFUSED: _l("Your deletion request has been refused"),
    EventKind.CONFIRMED: _l("Your deletion has been confirmed by a second officer"),
    EventKind.EXECUTED: _l("Your data has been deleted: your certificate is ready"),
    EventKind.CANCELLED: _l("Your deletion request has been cancelled"),
    EventKind.OBJECTION_UPHELD: _l("Your objection has been upheld"),
    EventKind.OBJECTION_DISMISSED: _l("Your objection has been answered"),
}
TEAM_SUBJECTS: dict[EventKind, LazyString] = {
    # i18n: subject of an e-mail to the data protection team
    EventKind.SUBMITTED: _l("New deletion request"),
    EventKind.EXTENDED: _l("Deletion request extended"),
    EventKind.APPROVED: _l("Deletion request approved"),
    EventKind.APPROVED_IN_PART: _l("Deletion request approved in part"),
    EventKind.REFUSED: _l("Deletion request refused"),
    EventKind.CONFIRMED: _l("Deletion request confirmed"),
    EventKind.EXECUTED: _l("Deletion request executed"),
    EventKind.CANCELLED: _l("Deletion request cancelled by the employee"),
    EventKind.OBJECTION_UPHELD: _l("Objection upheld"),
    EventKind.OBJECTION_DISMISSED: _l("Objection dismissed"),
}


def _notify(request: DeletionRequest | Objection, event: RequestEvent) -> None:
    """Queue the mail of a step to the employee and to the DPO team (same transaction)."""
    base_url = str(current_app.config["BASE_URL"])
    person = db.get(Person, request.person_id)
    assert person is not None
    is_request = isinstance(request, DeletionRequest)
    context = {
        "kind": str(event.kind), "reason": event.reason, "due_at": request.due_at,
        "reference": _reference(request), "is_request": is_request,
        "url": (f"{base_url}/requests/{request.reference}" if is_request
                else f"{base_url}/requests/"),
        "team_url": (f"{base_url}/dpo/requests/{request.reference}" if is_request
                     else f"{base_url}/dpo/objections/{request.id}"),
    }
    queue_mail(person.email, locale=person.locale, subject=SUBJECTS[event.kind],
               template="mail/request_employee.txt", name=person.display_name, **context)
    queue_mail(str(current_app.config["DPO_TEAM_EMAIL"]), locale=None,
               subject=TEAM_SUBJECTS[event.kind], template="mail/request_team.txt", **context)


# --- the employee's moves --------------------------------------------------------------------

def submit_deletion_request(person: Person, *, scope: DeletionScope,
                            categories: Sequence[str] = (), since: dt.datetime | None = None,
                            until: dt.datetime | None = None, reason: str = "",
                            withdraw: bool = False,
                            now: dt.datetime | None = None) -> DeletionRequest:
    """Record the person's request to delete their data; withdraw consent at once if asked.

    :raise InvalidRequest: no or unknown categories, an incomplete or reversed period.
    """
    now = now or utcnow()
    reason = _clean_reason(reason, required=False)
    chosen = sorted(set(categories))
    if scope is DeletionScope.CATEGORIES:
        if not chosen:
            raise InvalidRequest("choose at least one category")
        unknown = [key for key in chosen if db.get(Category, key) is None]
        if unknown:
            raise InvalidRequest("unknown categories: " + ", ".join(unknown))
    else:
        chosen = []
    if scope is DeletionScope.RANGE:
        if since is None or until is None:
            raise InvalidRequest("a period needs a first and a last day")
        if since > until:
            raise InvalidRequest("the period ends before it starts")
    else:
        since = until = None
    request = DeletionRequest(person_id=person.id, scope=scope, categories=chosen, since=since,
                              until=until, reason=reason, withdraw_consent=withdraw,
                              state=RequestState.RECEIVED, received_at=now,
                              due_at=deadlines.due_at(now))
    db.add(request)
    db.flush()
    _audit(request, "requests.submit", AuditAction.CHANGE, person,
           detail={"scope": str(scope), "categories": ",".join(chosen)})
    event = _event(request, EventKind.SUBMITTED, person, now=now,
                   detail={"scope": str(scope), "categories": chosen})
    if withdraw:
        withdrawn = _withdraw(request, person, ConsentMethod.WEB)
        if withdrawn:
            _event(request, EventKind.CONSENT_WITHDRAWN, person, detail={"categories": withdrawn})
    _notify(request, event)
    return request


def _withdraw(request: DeletionRequest, actor: Person | None,
              method: ConsentMethod, only: str | None = None) -> list[str]:
    """Withdraw the person's current consents in the request's scope; return the keys."""
    person = db.get(Person, request.person_id)
    assert person is not None
    states = current_states(person.id)
    keys = [only] if only else (request.categories if request.scope is DeletionScope.CATEGORIES
                                else sorted(states))
    withdrawn = []
    for key in keys:
        status = states.get(key)
        category = db.get(Category, key)
        if status is None or not status.allows_collection or category is None \
                or not category.needs_consent:
            continue
        if withdraw_consent(person, category, method=method, actor=actor) is not None:
            withdrawn.append(key)
    return withdrawn


def cancel_request(request: DeletionRequest, *, actor: Person) -> DeletionRequest:
    """Cancel the employee's own request while it is undecided.

    :raise TransitionRefused: the DPO has already decided.
    """
    if actor.id != request.person_id:
        raise RequestError("only the person who made a request may cancel it")
    if not request.state.undecided:
        raise TransitionRefused(request, "cancelled")
    request.state = RequestState.CANCELLED
    db.flush()
    _audit(request, "requests.cancel", AuditAction.CHANGE, actor)
    _notify(request, _event(request, EventKind.CANCELLED, actor))
    return request


# --- the DPO's decisions ---------------------------------------------------------------------

def _decidable(request: DeletionRequest, dpo: Person, action: str) -> None:
    _require_dpo(dpo)
    _require_not_subject(request, dpo)
    if not request.state.undecided:
        raise TransitionRefused(request, action)


def extend_deadline(request: DeletionRequest | Objection, *, dpo: Person, months: int,
                    reason: str, now: dt.datetime | None = None) -> DeletionRequest | Objection:
    """Extend the deadline once by 1 or 2 further months, telling the employee why.

    GDPR Art. 12(3) allows it only within the first month, so it is refused after the
    first deadline.
    """
    now = now or utcnow()
    reason = _clean_reason(reason, required=True)
    _require_dpo(dpo)
    _require_not_subject(request, dpo)
    received = request.received_at if isinstance(request, DeletionRequest) else request.filed_at
    first_due = deadlines.due_at(received)
    if isinstance(request, DeletionRequest):
        if request.state is not RequestState.RECEIVED:
            raise TransitionRefused(request, "extended (only once, and only before a decision)")
    elif request.state is not ObjectionState.RECEIVED:
        raise TransitionRefused(request, "extended (only once, and only before a decision)")
    if now > first_due:
        raise TransitionRefused(request, "extended after its first deadline has passed")
    new_due = deadlines.extended_due_at(received, months)
    request.due_at = new_due
    if isinstance(request, DeletionRequest):
        request.state = RequestState.EXTENDED
        request.extension_months, request.extension_reason = months, reason
    else:
        request.state = ObjectionState.EXTENDED
    db.flush()
    _audit(request, "requests.decide", AuditAction.CHANGE, dpo, purpose=reason,
           detail={"decision": "extended", "months": months})
    _notify(request, _event(request, EventKind.EXTENDED, dpo, reason=reason, now=now,
                            detail={"months": months, "due_at": new_due.isoformat()}))
    return request


def _record_decision(request: DeletionRequest, state: RequestState, kind: EventKind, *,
                     dpo: Person, reason: str, audit: Mapping[str, str] | None = None,
                     told: dict[str, Any] | None = None) -> DeletionRequest:
    """Record the DPO's decision on a request, audit it and tell the employee.

    ``audit`` adds to the audit entry's detail, ``told`` is the detail of the employee's event.
    """
    request.state = state
    request.decided_at, request.decided_by_id, request.decision_reason = utcnow(), dpo.id, reason
    db.flush()
    _audit(request, "requests.decide", AuditAction.CHANGE, dpo, purpose=reason,
           detail={"decision": str(state), **(audit or {})})
    _notify(request, _event(request, kind, dpo, reason=reason, detail=told))
    return request


def approve_deletion(request: DeletionRequest, *, dpo: Person,
                     reason: str = "") -> DeletionRequest:
    """Approve the whole request."""
    _decidable(request, dpo, "approved")
    return _record_decision(request, RequestState.APPROVED, EventKind.APPROVED, dpo=dpo,
                            reason=_clean_reason(reason, required=False))


def refuse_request(request: DeletionRequest, *, dpo: Person, reason: str) -> DeletionRequest:
    """Refuse the request; the reason and the right to complain are told to the employee."""
    _decidable(request, dpo, "refused")
    return _record_decision(request, RequestState.REFUSED, EventKind.REFUSED, dpo=dpo,
                            reason=_clean_reason(reason, required=True))


def approve_in_part(request: DeletionRequest, *, dpo: Person, kept: Mapping[str, str],
                    reason: str = "") -> DeletionRequest:
    """Approve all but the ``kept`` categories, each with its reason (such as a legal hold).

    :raise InvalidRequest: nothing kept, everything kept, a category outside the scope, or a
        kept category without a reason.
    """
    _decidable(request, dpo, "approved in part")
    reason = _clean_reason(reason, required=False)
    in_scope = set(plan_categories(request))
    if not kept:
        raise InvalidRequest("name at least one category to keep, or approve the whole request")
    outside = sorted(set(kept) - in_scope)
    if outside:
        raise InvalidRequest("not in the request's scope: " + ", ".join(outside))
    if set(kept) == in_scope:
        raise InvalidRequest("everything would be kept: refuse the request instead, with reasons")
    reasons = {key: _clean_reason(text, required=True, what=f"reason for keeping {key}")
               for key, text in kept.items()}
    for key, text in sorted(reasons.items()):
        db.add(KeptItem(request_id=request.id, category_key=key, reason=text))
    db.flush()
    db.refresh(request, ["kept_items"])
    return _record_decision(request, RequestState.APPROVED_IN_PART, EventKind.APPROVED_IN_PART,
                            dpo=dpo, reason=reason, audit={"kept": ",".join(sorted(reasons))},
                            told={"kept": [{"category": key, "reason": text}
                                           for key, text in sorted(reasons.items())]})


def second_dpo_required() -> bool:
    """Say whether a second DPO must confirm an approval before execution."""
    return bool(current_app.config["DELETION_SECOND_DPO"])


def confirm_deletion(request: DeletionRequest, *, dpo: Person) -> DeletionRequest:
    """Record a second DPO's confirmation of an approval (when configured).

    :raise TransitionRefused: not approved, or no second confirmation is configured.
    :raise RequestError: the confirming DPO is the one who approved.
    """
    _require_dpo(dpo)
    _require_not_subject(request, dpo)
    if not second_dpo_required():
        raise TransitionRefused(request, "confirmed (no second confirmation is configured)")
    if request.state not in {RequestState.APPROVED, RequestState.APPROVED_IN_PART}:
        raise TransitionRefused(request, "confirmed")
    if request.decided_by_id == dpo.id:
        raise RequestError("the confirmation must come from another data protection officer "
                           "than the one who approved")
    request.state = RequestState.CONFIRMED
    request.confirmed_at, request.confirmed_by_id = utcnow(), dpo.id
    db.flush()
    _audit(request, "requests.decide", AuditAction.CHANGE, dpo, detail={"decision": "confirmed"})
    _notify(request, _event(request, EventKind.CONFIRMED, dpo))
    return request


def executable(request: DeletionRequest) -> bool:
    """Say whether the request may be executed (or its execution resumed) now."""
    if request.state is RequestState.EXECUTING:
        return True
    if second_dpo_required():
        return request.state is RequestState.CONFIRMED
    return request.state in {RequestState.APPROVED, RequestState.APPROVED_IN_PART,
                             RequestState.CONFIRMED}


# --- execution -------------------------------------------------------------------------------

def _lock(request: DeletionRequest) -> DeletionRequest:
    """Re-read the request under a row lock, so two executions never run the same step."""
    if db.get_bind().dialect.name == "sqlite":
        # Take SQLite's write lock before reading (see portal.consent.service._lock_head).
        db.execute(DeletionRequest.__table__.update()
                   .where(DeletionRequest.id == request.id).values(state=DeletionRequest.state))
    locked = db.scalars(select(DeletionRequest).where(DeletionRequest.id == request.id)
                        .with_for_update().execution_options(populate_existing=True)).one()
    return locked


def _start(request: DeletionRequest, actor: Person | None, actor_name: str) -> None:
    now = utcnow()
    whole = request.scope is not DeletionScope.RANGE
    for key in plan_categories(request):
        db.add(DeletionStep(request_id=request.id, category_key=key, whole_category=whole,
                            batches_deleted=0, events_deleted=0, destroyed_key_ids=[],
                            consent_withdrawn=False, collectors_notified=0))
    request.state = RequestState.EXECUTING
    request.execution_started_at = now
    request.executed_by_id = actor.id if actor else None
    db.flush()
    db.refresh(request, ["steps"])
    _event(request, EventKind.EXECUTION_STARTED, actor, actor_name=actor_name, now=now,
           detail={"categories": [step.category_key for step in request.steps]})


def _delete_category(request: DeletionRequest, step: DeletionStep, actor: Person | None,
                     actor_name: str, method: ConsentMethod) -> None:
    """Delete one category of the request: consent first, then rows, then keys (lock order)."""
    person = db.get(Person, request.person_id)
    assert person is not None
    if request.withdraw_consent:
        # Withdrawal before the keys: ingestion locks consent before the key, and so do we.
        step.consent_withdrawn = bool(_withdraw(request, actor, method, only=step.category_key))
    found = vault.count_in_scope(person.id, step.category_key, since=request.since,
                                 until=request.until)
    _audit(request, "requests.execute", AuditAction.DELETE, actor, actor_name=actor_name,
           detail={"category": step.category_key, "batches": found.batches})
    step.batches_deleted = vault.delete_batches(person.id, step.category_key,
                                                since=request.since, until=request.until)
    step.events_deleted = found.events
    step.first_collected, step.last_collected = found.first, found.last
    if step.whole_category:
        step.destroyed_key_ids = vault.live_key_ids(person.id, step.category_key)
        vault.destroy_data_keys(person.id, step.category_key, reference=request.reference)
    now = utcnow()
    step.collectors_notified = len(webhooks.enqueue_deletion_notices(
        person, step.category_key, reference=request.reference, since=request.since,
        until=request.until, occurred_at=now))
    step.done_at = now
    db.flush()
    _event(request, EventKind.CATEGORY_DELETED, actor, actor_name=actor_name, now=now,
           detail={"category": step.category_key, "batches": step.batches_deleted,
                   "events": step.events_deleted, "keys": len(step.destroyed_key_ids)})


def execute_deletion(request: DeletionRequest, *, actor: Person | None, actor_name: str = "",
                     method: ConsentMethod = ConsentMethod.WEB,
                     save: Callable[[], None] = commit) -> DeletionRequest:
    """Carry out an approved request, or finish one whose execution was interrupted.

    Unlike the other moves, this commits (``save``) after starting, after each category and
    at the end: the first commit writes one undone :class:`DeletionStep` per category, each
    later one a category's deletions together with its step marked done. Killed at any point,
    the request stays "executing" (never shown as done) and a rerun does what is left. The
    end verifies the deletion and issues the certificate in the same transaction that marks
    the request executed.

    :raise TransitionRefused: not approved (or not confirmed when that is required), or
        already executed.
    """
    if actor is not None:
        _require_dpo(actor)
        _require_not_subject(request, actor)
    request = _lock(request)
    if not executable(request):
        raise TransitionRefused(request, "executed")
    if request.state is not RequestState.EXECUTING:
        _start(request, actor, actor_name)
        save()
    for step in list(request.steps):
        request = _lock(request)
        db.refresh(step)
        if step.done_at is not None:
            continue
        _delete_category(request, step, actor, actor_name, method)
        save()
    request = _lock(request)
    if request.state is RequestState.EXECUTED:
        return request
    now = utcnow()
    request.state, request.executed_at = RequestState.EXECUTED, now
    if actor is not None:
        request.executed_by_id = actor.id
    db.flush()
    executed = _event(request, EventKind.EXECUTED, actor, actor_name=actor_name, now=now)
    check = verify_deletion(request)
    if not check.ok:
        raise DeletionUnverified("; ".join(check.problems))
    issue_certificate(request, check)
    _audit(request, "requests.certificate", AuditAction.CHANGE, actor, actor_name=actor_name,
           detail={"certificate": request.certificate_id})
    _notify(request, executed)
    save()
    return request


def verify_deletion(request: DeletionRequest, *, record_event: bool = True) -> DeletionCheck:
    """Prove that nothing in scope remains and that no destroyed key decrypts anything.

    For each category done: no batch of the person in the scope received before its step,
    no batch left under a destroyed key, and every destroyed key refuses to unwrap (tried).

    :raise TransitionRefused: the request has not been executed.
    """
    if request.state is not RequestState.EXECUTED:
        raise TransitionRefused(request, "verified (it has not been executed)")
    now = utcnow()
    check = DeletionCheck(ok=True, checked_at=now)
    for step in request.steps:
        if step.done_at is None:
            check.problems.append(f"{step.category_key}: its deletion never finished")
            continue
        left = vault.count_in_scope(request.person_id, step.category_key, since=request.since,
                                    until=request.until, received_before=step.done_at)
        if left.batches:
            check.problems.append(f"{step.category_key}: {left.batches} batches remain")
        if vault.batches_sealed_by(step.destroyed_key_ids):
            check.problems.append(f"{step.category_key}: batches remain under destroyed keys")
        for key_id in step.destroyed_key_ids:
            check.keys_tried += 1
            if vault.key_still_opens(key_id):
                check.problems.append(f"{step.category_key}: key {key_id} still decrypts")
    check.ok = not check.problems
    if record_event and check.ok:
        request.verified_at = now
        db.flush()
        _event(request, EventKind.VERIFIED, None, actor_name="portal", now=now,
               capacity=ActorCapacity.SYSTEM,
               detail={"keys_tried": check.keys_tried, "categories": len(request.steps)})
    return check


def resume_interrupted(*, actor_name: str) -> list[DeletionRequest]:
    """Finish every execution that was interrupted (state "executing"); return them."""
    finished = []
    for reference in list(db.scalars(select(DeletionRequest.reference)
                                     .where(DeletionRequest.state == RequestState.EXECUTING))):
        request = find_request(reference)
        assert request is not None
        finished.append(execute_deletion(request, actor=None, actor_name=actor_name,
                                         method=ConsentMethod.SYSTEM))
    return finished


# --- objections ------------------------------------------------------------------------------

def decide_objection(objection: Objection, *, dpo: Person, upheld: bool,
                     reason: str) -> Objection:
    """Uphold or dismiss an objection, with the reason the employee is told."""
    _require_dpo(dpo)
    _require_not_subject(objection, dpo)
    reason = _clean_reason(reason, required=True)
    if objection.state not in {ObjectionState.RECEIVED, ObjectionState.EXTENDED}:
        raise TransitionRefused(objection, "decided")
    objection.state = ObjectionState.UPHELD if upheld else ObjectionState.DISMISSED
    db.flush()
    _audit(objection, "requests.decide", AuditAction.CHANGE, dpo, purpose=reason,
           detail={"decision": str(objection.state)})
    kind = EventKind.OBJECTION_UPHELD if upheld else EventKind.OBJECTION_DISMISSED
    _notify(objection, _event(objection, kind, dpo, reason=reason))
    return objection


def own_objections(person: Person) -> list[Objection]:
    """Return the person's objections, newest first."""
    return list(db.scalars(select(Objection).where(Objection.person_id == person.id)
                           .order_by(Objection.filed_at.desc(), Objection.id.desc())))
