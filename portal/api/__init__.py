"""The collector API: collector clients, their tokens, and the webhook notices they are sent."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve the collector API; add its commands, its demo data and the collection stops partial.

    The API's requests are answered by its own app (portal.api.app), which adds
    ``Cache-Control: no-store`` to every answer; its blueprint is registered here as well so
    that the portal's pages can build its URLs (``url_for("api.openapi_document")``).
    """
    from portal.api import webhooks
    from portal.api.cli import collectors_group, seed_demo_step, webhooks_group
    from portal.api.service import AUTOCOMMIT_ENGINE
    from portal.api.views import bp, collection_stops
    from portal.auth.demo.cli import register_seed_step
    from portal.db import get_engine
    from portal.signals import collection_stopped

    # The same pool as the request's unit of work; its connections lent in autocommit mode.
    app.extensions[AUTOCOMMIT_ENGINE] = get_engine(app).execution_options(
        isolation_level="AUTOCOMMIT")
    app.register_blueprint(bp)
    # Stop notices are queued whenever consent ends collection, in the same unit of work.
    collection_stopped.connect(webhooks.tell_collectors_to_stop)
    app.add_template_global(collection_stops)
    app.cli.add_command(collectors_group)
    app.cli.add_command(webhooks_group)
    if app.config["DEMO"]:
        register_seed_step(app, seed_demo_step)
