"""Consent: the ledger, the current state derived from it, and receipts."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve the consent pages and the public receipt key; add the consent commands.

    A notice version published with material changes ends the consents given under the old text.
    """
    from portal.consent import cli, service
    from portal.consent.views import bp
    from portal.signals import notice_published

    notice_published.connect(service.end_consents_for_notice)
    app.register_blueprint(bp)
    cli.init_app(app)
