"""The built-in demo identity provider: OpenID Connect with invented people (demo mode only).

It runs inside the portal under ``/demo-idp`` and is reached by the portal's own OIDC client
over HTTP, through discovery, exactly like a company's provider, so that demo mode exercises
the real sign-in code. It asks for no password: whoever opens the page may be anyone listed.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from portal.auth.demo.cli import demo_group
from portal.auth.demo.provider import (
    CLIENT_ID,
    EXTENSION,
    DemoIdentityProvider,
    create_server,
    issuer,
)
from portal.auth.demo.service import derive_client_secret, load_people, load_signing_key
from portal.auth.demo.views import bp

__all__ = ["CLIENT_ID", "client_secret", "demo_group", "init_app", "issuer"]

# The groups the demo people carry, mapped to portal roles unless ROLE_MAP says otherwise.
DEMO_ROLE_MAP = {"hr": ["people-ops"], "dpo": ["privacy-office"], "admin": ["privacy-admin"]}


def client_secret(app: Flask) -> str:
    """Return the portal's client secret at the demo provider (derived, never stored)."""
    return derive_client_secret(app.config["SECRET_KEY"])


def init_app(app: Flask) -> None:
    """Start the demo provider on ``app``; refuses to run outside demo mode."""
    if not app.config["DEMO"]:
        raise RuntimeError("the demo identity provider runs only with PORTAL_DEMO=1")
    if not app.config["ROLE_MAP"]:
        app.config["ROLE_MAP"] = {role: list(groups) for role, groups in DEMO_ROLE_MAP.items()}
    app.extensions[EXTENSION] = DemoIdentityProvider(
        people=load_people(),
        signing_key=load_signing_key(Path(app.instance_path)),
        server=create_server(app),
    )
    app.register_blueprint(bp)
