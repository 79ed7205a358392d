"""The catalog of what is collected, its versioned notices, and objections to it."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Add ``portal catalog``."""
    from portal.catalog.cli import catalog_group

    app.cli.add_command(catalog_group)
