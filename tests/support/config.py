"""The portal's configuration in tests: one function every test's ``settings`` starts from."""

from __future__ import annotations

from typing import Any

from tests.support.identity import CLIENT_ID, CLIENT_SECRET, ROLE_MAP

# A fixed master key for tests only (base64 of 32 bytes); never used outside the test run.
TEST_MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LW9ubHktZm9yLXRlc3RzISE="


def portal_settings(database_url: str, issuer: str, base_url: str) -> dict[str, Any]:
    """Return the test override of the configuration for this database and provider."""
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "MASTER_KEY": TEST_MASTER_KEY,
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_SCOPES": "openid profile email groups",
        "ROLE_MAP": ROLE_MAP,
        "BASE_URL": base_url,
        # The tests' webhook receivers listen on 127.0.0.1.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": True,
    }
