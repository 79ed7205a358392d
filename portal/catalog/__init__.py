"""The catalog of what is collected, its versioned notices, and the privacy admin's pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve the privacy admin pages; add ``portal catalog``."""
    from portal.admin.views import bp as admin_bp
    from portal.catalog.cli import catalog_group

    app.register_blueprint(admin_bp)
    app.cli.add_command(catalog_group)
