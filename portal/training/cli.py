"""The ``portal training`` commands: clients, the snapshot worker, manifests, retirement."""

from __future__ import annotations

import click


@click.group("training")
def training_group() -> None:
    """Training clients, dataset snapshots and the models trained on them."""


@training_group.group("clients")
def clients_group() -> None:
    """Register, revoke and list the training pipelines that may ask for snapshots."""


# --- training clients (portal.training.service) ----------------------------------------------




# --- building snapshots (portal.training.build) ----------------------------------------------




# --- manifests (portal.training.manifest) -----------------------------------------------------




# --- retiring snapshots (portal.training.lineage) ---------------------------------------------
