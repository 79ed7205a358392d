"""Withdrawal, objection and erasure reach training: the snapshots holding the records are marked
outdated (those only), their client is told by a signed notice without learning who, and the
changes feed lists it; what the person's page and the certificate of deletion read."""

from __future__ import annotations

import datetime as dt
import time

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.api.models import DeliveryState, WebhookDelivery
from portal.api.webhooks import deliver_due, delivery_overview
from portal.auth.models import Person
from portal.catalog.notices import find_section
from portal.catalog.objections import file_objection
from portal.db import commit, db, utcnow
from portal.requests.certificate import training_lineage
from portal.training import lineage
from portal.training.models import (
    OutdatedReason,
    SnapshotEvent,
    SnapshotHolding,
    SnapshotState,
    TrainingSnapshot,
)
from portal.training.overview import describe_training_for, models_trained_on
from portal.training.service import open_webhook_secret
from portal.vault.erasure import delete_batches, destroy_data_keys, purge_expired
from tests.support.batches import keystroke_events
from tests.support.consent import Chooser
from tests.support.factories import create_person, grant, withdraw
from tests.support.identity import SignIn
from tests.support.training import make_client
from tests.support.training_lineage import (
    DAY,
    create_model,
    create_snapshot,
    verified_payload,
    webhook_receiver,
)
from tests.support.vault import ingest

KEYS = "keystrokes"


def _holding(snapshot_id: int, person_id: int, category: str) -> SnapshotHolding:
    found = db.get(SnapshotHolding, (snapshot_id, person_id, category), populate_existing=True)
    assert found is not None
    return found


def _snapshot(snapshot_id: int) -> TrainingSnapshot:
    found = db.get(TrainingSnapshot, snapshot_id, populate_existing=True)
    assert found is not None
    return found


def _events() -> list[SnapshotEvent]:
    return list(db.scalars(select(SnapshotEvent).order_by(SnapshotEvent.id)))


def _notices() -> list[WebhookDelivery]:
    return list(db.scalars(select(WebhookDelivery)
                           .where(WebhookDelivery.training_client_id.is_not(None))
                           .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
                           .execution_options(populate_existing=True)))


def _keystroke_events(day: dt.datetime) -> list[dict[str, object]]:
    return keystroke_events("ls", start=day.replace(microsecond=0))


def test_withdrawal_marks_only_the_snapshots_holding_that_persons_category(
        app: Flask, ctx: None) -> None:
    alex, blake = create_person("sub-alex"), create_person("sub-blake")
    grant(alex, KEYS, "pointer")
    client = make_client(webhook_url="https://training.example/hooks")
    holding = create_snapshot(client, {(alex.id, KEYS): 5, (alex.id, "pointer"): 3,
                                       (blake.id, KEYS): 2})
    excluded_only = create_snapshot(client, {(alex.id, KEYS): 0},
                                    excluded={(alex.id, KEYS): {"no_consent": 4}})
    retired = create_snapshot(client, {(alex.id, KEYS): 7}, state=SnapshotState.READY)
    lineage.retire_snapshot(retired, by="tests")
    commit()
    events_before = len(_events())

    withdraw(alex, KEYS)
    commit()

    marked = _holding(holding.id, alex.id, KEYS)
    assert marked.outdated_reason is OutdatedReason.WITHDRAWN
    assert marked.outdated_at is not None
    assert _snapshot(holding.id).outdated_at == marked.outdated_at
    assert _holding(holding.id, alex.id, "pointer").outdated_at is None  # other category
    assert _holding(holding.id, blake.id, KEYS).outdated_at is None  # other person
    assert _holding(excluded_only.id, alex.id, KEYS).outdated_at is None  # held nothing
    assert _snapshot(excluded_only.id).outdated_at is None
    assert _holding(retired.id, alex.id, KEYS).outdated_at is None  # already gone
    [event] = _events()[events_before:]
    assert (event.snapshot_id, event.kind.value, event.reasons) == (holding.id, "outdated",
                                                                  ["withdrawn"])
    outdated = [notice for notice in _notices() if notice.kind == "training.snapshot.outdated"]
    assert len(outdated) == 1

    # A second withdrawal (another category) keeps the first time and reason of each holding.
    first = marked.outdated_at
    withdraw(alex, "pointer")
    commit()
    assert _holding(holding.id, alex.id, KEYS).outdated_at == first
    assert _holding(holding.id, alex.id, "pointer").outdated_reason is OutdatedReason.WITHDRAWN
    assert _snapshot(holding.id).outdated_at == first


def test_an_objection_marks_the_snapshots_holding_that_category(app: Flask, ctx: None) -> None:
    alex, blake = create_person("sub-alex"), create_person("sub-blake")
    client = make_client()
    snapshot = create_snapshot(client, {(alex.id, "performance"): 4, (alex.id, KEYS): 2,
                                        (blake.id, "performance"): 1})
    commit()
    section = find_section("performance")
    assert section is not None
    file_objection(alex, section, "I object to my performance data training models.")
    commit()
    assert _holding(snapshot.id, alex.id, "performance").outdated_reason is \
        OutdatedReason.OBJECTED
    assert _holding(snapshot.id, alex.id, KEYS).outdated_at is None
    assert _holding(snapshot.id, blake.id, "performance").outdated_at is None
    assert _snapshot(snapshot.id).outdated_at is not None
    # Without a webhook URL the client is told in its feed only.
    assert _notices() == []
    [change] = lineage.list_snapshot_changes(client, 0, 10)
    assert (change.number, change.reasons) == (snapshot.number, ["objected"])


def test_an_objection_to_ones_ratings_marks_every_category_they_let_in(
        app: Flask, ctx: None) -> None:
    # The ratings showed which activity records were safe; without them a new snapshot
    # leaves every activity record of the person out, so every holding is outdated.
    alex, blake = create_person("sub-alex"), create_person("sub-blake")
    snapshot = create_snapshot(make_client(), {(alex.id, KEYS): 2, (alex.id, "pointer"): 3,
                                               (blake.id, KEYS): 1})
    commit()
    section = find_section("sensitivity_ratings")
    assert section is not None
    file_objection(alex, section, "The classifier rates my documents wrongly.")
    commit()
    for category in (KEYS, "pointer"):
        assert _holding(snapshot.id, alex.id, category).outdated_reason is \
            OutdatedReason.OBJECTED
    assert _holding(snapshot.id, blake.id, KEYS).outdated_at is None


def test_erasing_a_period_marks_only_snapshots_whose_period_overlaps_it(
        app: Flask, ctx: None) -> None:
    alex = create_person("sub-alex")
    grant(alex, KEYS)
    now = utcnow()
    ingest(alex, KEYS, _keystroke_events(now - 3 * DAY))
    client = make_client()
    recent = create_snapshot(client, {(alex.id, KEYS): 1},
                             collected_from=now - 5 * DAY, collected_to=now)
    older = create_snapshot(client, {(alex.id, KEYS): 1},
                            collected_from=now - 60 * DAY, collected_to=now - 20 * DAY)
    commit()
    assert delete_batches(alex.id, KEYS, since=now - 4 * DAY, until=now - 2 * DAY) == 1
    commit()
    assert _holding(recent.id, alex.id, KEYS).outdated_reason is OutdatedReason.ERASED
    assert _holding(older.id, alex.id, KEYS).outdated_at is None


def test_shredding_a_key_marks_every_snapshot_of_the_category(app: Flask, ctx: None) -> None:
    alex = create_person("sub-alex")
    grant(alex, KEYS)
    now = utcnow()
    ingest(alex, KEYS, _keystroke_events(now - DAY))
    client = make_client()
    older = create_snapshot(client, {(alex.id, KEYS): 1},
                            collected_from=now - 60 * DAY, collected_to=now - 20 * DAY)
    pointer = create_snapshot(client, {(alex.id, "pointer"): 1})
    commit()
    assert destroy_data_keys(alex.id, KEYS) == 1
    commit()
    assert _holding(older.id, alex.id, KEYS).outdated_reason is OutdatedReason.ERASED
    assert _holding(pointer.id, alex.id, "pointer").outdated_at is None


def test_a_purge_of_many_people_tells_each_snapshot_once(app: Flask, ctx: None) -> None:
    alex, blake = create_person("sub-alex"), create_person("sub-blake")
    grant(alex, KEYS)
    grant(blake, KEYS)
    now = utcnow()
    for person in (alex, blake):
        ingest(person, KEYS, _keystroke_events(now - 2 * DAY))
    client = make_client(webhook_url="https://training.example/hooks")
    snapshot = create_snapshot(client, {(alex.id, KEYS): 3, (blake.id, KEYS): 4})
    commit()
    [purged] = purge_expired(now=now + 400 * DAY)
    assert purged.batches == 2
    commit()
    assert {_holding(snapshot.id, person.id, KEYS).outdated_reason
            for person in (alex, blake)} == {OutdatedReason.ERASED}
    [event] = _events()
    assert event.reasons == ["erased"]
    [notice] = _notices()
    assert '"reasons":["erased"]' in notice.body


def test_withdrawal_and_erasure_in_one_transaction_are_one_notice_with_both_reasons(
        app: Flask, ctx: None) -> None:
    alex = create_person("sub-alex")
    grant(alex, KEYS)
    ingest(alex, KEYS, _keystroke_events(utcnow() - DAY))
    client = make_client(webhook_url="https://training.example/hooks")
    snapshot = create_snapshot(client, {(alex.id, KEYS): 3})
    commit()
    # As a deletion request carries out a category: withdraw, delete, shred.
    withdraw(alex, KEYS)
    delete_batches(alex.id, KEYS)
    destroy_data_keys(alex.id, KEYS)
    commit()
    assert _holding(snapshot.id, alex.id, KEYS).outdated_reason is OutdatedReason.WITHDRAWN
    [event] = _events()
    assert event.reasons == ["erased", "withdrawn"]
    [notice] = _notices()
    assert '"reasons":["erased","withdrawn"]' in notice.body


def test_a_rolled_back_withdrawal_marks_nothing_and_tells_no_one(app: Flask, ctx: None) -> None:
    alex = create_person("sub-alex")
    grant(alex, KEYS)
    client = make_client(webhook_url="https://training.example/hooks")
    snapshot = create_snapshot(client, {(alex.id, KEYS): 3})
    commit()
    withdraw(alex, KEYS)
    db.rollback()
    assert _holding(snapshot.id, alex.id, KEYS).outdated_at is None
    assert (_events(), _notices()) == ([], [])


def test_the_promise_withdrawal_reaches_training_and_the_client_is_told_signed_without_who(
        app: Flask, client: FlaskClient, sign_in: SignIn, catalog: int) -> None:
    """The notice: "What was already recorded is not used in any new training run"; models
    trained before keep what they learned. The snapshot holding Alex's keystrokes is marked
    at once and its client hears of it within seconds, signed, without a name or a count."""
    sign_in.login(client, "alex")
    alex = Chooser(client, catalog)
    alex.post(KEYS, "grant")
    with webhook_receiver() as receiver, app.app_context():
        person = db.scalar(select(Person).where(Person.subject == "sub-alex"))
        assert person is not None
        training = make_client(webhook_url=receiver.url)
        secret = open_webhook_secret(training)
        snapshot = create_snapshot(training, {(person.id, KEYS): 1234})
        create_model(training, [snapshot])
        commit()
        snapshot_id, number, public_id = snapshot.id, snapshot.number, snapshot.public_id
        person_id, subject, pseudonym = person.id, person.subject, person.workplace_pseudonym

        # A WSGI server closes every response once sent; Flask's test client leaves that to us.
        alex.post(KEYS, "withdraw").close()
        assert receiver.arrived.wait(5), "no notice within 5 seconds without the delivery loop"
        assert _holding(snapshot_id, person_id, KEYS).outdated_reason is \
            OutdatedReason.WITHDRAWN
        [request] = receiver.received
        payload = verified_payload(request, secret)
        assert payload["type"] == "training.snapshot.outdated"
        assert payload["data"]["snapshot"] == public_id
        assert payload["data"]["number"] == number
        assert payload["data"]["reasons"] == ["withdrawn"]
        body = request["body"].decode()
        for secret_of_the_person in (subject, pseudonym, "1234", "Alex", "person"):
            assert secret_of_the_person not in body
        assert set(payload["data"]) == {"snapshot", "number", "reasons", "cursor",
                                        "occurred_at"}
        deadline = time.monotonic() + 5
        while _notices()[0].state is not DeliveryState.DELIVERED:
            assert time.monotonic() < deadline
            time.sleep(0.05)  # polling, with a deadline, for the sender's thread to record it
            db.rollback()
        # The feed says the same, for a client that missed the notice.
        [change] = lineage.list_snapshot_changes(training, 0, 10)
        assert str(change.cursor) == payload["data"]["cursor"]
        # The person's page: still held (models keep what they learned), and marked.
        [dataset] = describe_training_for(person_id, "en")
        [held] = dataset.categories
        assert (held.included, held.outdated_at is not None) == (1234, True)
        [model] = models_trained_on([snapshot_id])[snapshot_id]
        assert model.name == "assistant"


def test_the_sender_of_the_outbox_delivers_training_notices_and_the_admin_sees_them(
        app: Flask, ctx: None) -> None:
    alex = create_person("sub-alex")
    grant(alex, KEYS)
    with webhook_receiver() as receiver:
        training = make_client("Forecasts", webhook_url=receiver.url)
        secret = open_webhook_secret(training)
        create_snapshot(training, {(alex.id, KEYS): 2})
        commit()
        withdraw(alex, KEYS)
        commit()  # a command: nothing sent until the sender runs
        assert receiver.received == []
        run = deliver_due(app)
        assert (run.delivered, run.failed) == (1, 0)
        verified_payload(receiver.received[0], secret)
    counts, lines = delivery_overview()
    assert counts["delivered"] == 1
    assert [(line.collector, line.kind) for line in lines] == [
        ("training client Forecasts", "training.snapshot.outdated")]


def test_a_revoked_training_client_is_not_sent_notices(app: Flask, ctx: None) -> None:
    alex = create_person("sub-alex")
    grant(alex, KEYS)
    training = make_client(webhook_url="https://training.example/hooks")
    create_snapshot(training, {(alex.id, KEYS): 2})
    commit()
    withdraw(alex, KEYS)
    training.revoked_at = utcnow()
    commit()
    run = deliver_due(app)
    assert (run.delivered, run.failed) == (0, 1)
    [notice] = _notices()
    assert notice.last_error == "recipient revoked"


def test_the_feed_lists_the_clients_events_in_order_with_a_working_cursor(
        app: Flask, ctx: None) -> None:
    alex = create_person("sub-alex")
    grant(alex, KEYS, "pointer")
    mine = make_client("Mine")
    theirs = make_client("Theirs")
    first = create_snapshot(mine, {(alex.id, KEYS): 1})
    second = create_snapshot(mine, {(alex.id, "pointer"): 1})
    other = create_snapshot(theirs, {(alex.id, KEYS): 1})
    commit()
    withdraw(alex, KEYS)
    commit()
    withdraw(alex, "pointer")
    commit()
    lineage.retire_snapshot(first, by="tests")
    commit()

    everything = lineage.list_snapshot_changes(mine, 0, 100)
    assert [(change.number, change.kind.value) for change in everything] == [
        (first.number, "outdated"), (second.number, "outdated"), (first.number, "retired")]
    assert [change.cursor for change in everything] == sorted(
        change.cursor for change in everything)
    page = lineage.list_snapshot_changes(mine, 0, 2)
    rest = lineage.list_snapshot_changes(mine, page[-1].cursor, 2)
    assert page + rest == everything
    assert lineage.list_snapshot_changes(mine, everything[-1].cursor, 2) == []
    assert [change.number for change in lineage.list_snapshot_changes(theirs, 0, 100)] == [
        other.number]


def test_what_the_person_page_and_the_certificate_of_deletion_read(
        app: Flask, ctx: None) -> None:
    alex, blake = create_person("sub-alex"), create_person("sub-blake")
    training = make_client()
    early = create_snapshot(training, {(alex.id, KEYS): 5, (alex.id, "pointer"): 0,
                                       (blake.id, KEYS): 9},
                            excluded={(alex.id, "pointer"): {"no_consent": 3}})
    late = create_snapshot(training, {(alex.id, KEYS): 2})
    untouched = create_snapshot(training, {(blake.id, KEYS): 1})
    model = create_model(training, [early, late], name="assistant", version="2")
    commit()
    datasets = describe_training_for(alex.id, "en")
    assert [(dataset.number, [(held.key, held.included, held.excluded)
                              for held in dataset.categories])
            for dataset in datasets] == [
        (late.number, [(KEYS, 2, [])]),
        (early.number, [(KEYS, 5, []), ("pointer", 0, [("no_consent", 3)])])]
    assert [[found.public_id for found in dataset.models] for dataset in datasets] == [
        [model.public_id], [model.public_id]]
    trained = models_trained_on([early.id, untouched.id])
    assert [found.public_id for found in trained[early.id]] == [model.public_id]
    assert trained[untouched.id] == []
    certificate = training_lineage(alex.id)
    assert [(item["number"], item["records"]) for item in certificate["snapshots"]] == [
        (late.number, {KEYS: 2}), (early.number, {KEYS: 5})]
    assert [(item["name"], item["version"], item["snapshots"])
            for item in certificate["models"]] == [("assistant", "2", [late.number, early.number])]
