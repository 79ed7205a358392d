"""Fixtures: real parts started by the tests themselves.

- a throwaway PostgreSQL cluster for the run, and a fresh database per test copied from a
  migrated template (SQLite: a copied file), so every test runs on both backends;
- a real OpenID Connect provider (npm oidc-provider) behind a proxy that can tamper with its
  answers, with one account per role;
- the portal itself, through Flask's test client or served on a real port for the browser.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server

from portal import create_app
from portal.cli import upgrade_database
from portal.db import get_engine
from tests.support.browserless_login import login_via_form
from tests.support.oidc_provider import OIDCProvider
from tests.support.postgres import PostgresCluster, free_port
from tests.support.tamper_proxy import TamperProxy, provider_behind_proxy

BACKENDS = ("sqlite", "postgresql")
CLIENT_ID = "consent-portal"
CLIENT_SECRET = "test-client-secret-that-is-long-enough"  # only ever on 127.0.0.1
PASSWORD = "correct horse battery staple"
# A fixed master key for tests only (base64 of 32 bytes); never used outside the test run.
TEST_MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LW9ubHktZm9yLXRlc3RzISE="
ROLE_MAP = {"hr": ["people-ops"], "dpo": ["privacy-office"], "admin": ["privacy-admin"]}


@dataclass(frozen=True)
class Account:
    """A person known to the test identity provider."""

    sub: str
    name: str
    email: str
    groups: tuple[str, ...]
    department: str
    location: str

    def provider_entry(self) -> dict[str, Any]:
        return {"sub": self.sub, "password": PASSWORD, "claims": {
            "name": self.name, "email": self.email, "groups": list(self.groups),
            "department": self.department, "location": self.location,
            "zoneinfo": "Europe/Berlin", "locale": "en"}}


ACCOUNTS = {
    "alex": Account("sub-alex", "Alex Morgan", "alex@example.com", (), "Engineering", "Berlin"),
    "bea": Account("sub-bea", "Bea Schmidt", "bea@example.com", (), "Design", "Munich"),
    "chris": Account("sub-chris", "Chris Okafor", "chris@example.com", ("people-ops",),
                     "People Operations", "Berlin"),
    "dana": Account("sub-dana", "Dana Novak", "dana@example.com", ("privacy-office",),
                    "Legal & Privacy", "Vienna"),
    "eli": Account("sub-eli", "Eli Laurent", "eli@example.com", ("privacy-admin",),
                   "Legal & Privacy", "Paris"),
    # Hostile attributes from the provider (tests/hardening/test_hostile_content.py): markup,
    # script, spreadsheet formulas, template syntax and CRLF, each where a field would run it.
    "mallory": Account("sub-mallory",
                       "=HYPERLINK(\"http://evil.example/name\")<script>alert('name')</script>",
                       "mallory+{{7*7}}@example.com", (),
                       "+cmd|' /C calc'!A0\"><img src=x onerror=alert('department')>",
                       "@SUM(1)<link rel=stylesheet href=file:///etc/passwd>"),
    "oscar": Account("sub-oscar", "-2+3<svg onload=alert('staff')>{{7*7}}", "oscar@example.com",
                     ("people-ops", "privacy-office", "privacy-admin"),
                     "\tjavascript:alert('staff')", "Vienna"),
    "eve": Account("sub-eve", "Eve\r\nBcc: x@evil.example",
                   "eve@example.com\r\nBcc: x@evil.example", (), "Sales", "Berlin"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", action="append", choices=BACKENDS,
                     help="run on this database backend only (default: both)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend") or list(BACKENDS)
        if metafunc.definition.get_closest_marker("postgresql_only"):
            chosen = [backend for backend in chosen if backend == "postgresql"]
        metafunc.parametrize("backend", chosen, scope="session")


# --- databases -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _settings(database_url: str, issuer: str, base_url: str) -> dict[str, Any]:
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "MASTER_KEY": TEST_MASTER_KEY,
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_SCOPES": "openid profile email groups",
        "ROLE_MAP": ROLE_MAP,
        "BASE_URL": base_url,
        # The tests' webhook receivers listen on 127.0.0.1.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": True,
    }


@pytest.fixture(scope="session")
def template_database(backend: str, request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrate one database per backend from empty; tests get copies of it."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.sqlite3"
        url = f"sqlite:///{path}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database("portal_template")
    app = create_app(_settings(url, "http://127.0.0.1:9", "http://localhost"))
    upgrade_database(app)
    get_engine(app).dispose()
    return url


_database_numbers = itertools.count(1)


@pytest.fixture
def database_url(backend: str, template_database: str, request: pytest.FixtureRequest,
                 tmp_path: Path) -> Iterator[str]:
    """Give the test its own database, already at the latest schema."""
    if backend == "sqlite":
        source = Path(template_database.removeprefix("sqlite:///"))
        target = tmp_path / "portal.sqlite3"
        shutil.copyfile(source, target)
        yield f"sqlite:///{target}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    name = f"portal_test_{next(_database_numbers)}"
    yield cluster.create_database(name, template="portal_template")
    cluster.drop_database(name)


# --- identity provider -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def live_port() -> int:
    """The port the portal is served on for browser tests, fixed so the provider knows it."""
    return free_port()


@pytest.fixture(scope="session")
def production_ports() -> tuple[int, int]:
    """Two ports for gunicorn servers of the production tests, fixed so the provider knows
    them (people sign in through either)."""
    first, second = free_port(), free_port()
    while second == first:
        second = free_port()
    return first, second


@pytest.fixture(scope="session")
def idp(live_port: int, production_ports: tuple[int, int],
        ) -> Iterator[tuple[OIDCProvider, TamperProxy]]:
    """The real provider, reached through a proxy that passes answers through unchanged
    unless a test sets its ``mode``."""
    origins = ["http://localhost", f"http://127.0.0.1:{live_port}",
               *(f"http://127.0.0.1:{port}" for port in production_ports)]
    clients = [{
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{origin}/auth/callback" for origin in origins],
        "post_logout_redirect_uris": [f"{origin}/" for origin in origins],
        "token_endpoint_auth_method": "client_secret_basic",
    }, {
        "client_id": "another-application",
        "client_secret": "another-secret-that-is-long-enough-too",
        "redirect_uris": [f"{origin}/auth/callback" for origin in origins],
        "token_endpoint_auth_method": "client_secret_basic",
    }]
    accounts = [account.provider_entry() for account in ACCOUNTS.values()]
    with provider_behind_proxy(clients, accounts) as pair:
        yield pair


@pytest.fixture
def tamper(idp: tuple[OIDCProvider, TamperProxy]) -> Iterator[TamperProxy]:
    """The proxy in front of the provider; its mode is reset after the test."""
    proxy = idp[1]
    yield proxy
    proxy.mode = None


# --- the portal ------------------------------------------------------------------------------

@pytest.fixture
def settings(database_url: str, idp: tuple[OIDCProvider, TamperProxy]) -> dict[str, Any]:
    """The test override of the configuration (a test may change it before using ``app``)."""
    return _settings(database_url, idp[0].issuer, "http://localhost")


@pytest.fixture
def app(settings: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    application = create_app(settings)
    application.config["TESTING"] = True
    yield application
    get_engine(application).dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class SignIn:
    """Sign a test client in through the real provider's login form."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def authorize_url(self, client: FlaskClient, **query: str) -> str:
        response = client.get("/auth/login", query_string=query)
        assert response.status_code == 302, response.get_data(as_text=True)
        return response.headers["Location"]

    def callback_url(self, client: FlaskClient, who: str, **query: str) -> str:
        """Run the provider's part of sign-in and return the callback URL it sends back."""
        browser = requests.Session()
        return login_via_form(browser, self.authorize_url(client, **query),
                              ACCOUNTS[who].sub, PASSWORD)

    def login(self, client: FlaskClient, who: str) -> None:
        response = self.finish(client, self.callback_url(client, who))
        assert response.status_code == 302, response.get_data(as_text=True)

    def finish(self, client: FlaskClient, callback_url: str) -> Any:
        parts = urlsplit(callback_url)
        return client.get(f"{parts.path}?{parts.query}")


@pytest.fixture
def sign_in(app: Flask) -> SignIn:
    return SignIn(app)


@pytest.fixture
def live_server(app: Flask, live_port: int) -> Iterator[str]:
    """Serve the portal on 127.0.0.1 for the browser (threaded, like a small production)."""
    app.config["BASE_URL"] = f"http://127.0.0.1:{live_port}"
    server: BaseWSGIServer = make_server("127.0.0.1", live_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{live_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- the browser -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for the run (Debian's; Playwright never downloads its own)."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, live_server: str) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the live portal, JavaScript on."""
    context = browser.new_context(base_url=live_server, locale="en-GB")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()
