"""Every move of a deletion request, and every move its state refuses."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from portal.audit.models import AuditEntry
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import commit, db
from portal.requests import service
from portal.requests.models import DeletionScope, EventKind, RequestEvent, RequestState
from tests.support.deletion import Cast, approved


def kinds(request: object) -> list[str]:
    return [str(event.kind) for event in service.timeline(request)]  # type: ignore[arg-type]


def test_submit_sets_the_deadline_and_can_withdraw_consent(cast: Cast) -> None:
    request = service.submit_deletion_request(
        cast.alex, scope=DeletionScope.CATEGORIES, categories=["keystrokes"],
        reason="I changed jobs", withdraw=True,
        now=dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC))
    commit()
    assert request.state is RequestState.RECEIVED
    assert request.due_at == dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)
    assert kinds(request) == ["submitted", "consent_withdrawn"]
    status = db.get(ConsentStatus, (cast.alex.id, "keystrokes"))
    assert status is not None and status.state is ConsentState.WITHDRAWN
    assert db.get(ConsentStatus, (cast.alex.id, "pointer")).state is ConsentState.GIVEN


@pytest.mark.parametrize(("options", "message"), [
    ({"scope": DeletionScope.CATEGORIES, "categories": []}, "at least one"),
    ({"scope": DeletionScope.CATEGORIES, "categories": ["nope"]}, "unknown"),
    ({"scope": DeletionScope.RANGE}, "first and a last day"),
    ({"scope": DeletionScope.RANGE, "since": dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
      "until": dt.datetime(2026, 3, 1, tzinfo=dt.UTC)}, "ends before"),
    ({"scope": DeletionScope.ALL, "reason": "x" * 2001}, "longer"),
])
def test_a_malformed_request_is_refused(cast: Cast, options: dict, message: str) -> None:
    with pytest.raises(service.InvalidRequest, match=message):
        service.submit_deletion_request(cast.alex, **options)


def test_cancel_only_while_undecided_and_only_by_the_employee(cast: Cast) -> None:
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL)
    with pytest.raises(service.RequestError, match="only the person"):
        service.cancel_request(request, actor=cast.dana)
    service.cancel_request(request, actor=cast.alex)
    assert request.state is RequestState.CANCELLED
    with pytest.raises(service.TransitionRefused, match="cancelled"):
        service.cancel_request(request, actor=cast.alex)
    with pytest.raises(service.TransitionRefused):
        service.approve_deletion(request, dpo=cast.dana)
    decided = approved(cast)
    with pytest.raises(service.TransitionRefused):
        service.cancel_request(decided, actor=cast.alex)


def test_extend_once_before_the_first_deadline_with_a_reason(cast: Cast) -> None:
    received = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL, now=received)
    with pytest.raises(service.InvalidRequest, match="required"):
        service.extend_deadline(request, dpo=cast.dana, months=2, reason=" ",
                                now=received + dt.timedelta(days=3))
    with pytest.raises(service.TransitionRefused, match="first deadline"):
        service.extend_deadline(request, dpo=cast.dana, months=2, reason="Backups",
                                now=received + dt.timedelta(days=29))
    service.extend_deadline(request, dpo=cast.dana, months=2, reason="Backups take time",
                            now=received + dt.timedelta(days=3))
    assert request.state is RequestState.EXTENDED
    assert request.due_at == dt.datetime(2026, 4, 30, tzinfo=dt.UTC)
    with pytest.raises(service.TransitionRefused, match="only once"):
        service.extend_deadline(request, dpo=cast.dana, months=1, reason="Again",
                                now=received + dt.timedelta(days=4))
    # Still undecided: the DPO can decide, the employee can cancel.
    service.approve_deletion(request, dpo=cast.dana)
    assert kinds(request) == ["submitted", "extended", "approved"]
    assert service.timeline(request)[1].reason == "Backups take time"


def test_refuse_needs_a_reason_and_ends_the_request(cast: Cast) -> None:
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL)
    with pytest.raises(service.InvalidRequest):
        service.refuse_request(request, dpo=cast.dana, reason="")
    service.refuse_request(request, dpo=cast.dana, reason="Needed for a court case")
    assert request.state is RequestState.REFUSED
    for move in (lambda: service.approve_deletion(request, dpo=cast.dana),
                 lambda: service.execute_deletion(request, actor=cast.dana),
                 lambda: service.cancel_request(request, actor=cast.alex)):
        with pytest.raises(service.TransitionRefused):
            move()


def test_approve_in_part_keeps_items_with_reasons(cast: Cast) -> None:
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL)
    with pytest.raises(service.InvalidRequest, match="at least one"):
        service.approve_in_part(request, dpo=cast.dana, kept={})
    with pytest.raises(service.InvalidRequest, match="refuse"):
        service.approve_in_part(request, dpo=cast.dana,
                                kept={"keystrokes": "hold", "pointer": "hold"})
    with pytest.raises(service.InvalidRequest, match="reason for keeping"):
        service.approve_in_part(request, dpo=cast.dana, kept={"keystrokes": " "})
    with pytest.raises(service.InvalidRequest, match="scope"):
        service.approve_in_part(request, dpo=cast.dana, kept={"performance": "hold"})
    service.approve_in_part(request, dpo=cast.dana, kept={"keystrokes": "Legal hold 2026-7"})
    assert request.state is RequestState.APPROVED_IN_PART
    assert [(item.category_key, item.reason) for item in request.kept_items] == [
        ("keystrokes", "Legal hold 2026-7")]
    assert service.plan_categories(request) == ["pointer"]


def test_roles_and_own_requests(cast: Cast) -> None:
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL)
    with pytest.raises(service.RequestError, match="only a data protection officer"):
        service.approve_deletion(request, dpo=cast.alex)
    own = service.submit_deletion_request(cast.dana, scope=DeletionScope.ALL)
    with pytest.raises(service.RequestError, match="own request"):
        service.approve_deletion(own, dpo=cast.dana)
    service.approve_deletion(own, dpo=cast.dora)


def test_execute_before_approval_is_refused(cast: Cast) -> None:
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL)
    commit()
    with pytest.raises(service.TransitionRefused, match="received: it cannot be executed"):
        service.execute_deletion(request, actor=cast.dana)
    with pytest.raises(service.TransitionRefused):
        service.verify_deletion(request)


def test_second_dpo_confirms_before_execution(app: Flask, cast: Cast) -> None:
    app.config["DELETION_SECOND_DPO"] = True
    request = approved(cast)
    with pytest.raises(service.TransitionRefused, match="executed"):
        service.execute_deletion(request, actor=cast.dana)
    with pytest.raises(service.RequestError, match="another data protection officer"):
        service.confirm_deletion(request, dpo=cast.dana)
    service.confirm_deletion(request, dpo=cast.dora)
    commit()
    assert request.state is RequestState.CONFIRMED
    service.execute_deletion(request, actor=cast.dana)
    assert request.state is RequestState.EXECUTED
    assert request.confirmed_by_id == cast.dora.id


def test_confirmation_is_refused_when_not_configured(cast: Cast) -> None:
    request = approved(cast)
    with pytest.raises(service.TransitionRefused, match="no second confirmation"):
        service.confirm_deletion(request, dpo=cast.dora)


def test_executed_twice_is_refused(cast: Cast) -> None:
    request = approved(cast)
    service.execute_deletion(request, actor=cast.dana)
    with pytest.raises(service.TransitionRefused, match="executed: it cannot be executed"):
        service.execute_deletion(request, actor=cast.dana)


def test_the_database_refuses_impossible_states_and_rewritten_timelines(cast: Cast) -> None:
    request = service.submit_deletion_request(cast.alex, scope=DeletionScope.ALL)
    commit()
    with pytest.raises(DBAPIError):
        db.execute(text("UPDATE deletion_request SET state = 'approved' WHERE id = :id"),
                   {"id": request.id})
    db.rollback()
    with pytest.raises(DBAPIError):
        db.execute(text("UPDATE deletion_request SET state = 'gone' WHERE id = :id"),
                   {"id": request.id})
    db.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        db.execute(text("UPDATE request_event SET reason = 'rewritten'"))
    db.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        db.execute(text("DELETE FROM request_event"))
    db.rollback()
    assert db.scalar(select(func.count()).select_from(RequestEvent)) == 1
    assert db.scalar(select(RequestEvent.kind)) is EventKind.SUBMITTED


def test_every_step_is_in_the_audit_log(cast: Cast) -> None:
    request = approved(cast)
    service.execute_deletion(request, actor=cast.dana)
    whats = list(db.scalars(select(AuditEntry.what).order_by(AuditEntry.id)))
    assert {"requests.submit", "requests.decide", "requests.execute",
            "requests.certificate"} <= set(whats)
