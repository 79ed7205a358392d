"""The demo's collection goes through the real API, and can run again."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.api.cli import _demo_plan, seed_demo_collections
from portal.api.service import acknowledgements_for, categories_in_force
from portal.consent.service import current_states
from portal.db import db
from portal.vault.models import CollectedBatch
from portal.vault.reading import held_summary
from tests.support.collector_api import World

SUBJECTS = [f"demo-{number}" for number in range(12)]


def test_demo_collections_are_real_batches_and_a_second_run_adds_nothing(
        app: Flask, world: World, client: FlaskClient) -> None:
    people = {subject: world.person(subject) for subject in SUBJECTS}
    with app.app_context():
        keys = categories_in_force()
        plans = {subject: _demo_plan(subject, keys) for subject in SUBJECTS}
    withdrawing = [subject for subject, (_given, withdrawn) in plans.items() if withdrawn]
    assert withdrawing, "the demo should show at least one withdrawal"

    with app.app_context():
        report = seed_demo_collections(days=2, batches_per_day=1)
    assert report.people == len(SUBJECTS)
    assert report.refused == 0
    assert report.batches_stored > 0 and report.events_stored > 0
    assert report.consents_withdrawn == len(withdrawing) == report.acknowledged

    with app.app_context():
        for subject, person_id in people.items():
            given, withdrawn = plans[subject]
            held = held_summary(person_id)
            # Held: what the person consented to, and the categories on other legal bases.
            assert set(held) == {*given, "performance", "sensitivity_ratings"}
            states = current_states(person_id)
            assert {key for key, status in states.items() if status.allows_collection} == (
                set(given) - set(withdrawn))
            stops = acknowledgements_for(person_id)
            assert [(stop.category_key, stop.acknowledged) for stop in stops] == [
                (key, True) for key in withdrawn]
        batches = db.scalar(select(func.count()).select_from(CollectedBatch))
        withdrawn_batches = sum(
            db.scalar(select(func.count()).select_from(CollectedBatch).where(
                CollectedBatch.person_id == people[subject],
                CollectedBatch.category_key.in_(plans[subject][1]))) or 0
            for subject in withdrawing)
    assert batches == report.batches_stored

    with app.app_context():
        again = seed_demo_collections(days=2, batches_per_day=1)
    assert again.batches_stored == again.consents_given == again.consents_withdrawn == 0
    # A second run asks first: it no longer sends what was withdrawn, and is refused nothing.
    assert again.refused == 0
    assert again.batches_already_there == report.batches_stored - withdrawn_batches
