"""Training datasets: the one way recorded data reaches model training.

A training client asks for a snapshot for a declared purpose; the portal builds it from the
vault under the rules of consent, objections, deletions, retention and sensitivity, logs the
read in each person's access log, and keeps the lineage from each person's records to the
models trained on them (see docs/training.md).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Add the ``portal training`` commands, the training API, pages and receivers."""
    from portal.signals import master_key_rotating
    from portal.training import api, lineage, manifest
    from portal.training.cli import training_group
    from portal.training.keys import rewrap_snapshot_keys
    from portal.training.views import connect_person_views

    app.cli.add_command(training_group)
    # A master-key rotation re-wraps the snapshots' keys with the vault's, in one transaction.
    master_key_rotating.connect(rewrap_snapshot_keys)
    manifest.register_checks(app)
    lineage.connect_receivers(app)
    connect_person_views(app)
    api.init_app(app)
    if app.config["DEMO"]:
        # After the collector API's step (portal.api.init_app, which create_app calls first):
        # the demo's datasets are built from the records that step stores.
        from portal.auth.demo.cli import register_seed_step
        from portal.training.demo import seed_training_demo

        register_seed_step(app, seed_training_demo)
