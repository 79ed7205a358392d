"""The demo's training: a pipeline that asks for two datasets of the demo data and trains on them.

A step of ``portal demo seed`` (demo mode only), run after the collector API's step has
stored the demo people's records: the demo person then finds on ``/my-data/training`` real
snapshots holding their records, and the records left out and why (the DSS window, colleagues
who did not consent, withdrawn consent), and the privacy admin finds them in the list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import click
from sqlalchemy import select

from portal.db import commit, db, utcnow
from portal.training import build
from portal.training.models import (
    SnapshotState,
    TrainedModel,
    TrainingClient,
    TrainingScope,
    TrainingSnapshot,
)
from portal.training.service import (
    SnapshotAsk,
    create_client,
    find_client,
    register_model,
    request_snapshot,
)

DEMO_CLIENT = "demo training pipeline"
DEMO_MODEL = ("internal-assistant", "demo-1")


@dataclass(frozen=True)
class DemoAsk:
    """A dataset the demo pipeline asks for: a purpose, its categories, the highest DSS level."""

    purpose: str
    categories: tuple[str, ...]
    max_dss_level: int


#: What the demo pipeline trains the internal assistant on (each purpose as the notice allows).
DEMO_ASKS = (
    DemoAsk("code_and_text_completion", ("keystrokes", "ai_transcripts"), 2),
    DemoAsk("assistant_workflows", ("pointer", "clicks"), 3),
    # Messages of colleagues who did not consent to conversations themselves are left out.
    DemoAsk("conversation_summaries", ("conversations",), 2),
)


def seed_training_demo(*, days: int = 10) -> str:
    """Register the demo pipeline, build its datasets of the last ``days`` days, train on them.

    Safe to run again: the pipeline is reused, and once its model is registered nothing more
    is asked for. Call inside an application context; commits what it does. Returns a line
    saying what was done.
    """
    client = find_client(DEMO_CLIENT)
    if client is None:
        client, _token = create_client(DEMO_CLIENT,
                                       purposes=sorted({ask.purpose for ask in DEMO_ASKS}),
                                       scopes=list(TrainingScope))
        commit()
    elif not client.active:
        raise click.ClickException(f"the training client {DEMO_CLIENT!r} was revoked; the "
                                   "demo does not bring it back")
    name, version = DEMO_MODEL
    model = db.scalar(select(TrainedModel).where(TrainedModel.client_id == client.id,
                                                 TrainedModel.name == name,
                                                 TrainedModel.version == version))
    if model is not None:
        return (f"Demo training: model {name} {version} was already trained on datasets "
                f"{_numbers(model.snapshots)}; nothing asked for.")
    snapshots = _ask(client, days)
    # The worker's loop, as `portal training work` runs it (it commits as it goes).
    build.work("portal demo seed")
    snapshots = [db.get_one(TrainingSnapshot, snapshot.id, populate_existing=True)
                 for snapshot in snapshots]
    unbuilt = [snapshot for snapshot in snapshots if snapshot.state is not SnapshotState.READY]
    if unbuilt:
        return "Demo training: not built: " + "; ".join(
            f"dataset {snapshot.number} {snapshot.state.value} ({snapshot.failed_reason})"
            for snapshot in unbuilt)
    register_model(client, name, version, [snapshot.public_id for snapshot in snapshots])
    commit()
    described = "; ".join(
        f"dataset {snapshot.number} for {snapshot.purpose_key}: "
        f"{snapshot.totals.get('included', 0)} records of {snapshot.totals.get('people', 0)} "
        f"people, {sum(snapshot.totals.get('excluded', {}).values())} left out"
        for snapshot in snapshots)
    return f"Demo training: {described}; model {name} {version} trained on them."


def _ask(client: TrainingClient, days: int) -> list[TrainingSnapshot]:
    """Queue the demo's datasets of the last ``days`` days (committed, for the workers)."""
    until = utcnow().replace(microsecond=0)
    since = until - dt.timedelta(days=days)
    snapshots = [request_snapshot(client, SnapshotAsk(
        purpose=ask.purpose, categories=ask.categories, collected_from=since,
        collected_to=until, max_dss_level=ask.max_dss_level)) for ask in DEMO_ASKS]
    commit()
    return snapshots


def _numbers(snapshots: list[TrainingSnapshot]) -> str:
    numbers = [str(snapshot.number) for snapshot in snapshots]
    return " and ".join([", ".join(numbers[:-1]), numbers[-1]] if len(numbers) > 1
                        else numbers) or "none"
