"""Prometheus metrics: /metrics only for the token holder; requests and latencies counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.observability import METRICS_TOKEN, scrape, value


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-token", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x",
    f"Bearer {METRICS_TOKEN[:-1]}"])
def test_metrics_need_the_token(client: FlaskClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"portal_" not in answer.data


def test_without_a_token_configured_there_is_no_metrics_page(
        settings: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from portal import create_app

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "bare"))
    settings = {**settings, "METRICS_TOKEN": ""}
    client = create_app(settings).test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_a_short_token_is_refused_at_start(settings: dict[str, Any]) -> None:
    from portal.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="PORTAL_METRICS_TOKEN") as refused:
        load_settings(Path("/nonexistent"), environ={},
                      override={**settings, "METRICS_TOKEN": "short secret"})
    assert "short secret" not in str(refused.value)


def test_requests_and_latencies_are_counted_by_endpoint_and_status(client: FlaskClient) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)
    assert value(after, "portal_http_requests_total", endpoint="core.healthz", method="GET",
                 status="200") - value(before, "portal_http_requests_total",
                                       endpoint="core.healthz", method="GET", status="200") == 3
    assert value(after, "portal_http_requests_total", endpoint="none", method="GET",
                 status="404") - value(before, "portal_http_requests_total", endpoint="none",
                                       method="GET", status="404") == 1
    # The first scrape itself is counted by the second.
    assert value(after, "portal_http_requests_total", endpoint="metrics", method="GET",
                 status="200") >= 1
    assert value(after, "portal_http_request_duration_seconds_count",
                 endpoint="core.healthz") - value(
        before, "portal_http_request_duration_seconds_count", endpoint="core.healthz") == 3
    assert value(after, "portal_http_request_duration_seconds_bucket", endpoint="core.healthz",
                 le="+Inf") >= 3
