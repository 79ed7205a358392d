"""Response headers that every page carries: CSP, framing, sniffing, referrer, caching."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, current_app, request, session
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

#: CSRF protection of every form; views called server to server are exempted where defined.
csrf = CSRFProtect()
HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
NUL_REFUSED = _l("The request contained a NUL character, which no text in the portal may "
                 "contain. Nothing was changed.")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _someone_signed_in() -> bool:
    # A request without a session (the collector API) has nobody signed in: asking
    # Flask-Login would only load the answer "anonymous" at some cost on every API call.
    if current_app.session_interface.is_null_session(session):
        return False
    return bool(current_user.is_authenticated)


def _carries_nul() -> bool:
    if "\x00" in request.path:
        return True
    fields = list(request.args.items(multi=True))
    if request.method == "POST" and request.mimetype in FORM_TYPES:
        fields += request.form.items(multi=True)
    return any("\x00" in name or "\x00" in value for name, value in fields)


def fixed_headers(identity_provider: str) -> list[tuple[str, str]]:
    """Return the headers every answer carries, whatever it is (HSTS aside: https only)."""
    # Chromium applies form-action to the redirect after a form post: sign-out posts here
    # and is then redirected to the provider's end-session page.
    form_action = " ".join(filter(None, ["'self'", _origin(identity_provider)]))
    policy = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
              f"form-action {form_action}")
    return [("Content-Security-Policy", policy), ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
            ("Permissions-Policy", "camera=(), microphone=(), geolocation=()")]


def api_headers(identity_provider: str, *, secure: bool) -> list[tuple[str, str]]:
    """Return the headers every answer of the collector API carries, as a fixed list.

    The API answers JSON only, to bearer tokens only: no view sets these headers and no
    session exists, so nothing about them depends on the answer (HSTS only on https).
    """
    return [*fixed_headers(identity_provider), *([HSTS] if secure else [])]


def _may_carry_nul(environ: dict[str, object]) -> bool:
    """Say, without parsing anything, whether the request could carry a NUL at all."""
    query = str(environ.get("QUERY_STRING") or "")
    return "\x00" in str(environ.get("PATH_INFO") or "") or "%00" in query or "\x00" in query


def refuse_nul_in_api(app: Flask) -> None:
    """Refuse NUL characters in the collector API's paths and queries, as the portal does.

    The API's bodies are JSON: a form (where the portal also looks) is refused with 415.
    """

    @app.before_request
    def _refuse_nul() -> None:
        # A NUL in a query can only arrive as %00 (or raw): most requests are let through
        # without parsing the query a second time.
        if _may_carry_nul(request.environ) and _carries_nul():
            abort(400, description=NUL_REFUSED)


def refuse_nul(app: Flask) -> None:
    """Refuse, with 400, every request whose path, query or form carries a NUL character."""

    @app.before_request
    def _refuse_nul() -> None:
        # PostgreSQL's text cannot hold NUL (SQLite's can), and no person types one: refused
        # here, before any view, instead of failing deep inside a query with a 500.
        if _carries_nul():
            abort(400, description=NUL_REFUSED)


def init_app(app: Flask, *, identity_provider: str) -> None:
    """Refuse NUL characters and add the security headers to every response."""
    refuse_nul(app)

    # Built once: the same headers go on every response, each unless a view set its own.
    fixed = fixed_headers(identity_provider)

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
