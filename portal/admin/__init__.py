"""The privacy admin's pages: notice versions and their publication, collectors, notices to them."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve the privacy admin's pages."""
    from portal.admin import collectors, views

    app.register_blueprint(views.bp)
    app.register_blueprint(collectors.bp)
