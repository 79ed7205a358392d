"""Fixtures of the collector API's tests: a client that checks every answer against the
OpenAPI document, and a small world of people, consents and collectors.

The API tests sign nobody in (bearer tokens only), so they need no identity provider; the
admin pages' tests (``test_admin.py``) bring it back.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.collector_api import World
from tests.support.config import portal_settings
from tests.support.identity import ISSUER
from tests.support.openapi import OpenAPICheckingClient


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """The configuration of the API tests: a real database, no identity provider."""
    return portal_settings(database_url, ISSUER, "http://localhost")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = OpenAPICheckingClient
    return app.test_client()


@pytest.fixture
def world(app: Flask, client: FlaskClient, catalog: int) -> World:
    return World(app, client)


@pytest.fixture
def token(world: World) -> str:
    """The token of a collector of keystrokes, pointer and performance."""
    return world.collector()
