"""A person's own data: what is held about them, its complete download, and its sections."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Serve "My data" and the download of one's own data."""
    from portal.exports.views import bp

    app.register_blueprint(bp)
