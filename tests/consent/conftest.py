"""Fixtures of the consent tests: Alex signed in, posting choices as the forms do."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.consent import Chooser
from tests.support.identity import SignIn


@pytest.fixture
def alex(app: Flask, client: FlaskClient, sign_in: SignIn, catalog: int) -> Chooser:
    """Alex, signed in on ``client``, with the catalog published."""
    sign_in.login(client, "alex")
    return Chooser(client, catalog)
