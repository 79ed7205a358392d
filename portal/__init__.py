"""The employee consent and transparency portal."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the portal: settings first, then each part in the order it depends on."""
    from portal import (
        admin,
        api,
        audit,
        auth,
        catalog,
        cli,
        config,
        consent,
        core,
        db,
        errors,
        exports,
        hr,
        i18n,
        limits,
        mail,
        navigation,
        requests,
        security,
        training,
        vault,
    )
    from portal.api.app import create_api_app
    from portal.api.app import mount as mount_collector_api
    from portal.observability import logs, metrics

    app = Flask(
        __name__,
        instance_path=os.environ.get("PORTAL_INSTANCE_PATH") or str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
    )
    settings = config.load_settings(
        Path(app.instance_path),
        environ={k: v for k, v in os.environ.items() if k != "PORTAL_INSTANCE_PATH"},
        override=test_config,
    )
    app.config.from_mapping(settings.model_dump())
    app.config.update(
        # Our sessions are server-side (portal.auth.sessions); these govern Flask-WTF's CSRF.
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    logs.configure_logging(app)
    # First of all the request hooks: the request id is there for every line the others log.
    logs.init_app(app)
    metrics.init_app(app)
    if app.config["DEMO"]:
        app.logger.warning("DEMO MODE: sign-in uses the built-in demo identity provider and "
                           "demo people. Never use demo mode with real employees' data.")

    db.init_app(app)
    mail.init_app(app)
    i18n.init_app(app)
    navigation.init_app(app)
    security.csrf.init_app(app)
    limits.init_app(app)
    auth.init_app(app)
    security.init_app(app, identity_provider=app.extensions["portal.oidc"].expected_issuer)
    errors.init_app(app)
    # The features, each after the ones it builds on (docs/architecture.md lists the layers).
    audit.init_app(app)
    catalog.init_app(app)
    consent.init_app(app)
    vault.init_app(app)
    api.init_app(app)
    exports.init_app(app)
    training.init_app(app)
    requests.init_app(app)
    hr.init_app(app)
    core.init_app(app)
    admin.init_app(app)
    cli.init_app(app)
    # The collector API answers from an app of its own (portal.api.app), still one deployable.
    mount_collector_api(app, create_api_app(app))
    # Last: the proxies' headers are believed for the portal's requests and the API's alike.
    configure_proxies(app)
    return app


def configure_proxies(app: Flask) -> None:
    """Believe ``X-Forwarded-For`` and ``-Proto`` only from the configured number of proxies.

    Without ``PORTAL_TRUSTED_PROXIES`` anyone could claim another address (and so escape the
    rate limits) or HTTPS (and so get HSTS and secure cookies on plain HTTP); with it, the
    values the nearest proxies added are used. ``X-Forwarded-Host`` is not trusted: the proxy
    passes the ``Host`` header itself, and a host a client chose must not reach our links.
    """
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,  # type: ignore[method-assign]
                                x_host=0, x_port=0, x_prefix=0)
