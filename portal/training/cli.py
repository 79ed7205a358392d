"""The ``portal training`` commands: clients, the snapshot worker, manifests, retirement."""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext


@click.group("training")
def training_group() -> None:
    """Training clients, dataset snapshots and the models trained on them."""


@training_group.group("clients")
def clients_group() -> None:
    """Register, revoke and list the training pipelines that may ask for snapshots."""


# --- training clients (portal.training.service) ----------------------------------------------




# --- building snapshots (portal.training.build) ----------------------------------------------

@training_group.command("work")
@click.option("--once", is_flag=True,
              help="Build what waits now, then stop (default: keep polling for new snapshots).")
@click.option("--owner", default="", metavar="NAME",
              help="This worker's name on its leases (default: host and process id).")
@click.option("--poll", default=5.0, show_default=True, metavar="SECONDS",
              help="How long to wait between looks for new work when idle.")
@with_appcontext
def work_command(once: bool, owner: str, poll: float) -> None:
    """Build queued training snapshots: plan their parts, take parts with a lease, build them.

    Run as many workers as you like, on any host sharing the database: each takes parts
    the others do not hold. A worker that is killed keeps its part until the lease ends
    (TRAINING_PART_LEASE_SECONDS); another worker then builds that part again. A snapshot
    becomes ready only once every part is written.
    """
    from portal.training import build

    name = owner or build.default_owner()
    while True:
        built = build.work(name)
        if built:
            click.echo(f"built {built} part(s) as {name}")
        if once:
            return
        time.sleep(poll)




# --- manifests (portal.training.manifest) -----------------------------------------------------




# --- retiring snapshots (portal.training.lineage) ---------------------------------------------
