"""Ingestion: stored encrypted if and only if consent is current, checked field by field."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy import select

from portal.catalog.models import Category, LegalBasis
from portal.consent.models import ConsentState
from portal.db import commit, db
from portal.vault.checks import MAX_EVENTS, MAX_FIELD_ERRORS, parse_timestamp
from portal.vault.errors import (
    BatchInvalid,
    BatchTooLarge,
    ConsentRequired,
    FieldError,
    IdempotencyConflict,
    UnknownCategory,
)
from portal.vault.ingest import find_category, ingest_batch
from portal.vault.models import CollectedBatch, DataKey
from portal.vault.reading import held_counts, held_summary, read_own_batches
from tests.support.batches import iso, keystroke_events, recent
from tests.support.factories import create_person, grant, withdraw
from tests.support.vault import category, ingest, stored

pytestmark = pytest.mark.usefixtures("ctx")


def test_a_batch_is_stored_encrypted_and_its_subject_reads_it_back() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    events = keystroke_events("for row in rows:", "    total += row.amount")
    result = ingest(alex, "keystrokes", events, dss_level=3)
    commit()

    assert result.created and result.event_count == 2
    batch = db.scalars(select(CollectedBatch)).one()
    assert batch.public_id == result.public_id
    assert b"total += row.amount" not in batch.ciphertext
    key = db.get(DataKey, batch.data_key_id)
    assert key is not None and key.person_id == alex.id and key.category_key == "keystrokes"
    assert len(key.wrapped_key) == 60 and not key.destroyed

    [read] = read_own_batches(alex)
    assert read.events == events
    assert (read.public_id, read.category_key, read.dss_level) == (
        result.public_id, "keystrokes", 3)
    assert read.collected_from == batch.collected_from


def test_one_data_key_per_person_and_category() -> None:
    alex, bea = create_person("sub-alex", email=False), create_person("sub-bea", email=False)
    for person in (alex, bea):
        for key in ("keystrokes", "pointer"):
            grant(person, key)
    for _ in range(2):
        ingest(alex, "keystrokes", keystroke_events("a"))
        ingest(bea, "keystrokes", keystroke_events("b"))
    ingest(alex, "pointer", [{"t": iso(recent(5)), "x": 1, "y": 2, "screen": 1, "app": "Mail"}])
    commit()
    keys = db.scalars(select(DataKey)).all()
    assert sorted((key.person_id, key.category_key) for key in keys) == sorted(
        [(alex.id, "keystrokes"), (bea.id, "keystrokes"), (alex.id, "pointer")])
    assert len({key.wrapped_key for key in keys}) == 3


def test_a_subject_reads_only_their_own_batches_with_filters() -> None:
    alex, bea = create_person("sub-alex", email=False), create_person("sub-bea", email=False)
    for person in (alex, bea):
        grant(person, "keystrokes")
        grant(person, "pointer")
    early = ingest(alex, "keystrokes", keystroke_events("early", start=recent(120)))
    late = ingest(alex, "keystrokes", keystroke_events("late", start=recent(10)))
    pointer = ingest(alex, "pointer", [{"t": iso(recent(60)), "x": 1, "y": 2, "screen": 1,
                                        "app": "Mail"}])
    ingest(bea, "keystrokes", keystroke_events("bea's"))
    commit()

    assert [b.public_id for b in read_own_batches(alex)] == [
        early.public_id, pointer.public_id, late.public_id]
    assert [b.public_id for b in read_own_batches(alex, "keystrokes")] == [
        early.public_id, late.public_id]
    assert [b.public_id for b in read_own_batches(alex, since=recent(30))] == [late.public_id]
    assert [b.public_id for b in read_own_batches(alex, until=recent(90))] == [early.public_id]
    assert all(b.events[0]["keys"] == "bea's" for b in read_own_batches(bea))
    assert list(read_own_batches(create_person("sub-chris", email=False))) == []
    with pytest.raises(ValueError, match="timezone"):
        list(read_own_batches(alex, since=recent(0).replace(tzinfo=None)))


def test_nothing_is_visible_until_the_transaction_commits(app: Flask) -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    commit()
    ingest(alex, "keystrokes", keystroke_events("never committed"))
    assert stored() == (1, 1)
    db.rollback()
    assert stored() == (0, 0)


# --- the consent gate ------------------------------------------------------------------------

def test_without_consent_the_batch_is_refused_and_nothing_is_stored() -> None:
    alex = create_person("sub-alex", email=False)
    with pytest.raises(ConsentRequired) as refused:
        ingest(alex, "keystrokes", keystroke_events("should not be kept"))
    assert (refused.value.category_key, refused.value.state) == ("keystrokes", None)
    assert stored() == (0, 0)


def test_after_withdrawal_the_batch_is_refused() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "conversations")
    commit()
    withdraw(alex, "conversations")
    commit()
    events = [{"t": iso(recent(3)), "channel_id": "c-5b07e2d1a9c4",
               "message_id": "m-19f0c2aa7b3e4d61", "author": "self",
               "participants": ["p-3f9c1a7e22b0"], "text": "after withdrawal"}]
    with pytest.raises(ConsentRequired) as refused:
        ingest(alex, "conversations", events)
    assert refused.value.state is ConsentState.WITHDRAWN
    assert stored() == (0, 0)


def test_consent_for_one_category_does_not_open_another() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "pointer")
    with pytest.raises(ConsentRequired):
        ingest(alex, "keystrokes", keystroke_events("not this one"))


@pytest.mark.parametrize(("key", "event"), [
    ("performance", {"t": None, "review_period": "2025-H2", "rating": "meets",
                     "reviewer_id": "p-a81d44c09e17", "summary": "Delivered on time."}),
    ("sensitivity_ratings", {"t": None, "document_id": "doc-7c2e91f0b4a3", "dss_level": 3,
                             "classifier": "dss-classifier 3.2"}),
])
def test_a_category_on_another_legal_basis_needs_no_consent(key: str,
                                                           event: dict[str, object]) -> None:
    assert category(key).legal_basis is not LegalBasis.CONSENT
    alex = create_person("sub-alex", email=False)
    event = {**event, "t": iso(recent(2))}
    assert ingest(alex, key, [event], dss_level=4).created
    commit()
    assert [b.events for b in read_own_batches(alex, key)] == [[event]]


def test_an_unknown_category_or_one_outside_the_catalog_in_force_is_refused() -> None:
    with pytest.raises(UnknownCategory):
        find_category("screenshots")
    # A category row the current notice does not list (as after it was removed).
    ghost = Category(key="screen_recording", legal_basis=LegalBasis.LEGITIMATE_INTEREST,
                     optional=False, retention_days=30, sensitivity=4,
                     event_schema={"type": "object"})
    db.add(ghost)
    db.flush()
    with pytest.raises(UnknownCategory):
        find_category("screen_recording")
    moment = recent(1)
    with pytest.raises(UnknownCategory):
        ingest_batch(create_person("sub-alex", email=False), ghost, events=[{"t": iso(moment)}],
                     collected_from=moment, collected_to=moment, dss_level=1)
    assert stored() == (0, 0)


# --- checking the batch ----------------------------------------------------------------------

def _errors(key: str, events: object, **fields: object) -> list[FieldError]:
    alex = create_person("sub-alex", email=False)
    if category(key).needs_consent:
        grant(alex, key)
    window = {"collected_from": recent(60), "collected_to": recent(0), "dss_level": 2}
    window.update(fields)
    with pytest.raises(BatchInvalid) as invalid:
        ingest_batch(alex, category(key), events=events, **window)  # type: ignore[arg-type]
    assert stored() == (0, 0)
    return invalid.value.errors


def test_schema_errors_name_each_field_without_repeating_its_value() -> None:
    secret = "hunter2-" * 300
    events = [
        {"t": iso(recent(5)), "app": "code editor", "keys": "fine", "duration_ms": 10},
        {"t": "yesterday", "app": "chat", "keys": secret, "duration_ms": -1, "extra": 1},
        {"app": "terminal", "keys": "", "duration_ms": 1.5},
        "not an event",
    ]
    errors = _errors("keystrokes", events)
    assert {(e.path, e.message) for e in errors} == {
        ("$.events[1].t", "must be a date and time with its time zone (RFC 3339), such as "
                          "2026-03-02T09:14:07Z"),
        ("$.events[1].app", 'must be one of: "code editor", "terminal", "word processor", '
                            '"spreadsheet", "presentation editor"'),
        ("$.events[1].keys", "must be at most 2000 characters long"),
        ("$.events[1].duration_ms", "must be at least 0"),
        ("$.events[1].extra", "is not a field this category records"),
        ("$.events[2].t", "is required"),
        ("$.events[2].keys", "must not be empty"),
        ("$.events[2].duration_ms", "must be a whole number"),
        ("$.events[3]", "must be an object"),
    }
    assert not any("hunter2" in e.message or "chat" in e.message.split(":")[0]
                   for e in errors)


def test_nested_fields_and_odd_names_get_exact_paths() -> None:
    event = {"t": iso(recent(5)), "channel_id": "c-5b07e2d1a9c4",
             "message_id": "m-19f0c2aa7b3e4d61", "author": "someone",
             "participants": ["p-3f9c1a7e22b0", "Alex Morgan"], "text": "hi",
             "a.b": 1}
    errors = _errors("conversations", [event])
    assert {e.path for e in errors} == {
        "$.events[0].author", "$.events[0].participants[1]", '$.events[0]["a.b"]'}


def test_the_window_level_and_times_are_checked() -> None:
    now = recent(0)
    naive = now.replace(tzinfo=None)
    cases: list[tuple[dict[str, object], set[tuple[str, str]]]] = [
        ({"collected_from": now, "collected_to": now - dt.timedelta(hours=1)},
         {("$.collected_to", "must not be before collected_from")}),
        ({"collected_from": naive, "collected_to": "today"},
         {("$.collected_from", "must include a time zone"),
          ("$.collected_to", "must be a date and time")}),
        ({"collected_to": now + dt.timedelta(hours=1)},
         {("$.collected_to", "must not be in the future")}),
        ({"collected_from": now - dt.timedelta(days=40),
          "collected_to": now - dt.timedelta(days=31)},
         {("$.collected_to", "is older than this category's retention period (30 days)")}),
        ({"dss_level": 5}, {("$.dss_level", "must be a whole number from 1 to 4")}),
        ({"dss_level": True}, {("$.dss_level", "must be a whole number from 1 to 4")}),
    ]
    for fields, expected in cases:
        events = keystroke_events("x", start=now - dt.timedelta(minutes=1))
        if "collected_from" in fields and isinstance(fields["collected_from"], dt.datetime) \
                and fields["collected_from"].tzinfo is not None:
            events = keystroke_events("x", start=fields["collected_from"])  # type: ignore[arg-type]
        errors = _errors("keystrokes", events, **fields)
        assert {(e.path, e.message) for e in errors} >= expected, fields


def test_every_event_lies_within_the_window() -> None:
    start = recent(30)
    events = keystroke_events("in", "out", start=start)
    errors = _errors("keystrokes", events, collected_from=start, collected_to=start)
    assert [(e.path, e.message) for e in errors] == [
        ("$.events[1].t", "must lie between collected_from and collected_to")]


def test_empty_malformed_and_oversized_batches_are_refused() -> None:
    assert _errors("keystrokes", []) == [FieldError("$.events", "must hold at least one event")]
    assert _errors("keystrokes", {"t": 1}) == [FieldError("$.events",
                                                          "must be a list of events")]
    assert _errors("keystrokes", [{"t": float("nan")}])[0].path == "$.events"
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    assert _errors("keystrokes", [{"t": nested}])[0].path == "$.events"
    many = keystroke_events("x") * (MAX_EVENTS + 1)
    with pytest.raises(BatchTooLarge, match="10000 events"):
        ingest(create_person("sub-alex", email=False), "keystrokes", many)
    assert stored() == (0, 0)


def test_an_impossible_time_in_an_otherwise_valid_batch_is_named() -> None:
    # Every other event has the usual form, checked for the whole batch at once; this one
    # has it too (so the shape check lets it through), but there is no February 30th.
    events = keystroke_events("a", "b", "c", start=recent(20))
    events[1]["t"] = "2026-02-30T09:14:07.000Z"
    assert _errors("keystrokes", events, collected_from=recent(21)) == [FieldError(
        "$.events[1].t", "must be a date and time with its time zone (RFC 3339), such as "
                         "2026-03-02T09:14:07Z")]


def test_every_form_of_rfc_3339_time_is_read() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    start = recent(20)
    events = keystroke_events("a", "b", "c", "d", start=start)
    events[0]["t"] = iso(start).replace("T", "t").replace("Z", "z")
    events[1]["t"] = iso(start + dt.timedelta(seconds=1)).replace("Z", "123456Z")
    events[2]["t"] = (start + dt.timedelta(seconds=2)).astimezone(
        dt.timezone(dt.timedelta(hours=2))).isoformat()
    result = ingest(alex, "keystrokes", events)
    assert result.created and result.event_count == 4


def test_error_lists_are_capped() -> None:
    events = [{"t": "never"} for _ in range(200)]
    assert len(_errors("keystrokes", events)) == MAX_FIELD_ERRORS


# --- idempotency -----------------------------------------------------------------------------

def _collector() -> int:
    from portal.api.service import register_collector

    collector, _token, _secret = register_collector("laptop-agent", ["keystrokes", "pointer"])
    return collector.id


def test_a_retry_with_the_same_key_returns_the_first_batch_and_stores_nothing_new() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    collector_id = _collector()
    events = keystroke_events("once only")
    first = ingest(alex, "keystrokes", events, collector_id=collector_id, idempotency_key="k-1")
    commit()
    again = ingest(alex, "keystrokes", [dict(event) for event in events],
                   collector_id=collector_id, idempotency_key="k-1")
    assert (again.public_id, again.created, first.created) == (first.public_id, False, True)
    assert stored() == (1, 1)

    other = ingest(alex, "keystrokes", events, collector_id=collector_id, idempotency_key="k-2")
    assert other.created and other.public_id != first.public_id


def test_a_retry_survives_a_withdrawal_in_between() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    collector_id = _collector()
    events = keystroke_events("collected while consent was given")
    first = ingest(alex, "keystrokes", events, collector_id=collector_id, idempotency_key="r")
    commit()
    withdraw(alex, "keystrokes")
    commit()
    # The first answer was lost on the way; the retry learns the batch was stored.
    assert ingest(alex, "keystrokes", events, collector_id=collector_id,
                  idempotency_key="r").public_id == first.public_id
    with pytest.raises(ConsentRequired):
        ingest(alex, "keystrokes", events, collector_id=collector_id, idempotency_key="new")


def test_the_same_key_with_another_body_is_a_conflict() -> None:
    alex, bea = create_person("sub-alex", email=False), create_person("sub-bea", email=False)
    for person in (alex, bea):
        grant(person, "keystrokes")
    collector_id = _collector()
    events = keystroke_events("original")
    first = ingest(alex, "keystrokes", events, collector_id=collector_id, idempotency_key="k")
    commit()
    changed_content = keystroke_events("changed", start=parse_timestamp(events[0]["t"]))
    for person, body, level in ((alex, changed_content, 2), (alex, events, 3),
                                (bea, events, 2)):
        with pytest.raises(IdempotencyConflict) as conflict:
            ingest(person, "keystrokes", body, dss_level=level, collector_id=collector_id,
                   idempotency_key="k")
        assert conflict.value.public_id == first.public_id
    assert stored()[0] == 1


def test_an_idempotency_key_needs_a_collector_and_a_sane_form() -> None:
    alex = create_person("sub-alex", email=False)
    grant(alex, "keystrokes")
    with pytest.raises(ValueError, match="collector_id"):
        ingest(alex, "keystrokes", keystroke_events("x"), idempotency_key="k")
    errors = _errors("keystrokes", keystroke_events("x"), collector_id=_collector(),
                     idempotency_key="\n" * 3)
    assert [e.path for e in errors] == ["Idempotency-Key"]


# --- what is held ----------------------------------------------------------------------------

def test_held_summary_comes_from_metadata_per_category_and_level() -> None:
    alex, bea = create_person("sub-alex", email=False), create_person("sub-bea", email=False)
    for person in (alex, bea):
        grant(person, "keystrokes")
    first = recent(90)
    ingest(alex, "keystrokes", keystroke_events("a", "b", start=first), dss_level=2)
    ingest(alex, "keystrokes", keystroke_events("c", start=recent(10)), dss_level=4)
    ingest(alex, "sensitivity_ratings", [{"t": iso(recent(5)), "document_id": "doc-7c2e91f0b4a3",
                                          "dss_level": 3, "classifier": "dss 3.2"}])
    ingest(bea, "keystrokes", keystroke_events("not alex"))
    commit()

    summary = held_summary(alex.id)
    assert set(summary) == {"keystrokes", "sensitivity_ratings"}
    keystrokes = summary["keystrokes"]
    assert (keystrokes.batches, keystrokes.events, keystrokes.dss_levels) == (2, 3, {2: 2, 4: 1})
    assert keystrokes.first == first
    assert keystrokes.last.tzinfo is not None and keystrokes.last > first
    assert held_counts(alex.id) == {"keystrokes": 3, "sensitivity_ratings": 1}
    assert held_summary(create_person("sub-nobody", email=False).id) == {}
