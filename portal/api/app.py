"""The collector API's own Flask app, mounted beside the portal's under ``/api/v1``.

Collectors call the API many times a second; people call the portal's pages a few times a
minute. The portal's app runs, for every request, the hooks its pages need (languages,
sign-in, CSRF, rate limits, sessions, the NUL check, headers that depend on the answer):
measured, they alone held the API to a third of a bare Flask app's throughput. This app has
only what the API needs: the same configuration and database pool, the API's blueprint, the
portal's error answers, request ids, access lines and metrics, the NUL refusal, and a fixed
list of security headers. One deployable still: :func:`mount` makes ``wsgi:app`` (and every
test client of the portal's app) send ``/api/v1`` here and everything else to the portal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask
from flask.sessions import SessionInterface, SessionMixin

from portal.i18n import requested_locale

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Where the API lives; the blueprint's routes keep this prefix (the paths are unchanged).
PREFIX = "/api/v1"
#: The portal's extensions the API's code reads: the API's autocommit engine, the identity
#: provider (whose subjects the API's ``subject`` fields are).
SHARED_EXTENSIONS = ("portal.api.autocommit_engine", "portal.oidc")
#: Where higher packages leave what the API's app must also serve (see the registries below).
BLUEPRINTS = "portal.api.blueprints"
#: The registries the API's app reads at request time: the OpenAPI additions, the other kinds
#: of tokens (portal.api.openapi, portal.api.auth); filled by higher packages' init_app.
REGISTRIES = ("portal.api.openapi_additions", "portal.api.other_tokens")


def register_api_blueprint(app: Flask, blueprint: Blueprint) -> None:
    """Serve ``blueprint`` (its routes under ``/api/v1``) from the API's app too.

    For a higher package (training) whose API lives beside the collector API: it registers
    here in its ``init_app``, and :func:`create_api_app`, run after every ``init_app``, adds it
    to the API's app, without the API importing that package.
    """
    assert blueprint.url_prefix and blueprint.url_prefix.startswith(PREFIX + "/")
    app.extensions.setdefault(BLUEPRINTS, []).append(blueprint)


class NoSessions(SessionInterface):
    """No session at all: the API authenticates by bearer token, never by cookie.

    Flask's cookie sessions would build a signer and parse any cookie sent, on every request,
    for nothing.
    """

    def open_session(self, app: Flask, request: Any) -> None:
        """Open none (Flask then lends a null session)."""
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Any) -> None:
        """Save nothing."""


def create_api_app(portal: Flask) -> Flask:
    """Build the collector API's app from the portal's app: same settings, same pool."""
    from flask_babel import Babel

    from portal import db, errors, security
    from portal.api.service import AUTOCOMMIT_ENGINE
    from portal.api.views import bp
    from portal.observability import logs, metrics

    assert AUTOCOMMIT_ENGINE in SHARED_EXTENSIONS
    api = Flask(__name__, instance_path=portal.instance_path)
    # The same object, not a copy: a setting changed at run time (as tests do) holds for both.
    api.config = portal.config
    api.session_interface = NoSessions()
    for name in SHARED_EXTENSIONS:
        api.extensions[name] = portal.extensions[name]
    for name in REGISTRIES:
        if name in portal.extensions:
            api.extensions[name] = portal.extensions[name]
    # As in the portal: the request id first, so every line the others log carries it.
    logs.init_app(api)
    metrics.count_requests(api)
    db.share_engine(api, portal)
    # The portal's NUL refusal, with its words: the parsers refuse control characters too,
    # but a path or a query parameter they do not read must not reach a query either.
    security.refuse_nul_in_api(api)
    # The portal's error answers (JSON under /api/), for what the blueprint's own handlers do
    # not see: unknown paths, wrong methods, a database that is down, a crash.
    errors.init_app(api)
    # The few translated answers (the portal's error texts) in the caller's language.
    Babel(api, locale_selector=requested_locale)
    api.register_blueprint(bp)
    for blueprint in portal.extensions.get(BLUEPRINTS, []):
        api.register_blueprint(blueprint)
    return api


def mount(portal: Flask, api: Flask) -> None:
    """Send requests for ``/api/v1`` to ``api`` and every other to the portal.

    Not werkzeug's DispatcherMiddleware: it moves the prefix into ``SCRIPT_NAME``, so the
    API's routes, its access lines, its metrics and the error handlers' ``/api/`` test would
    all see other paths than before. Here each app sees the request exactly as sent.

    The API's security headers are a fixed list (portal.security.api_headers), added here to
    the list of the answer's headers: an after_request hook setting them one by one through
    werkzeug's Headers cost the API more than a tenth of its time per request.
    """
    from portal import security

    portal_app: WSGIApplication = portal.wsgi_app
    api_app: WSGIApplication = api.wsgi_app
    nested = PREFIX + "/"
    provider = portal.extensions["portal.oidc"].expected_issuer
    plain = security.api_headers(provider, secure=False)
    secure = security.api_headers(provider, secure=True)

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not (path.startswith(nested) or path == PREFIX):
            return portal_app(environ, start_response)
        fixed = secure if environ.get("wsgi.url_scheme") == "https" else plain

        def start_api_response(status: str, headers: list[tuple[str, str]],
                               exc_info: Any = None) -> Any:
            # Every answer names people or refuses: none may be kept by a cache on the way.
            if not any(name.lower() == "cache-control" for name, _value in headers):
                headers.append(("Cache-Control", "no-store"))
            headers.extend(fixed)
            return start_response(status, headers, exc_info)

        return api_app(environ, start_api_response)

    portal.wsgi_app = dispatch  # type: ignore[method-assign,assignment]
