"""Rate limits (Flask-Limiter), counted in a shared store when one is configured.

With the default in-memory store each process counts for itself; in production, set
PORTAL_RATELIMIT_STORAGE_URL to a Redis URL to count across processes and hosts.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app
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
    """Hand the configured store and limits to Flask-Limiter; refusals say when to come back."""
    app.config["RATELIMIT_STORAGE_URI"] = app.config["RATELIMIT_STORAGE_URL"]
    # No X-RateLimit-* headers on every answer: they cost two more reads of the store per
    # request (in Redis, two more round trips than the count itself). Refusals still carry
    # Retry-After, below.
    app.config["RATELIMIT_HEADERS_ENABLED"] = False
    limiter.init_app(app)

    @app.after_request
    def _retry_after(response: Response) -> Response:
        limit = limiter.current_limit
        if response.status_code == 429 and limit is not None and limit.breached:
            # Whole seconds until the window that refused the request ends (RFC 9110 10.2.3).
            response.headers.setdefault(
                "Retry-After", str(max(1, math.ceil(limit.reset_at - time.time()))))
        return response
