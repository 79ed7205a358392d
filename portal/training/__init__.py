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
    from portal.training import api
    from portal.training.cli import training_group

    app.cli.add_command(training_group)
    api.init_app(app)
