"""Execution: crypto-shredding, the crash and the rerun, the check afterwards, collectors told."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.api.models import WebhookDelivery
from portal.api.service import register_collector
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import commit, db
from portal.requests import service
from portal.requests.models import DeletionScope, DeletionStep, RequestState
from portal.vault import erasure as vault
from portal.vault.models import CollectedBatch, DataKey
from tests.support.batches import keystroke_events, recent
from tests.support.deletion import Cast, approved
from tests.support.vault import ingest


def batches(person_id: int, key: str | None = None) -> int:
    query = select(func.count()).select_from(CollectedBatch).where(
        CollectedBatch.person_id == person_id)
    if key:
        query = query.where(CollectedBatch.category_key == key)
    return db.scalar(query) or 0


def test_execution_shreds_keys_deletes_rows_and_tells_collectors(cast: Cast) -> None:
    register_collector("recorder", ["keystrokes", "pointer"], webhook_url="http://127.0.0.1:9/h")
    request = approved(cast, scope=DeletionScope.CATEGORIES, categories=["keystrokes"],
                       withdraw=False)
    request.withdraw_consent = True
    keys = vault.live_key_ids(cast.alex.id, "keystrokes")
    commit()
    service.execute_deletion(request, actor=cast.dana)
    assert request.state is RequestState.EXECUTED and request.verified_at is not None
    assert batches(cast.alex.id, "keystrokes") == 0 and batches(cast.alex.id, "pointer") == 1
    key = db.get(DataKey, keys[0])
    assert key is not None and key.destroyed and key.wrapped_key == b""
    assert not vault.key_still_opens(keys[0])
    assert db.get(ConsentStatus, (cast.alex.id, "keystrokes")).state is ConsentState.WITHDRAWN
    step = request.steps[0]
    assert (step.batches_deleted, step.events_deleted, step.destroyed_key_ids) == (2, 3, keys)
    notices = db.scalars(select(WebhookDelivery).where(WebhookDelivery.kind == "data.delete"))
    bodies = [json.loads(notice.body) for notice in notices]
    assert [body["data"]["category"] for body in bodies] == ["keystrokes"]
    assert bodies[0]["data"]["request"] == request.reference
    check = service.verify_deletion(request, record_event=False)
    assert check.ok and check.keys_tried == 1


def test_a_period_deletes_overlapping_batches_and_keeps_the_key(cast: Cast) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=120)
    request = approved(cast, scope=DeletionScope.RANGE, since=since,
                       until=dt.datetime.now(dt.UTC))
    service.execute_deletion(request, actor=cast.dana)
    # The keystroke batch of five hours ago is outside the period; the others are not.
    assert batches(cast.alex.id, "keystrokes") == 1 and batches(cast.alex.id, "pointer") == 0
    assert all(not step.destroyed_key_ids for step in request.steps)
    assert vault.live_key_ids(cast.alex.id, "keystrokes")


def test_a_crash_mid_way_leaves_it_executing_and_a_rerun_finishes(
        app: Flask, cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    request = approved(cast)
    real = service._delete_category
    calls = []

    def crash_on_second(*args: object, **kwargs: object) -> None:
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError("power cut")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "_delete_category", crash_on_second)
    with pytest.raises(RuntimeError, match="power cut"):
        service.execute_deletion(request, actor=cast.dana)
    db.rollback()
    db.expire_all()
    # The first category was committed with its step; the second rolled back entirely.
    steps = {step.category_key: step for step in db.scalars(select(DeletionStep))}
    assert steps["keystrokes"].done_at is not None and steps["pointer"].done_at is None
    assert batches(cast.alex.id, "keystrokes") == 0 and batches(cast.alex.id, "pointer") == 1
    again = service.find_request(request.reference)
    assert again is not None and again.state is RequestState.EXECUTING
    assert again.certificate_jws is None
    with pytest.raises(service.TransitionRefused):
        service.verify_deletion(again)
    monkeypatch.setattr(service, "_delete_category", real)
    result = app.test_cli_runner().invoke(args=["requests", "resume"])
    assert result.exit_code == 0, result.output
    assert "1 interrupted deletions finished" in result.output
    db.expire_all()
    done = service.find_request(request.reference)
    assert done is not None and done.state is RequestState.EXECUTED and done.certificate_jws
    assert batches(cast.alex.id) == 0
    assert [step.batches_deleted for step in done.steps] == [2, 1]
    result = app.test_cli_runner().invoke(args=["requests", "verify", request.reference])
    assert result.exit_code == 0 and "nothing in scope remains" in result.output


def test_the_check_notices_anything_left(cast: Cast) -> None:
    request = approved(cast, scope=DeletionScope.CATEGORIES, categories=["keystrokes"])
    service.execute_deletion(request, actor=cast.dana)
    step = request.steps[0]
    # A batch that slipped in before the step was done (e.g. restored from a backup).
    ingest(cast.alex, "keystrokes", keystroke_events("restored", start=recent(10)))
    db.execute(CollectedBatch.__table__.update().values(
        received_at=step.done_at - dt.timedelta(seconds=1)))
    check = service.verify_deletion(request, record_event=False)
    assert not check.ok and "1 batches remain" in check.problems[0]


def test_a_failed_check_after_execution_is_not_called_nothing_changed(
        app: Flask, cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    request = approved(cast, scope=DeletionScope.CATEGORIES, categories=["keystrokes"])
    real = service._delete_category

    def delete_then_restore(request: object, step: DeletionStep, *args: object,
                            **kwargs: object) -> None:
        real(request, step, *args, **kwargs)  # type: ignore[arg-type]
        # A batch that slipped in before the step was done (e.g. a backup restored meanwhile).
        ingest(cast.alex, "keystrokes", keystroke_events("restored", start=recent(10)))
        db.execute(CollectedBatch.__table__.update().values(
            received_at=step.done_at - dt.timedelta(seconds=1)))

    monkeypatch.setattr(service, "_delete_category", delete_then_restore)
    result = app.test_cli_runner().invoke(args=["requests", "execute", request.reference])
    assert result.exit_code == 1
    assert "NOT VERIFIED: the deletion ran" in result.output and "1 batches remain" in result.output
    assert "Nothing more was changed" not in result.output
    db.rollback()
    db.expire_all()
    again = service.find_request(request.reference)
    assert again is not None and again.state is RequestState.EXECUTING
    assert again.certificate_jws is None


def test_the_command_executes_an_approved_request(app: Flask, cast: Cast) -> None:
    request = approved(cast)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["requests", "execute", request.reference])
    assert result.exit_code == 0, result.output
    assert "2 categories deleted" in result.output
    result = runner.invoke(args=["requests", "execute", request.reference])
    assert result.exit_code == 1 and "Refused" in result.output
    result = runner.invoke(args=["requests", "execute", "no-such-request"])
    assert result.exit_code == 2


def test_the_download_holds_requests_and_certificates_without_content(cast: Cast) -> None:
    from portal.requests import _download_files

    request = approved(cast)
    service.execute_deletion(request, actor=cast.dana)
    files = dict(_download_files(cast.alex))
    document = json.loads(files["requests.json"])
    assert document["deletion_requests"][0]["state"] == "executed"
    assert f"deletion-certificate-{request.certificate_id}.jws" in files
    assert all(b"beta-typed" not in content for content in files.values())
