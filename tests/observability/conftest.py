"""Fixtures of the observability tests: an app without an identity provider.

Most of these tests are about HTTP and logging, not the database: they run once, on a SQLite
copy of one migrated database. Tests that query the database (the request gauges, the
ingestion counts, gunicorn) ask for ``database_settings`` and run on both backends.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from portal import create_app
from portal.cli import upgrade_database
from portal.db import get_engine
from tests.support.config import portal_settings
from tests.support.identity import ISSUER
from tests.support.observability import METRICS_TOKEN


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate one SQLite database for the tests of this folder that need no other backend."""
    path = tmp_path_factory.mktemp("observability") / "template.sqlite3"
    app = create_app(portal_settings(f"sqlite:///{path}", ISSUER, "http://localhost"))
    upgrade_database(app)
    get_engine(app).dispose()
    return path


@pytest.fixture
def settings(sqlite_template: Path, tmp_path: Path) -> dict[str, Any]:
    """A SQLite database of its own, a metrics token, no identity provider."""
    database = tmp_path / "portal.sqlite3"
    shutil.copyfile(sqlite_template, database)
    values = portal_settings(f"sqlite:///{database}", ISSUER, "http://localhost")
    values["METRICS_TOKEN"] = METRICS_TOKEN
    return values


@pytest.fixture
def database_settings(database_url: str) -> dict[str, Any]:
    """The same on each backend (SQLite and PostgreSQL)."""
    values = portal_settings(database_url, ISSUER, "http://localhost")
    values["METRICS_TOKEN"] = METRICS_TOKEN
    return values
