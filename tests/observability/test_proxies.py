"""Forwarded headers: believed only from as many proxies as PORTAL_TRUSTED_PROXIES says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from portal import create_app

FORWARDED_HTTPS = {"X-Forwarded-Proto": "https"}


def make_app(settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             **overrides: Any) -> Flask:
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**settings, **overrides})
    app.config["TESTING"] = True
    return app


def session_cookie(app: Flask, headers: dict[str, str]) -> tuple[str, str | None]:
    """Open the welcome page (its language form starts a session); return the cookie and HSTS."""
    answer = app.test_client().get("/", headers=headers)
    assert answer.status_code == 200
    cookies = [value for value in answer.headers.getlist("Set-Cookie")
               if value.startswith("portal_session=")]
    assert len(cookies) == 1
    return cookies[0], answer.headers.get("Strict-Transport-Security")


def test_without_trusted_proxies_a_forwarded_scheme_is_ignored(
        settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(settings, tmp_path, monkeypatch)
    cookie, hsts = session_cookie(app, FORWARDED_HTTPS)
    assert "Secure" not in cookie and hsts is None


def test_with_a_trusted_proxy_its_scheme_gives_hsts_and_secure_cookies(
        settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(settings, tmp_path, monkeypatch, TRUSTED_PROXIES=1)
    cookie, hsts = session_cookie(app, FORWARDED_HTTPS)
    assert "; Secure" in cookie and hsts is not None and hsts.startswith("max-age=")
    # Plain HTTP through the same proxy: neither.
    cookie, hsts = session_cookie(app, {"X-Forwarded-Proto": "http"})
    assert "Secure" not in cookie and hsts is None


def refusals(app: Flask, forwarded_for: list[str]) -> list[int]:
    """Start a sign-in once from each forwarded address; return the statuses."""
    client = app.test_client()
    return [client.get("/auth/login", headers={"X-Forwarded-For": address}).status_code
            for address in forwarded_for]


def test_the_rate_limit_counts_by_the_trusted_proxys_client_address(
        settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(settings, tmp_path, monkeypatch, TRUSTED_PROXIES=1,
                   SIGN_IN_RATE_LIMIT="2 per hour")
    # The proxy appends the address it saw; whatever the client wrote before it is not used.
    statuses = refusals(app, ["198.51.100.1", "198.51.100.1", "198.51.100.1",
                              "198.51.100.2", "10.9.9.9, 198.51.100.3"])
    assert [status == 429 for status in statuses] == [False, False, True, False, False]


def test_without_trusted_proxies_a_forwarded_address_does_not_escape_the_limit(
        settings: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(settings, tmp_path, monkeypatch, SIGN_IN_RATE_LIMIT="2 per hour")
    statuses = refusals(app, ["198.51.100.1", "198.51.100.2", "198.51.100.3"])
    assert [status == 429 for status in statuses] == [False, False, True]


def test_the_number_of_proxies_is_checked(settings: dict[str, Any]) -> None:
    from portal.config import ConfigError

    with pytest.raises(ConfigError, match="PORTAL_TRUSTED_PROXIES"):
        create_app({**settings, "TRUSTED_PROXIES": -1})
