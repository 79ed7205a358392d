"""Reading what the portal tells operators: /metrics samples and JSON log lines."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "metrics-token-" + "m" * 32


def scrape(client: FlaskClient, token: str = METRICS_TOKEN) -> dict[tuple[str, tuple[Any, ...]],
                                                                     float]:
    """Fetch /metrics and return every sample by name and labels."""
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.data
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return parse(answer.get_data(as_text=True))


def parse(text: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Return every sample of a text exposition by name and sorted labels."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    """Return one sample's value (0 when it was never counted)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Parse standard error as the portal writes it: every line one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def access_lines(text: str) -> list[dict[str, Any]]:
    """Return the access lines among the log lines."""
    return [line for line in json_lines(text) if line["logger"] == "portal.access"]
