"""The catalog of what is collected, its versioned notices, and the privacy admin's pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve the category pages and the privacy admin pages; add ``portal catalog``."""
    from portal.admin.views import bp as admin_bp
    from portal.catalog.cli import catalog_group
    from portal.catalog.views import bp as catalog_bp

    app.register_blueprint(catalog_bp)
    app.register_blueprint(admin_bp)
    app.cli.add_command(catalog_group)
