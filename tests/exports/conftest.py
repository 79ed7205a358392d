"""Fixtures of the download tests: Alex signed in."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.identity import SignIn


@pytest.fixture
def alex(app: Flask, client: FlaskClient, sign_in: SignIn, catalog: int) -> FlaskClient:
    """Alex, signed in on ``client``, with the catalog published."""
    sign_in.login(client, "alex")
    return client
