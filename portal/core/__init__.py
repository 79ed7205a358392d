"""Pages of no single feature: the dashboard, the category pages, language, health."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve the dashboard, the language switch, the health endpoints and the category pages."""
    from portal.core.categories import bp as categories_bp
    from portal.core.views import bp

    app.register_blueprint(bp)
    app.register_blueprint(categories_bp)
