"""What enters a training snapshot: each rule with a record let in and one left out, counted by
reason per person and category, and the pseudonyms of the dataset."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete

from portal.auth.models import Person
from portal.catalog.models import ObjectionState
from portal.catalog.notices import find_section
from portal.catalog.objections import file_objection
from portal.consent.models import ConsentMethod, ConsentState, ConsentStatus
from portal.consent.service import refuse_consent
from portal.db import commit, db
from portal.requests import service as requests
from portal.requests.models import DeletionScope
from portal.training.build import work
from portal.training.keys import open_snapshot_key
from portal.training.models import SnapshotState, TrainingSnapshot
from portal.training.rules import WINDOW
from portal.vault.ingest import find_category
from tests.support.batches import recent
from tests.support.config import portal_settings
from tests.support.factories import add_person, create_person, grant, publish_changed_text, withdraw
from tests.support.identity import ISSUER
from tests.support.training import (
    ask_snapshot,
    holding,
    keystrokes,
    message,
    ratings,
    read_dataset,
    reload,
)
from tests.support.vault import ingest

MS = dt.timedelta(milliseconds=1)


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """No identity provider: nobody signs in here."""
    return portal_settings(database_url, ISSUER, "http://localhost")


def period() -> dict[str, dt.datetime]:
    return {"collected_from": recent(2 * 24 * 60),
            "collected_to": recent(0) + dt.timedelta(minutes=1)}


def rated(person: Person) -> None:
    """Give the person a harmless rating (DSS 1) in the period, far from their records."""
    ratings(person, (recent(40 * 60), 1))


def person(name: str, *keys: str) -> Person:
    found = create_person(name)
    grant(found, *keys)
    return found


def build(snapshot: TrainingSnapshot) -> TrainingSnapshot:
    commit()
    work("tests")
    built = reload(snapshot)
    assert built.state is SnapshotState.READY, built.failed_reason
    return built


def test_consent_in_force_is_in_and_any_other_state_is_out(
        app: Flask, ctx: None) -> None:
    renewed, withdrawn, refused, never, expired = (
        person(name, "keystrokes") for name in ("renewed", "withdrawn", "refused", "never",
                                                "expired"))
    for someone in (renewed, withdrawn, refused, never, expired):
        rated(someone)
        keystrokes(someone, recent(60), recent(59))
    # Never decided: no consent row at all (records from before the portal kept one).
    db.execute(delete(ConsentStatus).where(ConsentStatus.person_id == never.id))
    commit()
    publish_changed_text(app, "keystrokes", material=True)  # every consent above expires
    db.expire_all()
    given = person("given", "keystrokes")
    rated(given)
    keystrokes(given, recent(60), recent(59))
    grant(renewed, "keystrokes")
    grant(withdrawn, "keystrokes")
    withdraw(withdrawn, "keystrokes")
    refuse_consent(refused, find_category("keystrokes"), method=ConsentMethod.WEB, actor=refused)
    snapshot = ask_snapshot(categories=["keystrokes"], **period())

    built = build(snapshot)

    assert db.get_one(ConsentStatus, (renewed.id, "keystrokes")).state is ConsentState.RENEWED
    assert holding(built, given, "keystrokes") == (2, {})
    assert holding(built, renewed, "keystrokes") == (2, {})
    for out in (withdrawn, refused, never, expired):
        assert holding(built, out, "keystrokes") == (0, {"no_consent": 2}), out.subject
    assert built.totals["included"] == 4
    assert built.totals["excluded"] == {"no_consent": 8}


def test_consent_stays_in_force_across_a_change_that_is_not_material(
        app: Flask, ctx: None) -> None:
    alex = person("alex", "keystrokes")
    rated(alex)
    keystrokes(alex, recent(60))
    commit()
    # Clearer words change nothing Alex agreed to: collection goes on, and so does training.
    publish_changed_text(app, "keystrokes", material=False)
    db.expire_all()
    built = build(ask_snapshot(categories=["keystrokes"], **period()))
    assert holding(built, alex, "keystrokes") == (1, {})


def object_to(someone: Person, category_key: str, state: ObjectionState) -> None:
    section = find_section(category_key)
    assert section is not None
    file_objection(someone, section, "I object.").state = state
    db.flush()


@pytest.mark.parametrize(("state", "included"), [
    (None, True), (ObjectionState.RECEIVED, False), (ObjectionState.EXTENDED, False),
    (ObjectionState.UPHELD, False), (ObjectionState.DISMISSED, True)])
def test_another_legal_basis_is_in_unless_an_objection_stands(
        ctx: None, state: ObjectionState | None, included: bool) -> None:
    # sensitivity_ratings rest on legitimate interest: no consent, a right to object.
    dana = create_person("dana")
    ratings(dana, (recent(60), 1), (recent(50), 3))
    if state is not None:
        object_to(dana, "sensitivity_ratings", state)
    built = build(ask_snapshot(categories=["sensitivity_ratings"], **period()))
    assert holding(built, dana, "sensitivity_ratings") == (
        (2, {}) if included else (0, {"objection": 2}))


def dpo() -> Person:
    return add_person("Dpo", roles=("dpo",))


@pytest.mark.parametrize(("decision", "held"), [
    ("pending", True), ("approved", True), ("refused", False)])
def test_a_deletion_request_pending_or_approved_keeps_what_it_covers_out(
        ctx: None, decision: str, held: bool) -> None:
    alex = person("alex", "keystrokes", "clicks")
    rated(alex)
    keystrokes(alex, recent(60), recent(59))
    request = requests.submit_deletion_request(alex, scope=DeletionScope.CATEGORIES,
                                               categories=["keystrokes"])
    if decision == "approved":
        requests.approve_deletion(request, dpo=dpo())
    elif decision == "refused":
        requests.refuse_request(request, dpo=dpo(), reason="A legal hold applies.")
    built = build(ask_snapshot(categories=["keystrokes"], **period()))
    assert holding(built, alex, "keystrokes") == (
        (0, {"deletion_request": 2}) if held else (2, {}))


def test_a_deletion_request_for_a_period_keeps_only_that_period_out(ctx: None) -> None:
    alex = person("alex", "keystrokes")
    rated(alex)
    keystrokes(alex, recent(300), recent(60), recent(59))
    requests.submit_deletion_request(alex, scope=DeletionScope.RANGE, since=recent(70),
                                     until=recent(50))
    built = build(ask_snapshot(categories=["keystrokes"], **period()))
    assert holding(built, alex, "keystrokes") == (1, {"deletion_request": 2})


def test_records_past_retention_are_out(ctx: None) -> None:
    alex = person("alex", "keystrokes")  # keystrokes are kept 30 days
    ratings(alex, (recent(29 * 24 * 60), 1))
    keystrokes(alex, recent(30 * 24 * 60 + 5), recent(29 * 24 * 60))
    built = build(ask_snapshot(categories=["keystrokes"], collected_from=recent(40 * 24 * 60),
                               collected_to=recent(0)))
    assert holding(built, alex, "keystrokes") == (1, {"past_retention": 1})


def test_a_batch_above_the_maximum_dss_level_is_out_whole(ctx: None) -> None:
    alex = person("alex", "keystrokes")
    rated(alex)
    keystrokes(alex, recent(60), recent(59), recent(58), dss_level=3)
    keystrokes(alex, recent(30), dss_level=2)
    built = build(ask_snapshot(categories=["keystrokes"], max_dss_level=2, **period()))
    assert holding(built, alex, "keystrokes") == (1, {"above_max_dss": 3})


def test_activity_within_the_window_of_a_dss_3_or_4_document_is_out_edges_included(
        ctx: None) -> None:
    alex, bo = person("alex", "keystrokes"), person("bo", "keystrokes")
    confidential, strict, harmless = recent(600), recent(300), recent(120)
    ratings(alex, (confidential, 3), (strict, 4), (harmless, 2))
    ratings(bo, (harmless, 4))  # someone else's document says nothing about Alex
    keystrokes(alex,
               confidential - WINDOW - MS, confidential - WINDOW, confidential,
               confidential + WINDOW, confidential + WINDOW + MS,
               strict + WINDOW, strict + WINDOW + MS,
               harmless, harmless + MS)
    built = build(ask_snapshot(categories=["keystrokes"], **period()))
    assert dt.timedelta(minutes=30) == WINDOW
    assert holding(built, alex, "keystrokes") == (5, {"sensitive_document": 4})
    times = sorted(read_dataset(built, "keystrokes").column("t").to_pylist())
    assert times == sorted([confidential - WINDOW - MS, confidential + WINDOW + MS,
                            strict + WINDOW + MS, harmless, harmless + MS])


def test_without_ratings_in_the_period_nothing_of_a_person_is_in(ctx: None) -> None:
    start = recent(2 * 24 * 60)
    missing, before, edge = (person(name, "keystrokes") for name in ("missing", "before",
                                                                     "edge"))
    ratings(before, (start - WINDOW - MS, 1))  # just outside the period widened by the window
    ratings(edge, (start - WINDOW, 1))  # just inside
    for someone in (missing, before, edge):
        keystrokes(someone, recent(60), recent(59))
    built = build(ask_snapshot(categories=["keystrokes"], collected_from=start,
                               collected_to=recent(0)))
    assert holding(built, missing, "keystrokes") == (0, {"ratings_missing": 2})
    assert holding(built, before, "keystrokes") == (0, {"ratings_missing": 2})
    assert holding(built, edge, "keystrokes") == (2, {})


@pytest.mark.parametrize(("state", "included"), [
    (ObjectionState.RECEIVED, False), (ObjectionState.UPHELD, False),
    (ObjectionState.DISMISSED, True)])
def test_an_objection_to_ones_ratings_keeps_ones_activity_out(
        ctx: None, state: ObjectionState, included: bool) -> None:
    alex = person("alex", "keystrokes")
    rated(alex)
    keystrokes(alex, recent(60), recent(59))
    object_to(alex, "sensitivity_ratings", state)
    built = build(ask_snapshot(categories=["keystrokes"], **period()))
    assert holding(built, alex, "keystrokes") == (
        (2, {}) if included else (0, {"ratings_objected": 2}))


def test_messages_of_colleagues_outside_the_snapshot_are_dropped_and_names_are_pseudonyms(
        ctx: None) -> None:
    owner = person("owner", "conversations")
    kept = person("kept", "conversations")
    declined = person("declined")
    erasing = person("erasing", "conversations")
    requests.submit_deletion_request(erasing, scope=DeletionScope.ALL)
    rated(owner)
    unknown = "p-" + "0" * 12
    everyone = [kept.workplace_pseudonym, declined.workplace_pseudonym,
                erasing.workplace_pseudonym, unknown]
    ingest(owner, "conversations", [
        message(recent(60), "self", everyone, "mine"),
        message(recent(59), kept.workplace_pseudonym, everyone, "from kept"),
        message(recent(58), declined.workplace_pseudonym, everyone, "from declined"),
        message(recent(57), erasing.workplace_pseudonym, everyone, "from erasing"),
        message(recent(56), unknown, everyone, "from nobody")], dss_level=2)

    built = build(ask_snapshot(categories=["conversations"], **period()))

    assert holding(built, owner, "conversations") == (2, {"colleague_not_consented": 3})
    table = read_dataset(built, "conversations").to_pylist()
    key = open_snapshot_key(built)
    assert [row["text"] for row in table] == ["mine", "from kept"]
    assert [row["author"] for row in table] == [key.pseudonym(owner.id), key.pseudonym(kept.id)]
    assert {row["person"] for row in table} == {key.pseudonym(owner.id)}
    assert table[0]["participants"] == [
        key.pseudonym(kept.id), key.pseudonym(declined.id), key.pseudonym(erasing.id),
        key.unmatched_pseudonym(unknown)]
    assert not any(str(value).startswith("p-") or "p-" in str(value)
                   for row in table for value in row.values())


def test_the_same_person_has_different_pseudonyms_in_two_snapshots(ctx: None) -> None:
    alex = person("alex", "keystrokes")
    rated(alex)
    keystrokes(alex, recent(60))
    first = ask_snapshot(categories=["keystrokes"], **period())
    second = ask_snapshot(categories=["keystrokes"], **period())
    commit()
    work("tests")
    [one] = read_dataset(reload(first), "keystrokes").column("person").to_pylist()
    [two] = read_dataset(reload(second), "keystrokes").column("person").to_pylist()
    assert one.startswith("s-") and two.startswith("s-") and one != two
    assert one == open_snapshot_key(first).pseudonym(alex.id)
    table = read_dataset(reload(first), "keystrokes")
    assert table.column_names[0] == "person"
    assert table.column_names == ["person", *find_category("keystrokes").event_schema[
        "properties"]]
