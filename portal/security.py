"""Response headers that every page carries: CSP, framing, sniffing, referrer, caching."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request
from flask_login import current_user
from werkzeug.wrappers import Response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def init_app(app: Flask, *, identity_provider: str) -> None:
    """Add the security headers to every response."""
    # Chromium applies form-action to the redirect after a form post: sign-out posts here
    # and is then redirected to the provider's end-session page.
    form_action = " ".join(filter(None, ["'self'", _origin(identity_provider)]))
    policy = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
              f"form-action {form_action}")

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        if request.endpoint != "static" and (current_user.is_authenticated
                                             or response.mimetype == "text/html"):
            # Pages may show personal data: no browser or proxy may keep a copy.
            headers["Cache-Control"] = "no-store"
        return response
