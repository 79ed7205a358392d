"""Fixtures of the vault's tests: an app without an identity provider.

The vault's tests sign nobody in, so they need no identity provider: ``settings`` is replaced
by one pointing at an address nothing listens on (as the template database does).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.config import portal_settings
from tests.support.identity import ISSUER


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """The configuration of the vault's tests: a real database, no identity provider."""
    return portal_settings(database_url, ISSUER, "http://localhost")
