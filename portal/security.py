"""Response headers that every page carries: CSP, framing, sniffing, referrer, caching."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app, request, session
from flask_login import current_user
from werkzeug.wrappers import Response

HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _someone_signed_in() -> bool:
    # A request without a session (the collector API) has nobody signed in: asking
    # Flask-Login would only load the answer "anonymous" at some cost on every API call.
    if current_app.session_interface.is_null_session(session):
        return False
    return bool(current_user.is_authenticated)


def init_app(app: Flask, *, identity_provider: str) -> None:
    """Add the security headers to every response."""
    # Chromium applies form-action to the redirect after a form post: sign-out posts here
    # and is then redirected to the provider's end-session page.
    form_action = " ".join(filter(None, ["'self'", _origin(identity_provider)]))
    policy = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
              f"form-action {form_action}")
    # Built once: the same headers go on every response, each unless a view set its own.
    fixed = [("Content-Security-Policy", policy), ("X-Content-Type-Options", "nosniff"),
             ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
             ("Cross-Origin-Opener-Policy", "same-origin"),
             ("Permissions-Policy", "camera=(), microphone=(), geolocation=()")]

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        present = {name.lower() for name, _value in headers.items()}
        headers.extend([(name, value) for name, value in fixed
                        if name.lower() not in present])
        if request.is_secure and "strict-transport-security" not in present:
            headers.add(*HSTS)
        if request.endpoint != "static" and (response.mimetype == "text/html"
                                             or _someone_signed_in()):
            # Pages may show personal data: no browser or proxy may keep a copy.
            headers["Cache-Control"] = "no-store"
        return response
