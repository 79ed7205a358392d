"""Fixtures of the hardening tests: the collector API's small world, without an identity
provider."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.support.collector_api import World
from tests.support.config import portal_settings
from tests.support.identity import ISSUER


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """The API's configuration, with a rate limit the fuzzer's thousands of calls stay under."""
    return {**portal_settings(database_url, ISSUER, "http://localhost"),
            "API_RATE_LIMIT": "100000 per minute"}


@pytest.fixture
def world(app: Flask, catalog: int) -> World:
    """The shipped catalog published, and a test client's world of its own."""
    return World(app, app.test_client())
