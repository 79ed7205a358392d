"""The authorization matrix: every route, every method, every caller; nobody gets in where the
table does not let them, and nobody reaches another person's data (issue 9, point 1).

The walk runs on PostgreSQL, the production database, only: who may do what is decided in
Python, the same on both backends, and the whole matrix costs about 30 s per backend. What
differs between the backends (how far an id in a URL may go before the driver fails) is
checked on both, from the URL map.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import IntegerConverter

from portal import create_app
from portal.db import get_engine
from tests.support.authorization_matrix import (
    CALLERS,
    DEMO_TABLE,
    METRICS_TOKEN,
    PERSONS,
    TABLE,
    AlexWorld,
    build_alex_world,
    untabled_endpoints,
    walk,
)
from tests.support.config import portal_settings
from tests.support.identity import SignIn
from tests.support.oidc_provider import OIDCProvider
from tests.support.tamper_proxy import TamperProxy

#: The largest id the database holds (32-bit integer primary keys).
LARGEST_ID = 2**31 - 1


@pytest.fixture
def settings(database_url: str, idp: tuple[OIDCProvider, TamperProxy]) -> dict[str, Any]:
    """The portal with the real identity provider (the hardening default has none), and
    /metrics switched on so that its token check is walked too."""
    return {**portal_settings(database_url, idp[0].issuer, "http://localhost"),
            "METRICS_TOKEN": METRICS_TOKEN}


@pytest.fixture
def alex_world(app: Flask) -> AlexWorld:
    return build_alex_world(app)


def test_every_route_has_an_entry_in_the_table(app: Flask) -> None:
    missing, stale = untabled_endpoints(app)
    assert not missing, f"routes without an entry in the authorization table: {missing}"
    assert not stale, f"table entries for routes that no longer exist: {stale}"


def test_demo_mode_routes_are_in_the_table_too(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PORTAL_DEMO", "1")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    demo = create_app()
    endpoints = {rule.endpoint for rule in demo.url_map.iter_rules()}
    get_engine(demo).dispose()
    assert DEMO_TABLE.keys() <= endpoints
    assert endpoints - TABLE.keys() - DEMO_TABLE.keys() == set()


def test_integer_ids_in_urls_stop_at_the_databases_range(app: Flask) -> None:
    # A larger number reached SQLite's driver and crashed with a 500 instead of a 404.
    unbounded = [f"{rule.rule} <{name}>" for rule in app.url_map.iter_rules()
                 for name, converter in rule._converters.items()
                 if isinstance(converter, IntegerConverter)
                 and (converter.max is None or converter.max > LARGEST_ID)]
    assert unbounded == [], "give these int converters max=2147483647"


@pytest.mark.postgresql_only
@pytest.mark.parametrize("caller", CALLERS)
def test_caller_gets_only_what_the_table_allows(app: Flask, client: FlaskClient,
                                                sign_in: SignIn, alex_world: AlexWorld,
                                                caller: str) -> None:
    missing, _stale = untabled_endpoints(app)
    assert not missing, f"routes without an entry in the authorization table: {missing}"
    if caller in PERSONS:
        sign_in.login(client, caller)
    result = walk(app, client, caller, alex_world)
    print(f"\n{caller}: {result.requests} requests, table of {len(TABLE)} endpoints, "
          f"{len(result.unexpected_successes)} unexpected successes; "
          f"answers {dict(sorted(result.outcomes.items()))}")
    assert result.unexpected_successes == []
    assert result.problems == [], "\n".join(result.problems)
    # The walk went everywhere: every endpoint of the table was asked at least once.
    assert {endpoint for endpoint, _response in result.responses} == set(TABLE)
