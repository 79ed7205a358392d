"""HR: consent-record exports and aggregate reporting, purpose-bound and audited."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve HR's consent-record pages and exports."""
    from portal.hr.views import bp

    app.register_blueprint(bp)
