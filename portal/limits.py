"""Rate limits (Flask-Limiter), counted in a shared store when one is configured.

With the default in-memory store each process counts for itself; set
PORTAL_RATELIMIT_STORAGE_URL to a Redis URL to count across processes and hosts.
"""

from __future__ import annotations

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address)


def sign_in_limit() -> str:
    """Return the limit on starting and finishing sign-ins, per client address."""
    return str(current_app.config["SIGN_IN_RATE_LIMIT"])


def download_limit() -> str:
    """Return the limit on downloads of one's own data, per person."""
    return str(current_app.config["DOWNLOAD_RATE_LIMIT"])


def export_limit() -> str:
    """Return the limit on HR's consent-record exports, per person."""
    return str(current_app.config["EXPORT_RATE_LIMIT"])


def per_person() -> str:
    """Key a limit by the signed-in person (by address for anyone else)."""
    from flask_login import current_user

    if current_user.is_authenticated:
        return f"person:{current_user.get_id()}"
    return get_remote_address()


def init_app(app: Flask) -> None:
    """Hand the configured store and limits to Flask-Limiter."""
    app.config["RATELIMIT_STORAGE_URI"] = app.config["RATELIMIT_STORAGE_URL"]
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter.init_app(app)
