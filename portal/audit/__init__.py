"""The audit log: every read of personal data and every change, hash-chained, append-only."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Write queued audit entries at every commit; add ``portal audit`` and the access log."""
    from portal.audit.cli import audit_group
    from portal.audit.service import install_commit_hooks
    from portal.audit.views import bp

    install_commit_hooks()
    app.cli.add_command(audit_group)
    app.register_blueprint(bp)
