"""Sign-in with OpenID Connect, server-side sessions, roles, and the demo identity provider."""

from __future__ import annotations

from flask import Flask, jsonify, redirect, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Response

from portal.auth import oidc
from portal.auth.models import Person
from portal.auth.sessions import DatabaseSessionInterface
from portal.db import db

# Endpoints that must answer even when sessions cannot be read.
UNGUARDED = frozenset({"core.healthz", "core.readyz", "static"})


def init_app(app: Flask) -> None:
    """Set up sessions, Flask-Login and the OIDC client (the demo's own in demo mode)."""
    app.session_interface = DatabaseSessionInterface()

    @app.before_request
    def _refuse_without_sessions() -> None:
        # The browser has a session we could not load (database down): answer 503 rather
        # than treat a signed-in person as a stranger.
        if getattr(session, "unavailable", False) and request.endpoint not in UNGUARDED:
            raise ServiceUnavailable()

    login_manager = LoginManager(app)
    login_manager.login_message = _l("Please sign in to see this page.")
    login_manager.login_message_category = "info"

    @login_manager.user_loader
    def load_person(person_id: str) -> Person | None:
        if not person_id.isdigit():
            return None
        person = db.get(Person, int(person_id))
        # A disabled person's cookie gets nothing, even before their sessions are swept.
        return person if person is not None and person.active else None

    @login_manager.unauthorized_handler
    def unauthorized() -> Response:
        if request.accept_mimetypes.best == "application/json":
            response = jsonify(error="unauthenticated", message="Sign in first.")
            response.status_code = 401
            return response
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    if app.config["DEMO"]:
        from portal.auth import demo

        demo.init_app(app)
        oidc.init_app(app, issuer=demo.issuer(app), client_id=demo.CLIENT_ID,
                      client_secret=demo.client_secret(app))
    else:
        oidc.init_app(app, issuer=app.config["OIDC_ISSUER"],
                      client_id=app.config["OIDC_CLIENT_ID"],
                      client_secret=app.config["OIDC_CLIENT_SECRET"])

    from portal.auth.views import bp

    app.register_blueprint(bp)
