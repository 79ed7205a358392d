"""Fixtures of the catalog tests."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.support.catalog import load_shipped


@pytest.fixture
def shipped(app: Flask) -> Flask:
    """The app with the shipped catalog published as version 1."""
    load_shipped(app)
    return app
