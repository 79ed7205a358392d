"""The privacy admin's pages: notices and their publication, collectors, training datasets."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve the privacy admin's pages."""
    from portal.admin import collectors, snapshots, views

    app.register_blueprint(views.bp)
    app.register_blueprint(collectors.bp)
    app.register_blueprint(snapshots.bp)
