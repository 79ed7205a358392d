"""Observability test helpers: an app without an identity provider, and its log lines.

Most of these tests are about HTTP and logging, not the database: they run once, on a SQLite
copy of one migrated database. Tests that query the database (the request gauges, the
ingestion counts, gunicorn) ask for ``database_settings`` and run on both backends.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from portal import create_app
from portal.cli import upgrade_database
from portal.db import get_engine
from tests.conftest import _settings

ISSUER = "http://127.0.0.1:9"
METRICS_TOKEN = "metrics-token-" + "m" * 32


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate one SQLite database for the tests of this folder that need no other backend."""
    path = tmp_path_factory.mktemp("observability") / "template.sqlite3"
    app = create_app(_settings(f"sqlite:///{path}", ISSUER, "http://localhost"))
    upgrade_database(app)
    get_engine(app).dispose()
    return path


@pytest.fixture
def settings(sqlite_template: Path, tmp_path: Path) -> dict[str, Any]:
    """A SQLite database of its own, a metrics token, no identity provider."""
    database = tmp_path / "portal.sqlite3"
    shutil.copyfile(sqlite_template, database)
    values = _settings(f"sqlite:///{database}", ISSUER, "http://localhost")
    values["METRICS_TOKEN"] = METRICS_TOKEN
    return values


@pytest.fixture
def database_settings(database_url: str) -> dict[str, Any]:
    """The same on each backend (SQLite and PostgreSQL)."""
    values = _settings(database_url, ISSUER, "http://localhost")
    values["METRICS_TOKEN"] = METRICS_TOKEN
    return values


def json_lines(text: str) -> list[dict[str, Any]]:
    """Parse standard error as the portal writes it: every line one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def access_lines(text: str) -> list[dict[str, Any]]:
    """Return the access lines among the log lines."""
    return [line for line in json_lines(text) if line["logger"] == "portal.access"]
