"""The root of the test fixtures: the database per test and the portal itself.

- a throwaway PostgreSQL cluster for the run, and a fresh database per test copied from a
  migrated template (SQLite: a copied file), so every test runs on both backends;
- the portal, through Flask's test client.

The other fixtures (identity provider, browser, catalog, SMTP) are the plugins in
``tests/fixtures/``; the helpers tests call are plain functions in ``tests/support/``.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app
from portal.cli import upgrade_database
from portal.db import get_engine
from tests.support.config import portal_settings
from tests.support.identity import ISSUER
from tests.support.oidc_provider import OIDCProvider
from tests.support.postgres import PostgresCluster
from tests.support.tamper_proxy import TamperProxy

pytest_plugins = [
    "tests.fixtures.identity",
    "tests.fixtures.browser",
    "tests.fixtures.catalog",
    "tests.fixtures.mail",
]

BACKENDS = ("sqlite", "postgresql")


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
    app = create_app(portal_settings(url, ISSUER, "http://localhost"))
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


# --- the portal ------------------------------------------------------------------------------

@pytest.fixture
def settings(database_url: str, idp: tuple[OIDCProvider, TamperProxy]) -> dict[str, Any]:
    """The test override of the configuration (a test may change it before using ``app``)."""
    return portal_settings(database_url, idp[0].issuer, "http://localhost")


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
