"""Fixtures of HR's tests: Chris (HR) signed in."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.identity import SignIn, signed_in


@pytest.fixture
def hr(app: Flask, sign_in: SignIn, catalog: int) -> FlaskClient:
    """Chris (HR), signed in, with the catalog published."""
    return signed_in(app, sign_in, "chris")
