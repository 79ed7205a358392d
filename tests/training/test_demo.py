"""The demo's training step: a pipeline, two datasets of the demo data, a model; rerun safely."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.api.cli import seed_demo_collections
from portal.auth.demo.cli import DEMO_SEED_STEPS
from portal.db import db
from portal.training.demo import DEMO_ASKS, DEMO_CLIENT, DEMO_MODEL, seed_training_demo
from portal.training.models import (
    SnapshotHolding,
    SnapshotState,
    TrainedModel,
    TrainingClient,
    TrainingSnapshot,
)
from tests.support.collector_api import World
from tests.support.config import portal_settings
from tests.support.identity import ISSUER

SUBJECTS = [f"demo-{number}" for number in range(8)]


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """No identity provider: the demo's people are made as signing in would, under its issuer
    (the one the demo collection looks people up by)."""
    return portal_settings(database_url, ISSUER, "http://localhost")


def test_demo_training_builds_datasets_with_exclusions_and_a_second_run_adds_nothing(
        app: Flask, client: FlaskClient, catalog: int) -> None:
    world = World(app, client)
    for subject in SUBJECTS:
        world.person(subject)
    with app.app_context():
        seed_demo_collections(days=2, batches_per_day=2)

    with app.app_context():
        line = seed_training_demo()
    assert line.startswith("Demo training: dataset 1 for code_and_text_completion"), line
    assert line.endswith(f"model {' '.join(DEMO_MODEL)} trained on them."), line

    with app.app_context():
        snapshots = list(db.scalars(select(TrainingSnapshot).order_by(TrainingSnapshot.number)))
        assert [(snapshot.purpose_key, tuple(snapshot.categories), snapshot.max_dss_level)
                for snapshot in snapshots] == [(ask.purpose, ask.categories, ask.max_dss_level)
                                               for ask in DEMO_ASKS]
        assert all(snapshot.state is SnapshotState.READY for snapshot in snapshots)
        assert all(snapshot.totals["included"] > 0 for snapshot in snapshots)
        # What a demo person sees there: records in, and records left out with reasons,
        # among them the DSS window, a level above the maximum, and colleagues' messages.
        excluded: Counter[str] = Counter()
        for holding in db.scalars(select(SnapshotHolding)):
            excluded.update(holding.excluded)
        assert {"sensitive_document", "above_max_dss", "colleague_not_consented"} <= set(
            excluded), excluded
        model = db.scalar(select(TrainedModel))
        assert model is not None
        assert (model.name, model.version) == DEMO_MODEL
        assert [snapshot.number for snapshot in model.snapshots] == [1, 2, 3]

    with app.app_context():
        again = seed_training_demo()
    assert again == f"Demo training: model {' '.join(DEMO_MODEL)} was already trained on " \
                    "datasets 1, 2 and 3; nothing asked for."
    with app.app_context():
        assert db.scalar(select(func.count()).select_from(TrainingClient)) == 1
        assert db.scalar(select(TrainingClient.name)) == DEMO_CLIENT
        assert db.scalar(select(func.count()).select_from(TrainingSnapshot)) == len(DEMO_ASKS)
        assert db.scalar(select(func.count()).select_from(TrainedModel)) == 1


def test_the_step_runs_in_demo_mode_only_and_after_the_collections(app: Flask) -> None:
    # The test application is not a demo: no step of `portal demo seed` is registered.
    assert seed_training_demo not in app.extensions.get(DEMO_SEED_STEPS, [])
