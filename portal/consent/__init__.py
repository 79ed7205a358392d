"""Consent: the ledger, the current state derived from it, and receipts."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve the consent pages and the public receipt key; add the consent commands."""
    from portal.consent import cli
    from portal.consent.views import bp

    app.register_blueprint(bp)
    cli.init_app(app)
