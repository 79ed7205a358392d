"""Hardening test helpers: the collector API's small world, without an identity provider."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.api.conftest import ISSUER, World
from tests.conftest import _settings


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """The API's configuration, with a rate limit the fuzzer's thousands of calls stay under."""
    return {**_settings(database_url, ISSUER, "http://localhost"),
            "API_RATE_LIMIT": "100000 per minute"}


@pytest.fixture
def world(app: Flask) -> World:
    """The shipped catalog published, and the test client's world."""
    from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
    from portal.catalog.publication import load_catalog
    from portal.db import commit

    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
    return World(app, app.test_client())
