"""Two gunicorn servers on one PostgreSQL database and one Redis: many processes, one truth.

Both servers are configured only through ``PORTAL_*`` variables, as an operator would, and
people sign in through the real identity provider. What one server does, the other knows at
once: sessions (kept in the database), consent (checked in the database when a batch
arrives) and rate limits (counted in Redis). A second pair with ``memory://`` counters shows
what the shared store changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from sqlalchemy import func, select

from portal import create_app
from portal.api.service import create_collector
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.db import commit, db, get_engine
from portal.vault.models import CollectedBatch
from tests.support.batches import keystroke_batch
from tests.support.browserless_login import login_via_form
from tests.support.config import portal_settings
from tests.support.identity import ACCOUNTS, PASSWORD
from tests.support.oidc_provider import OIDCProvider
from tests.support.postgres import PostgresCluster
from tests.support.servers import Gunicorn, portal_environment, redis_server, started
from tests.support.tamper_proxy import TamperProxy

pytestmark = pytest.mark.postgresql_only

DATABASE = "portal_two_servers"
# Small limits, so that a few requests reach them; per hour, so no window ends mid-test.
SIGN_IN_LIMIT = 4
DOWNLOAD_LIMIT = 1  # a download builds a whole ZIP: keep them few
API_LIMIT = 4
_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


@dataclass
class Deployment:
    """Two servers sharing one database and one Redis, and two that count in memory."""

    shared: tuple[Gunicorn, Gunicorn]
    in_memory: tuple[Gunicorn, Gunicorn]
    app: Flask  # in this process, on the same database: for setting up and counting
    redis_url: str
    token: str  # a collector of keystrokes

    def stored_batches(self) -> int:
        with self.app.app_context():
            return db.scalar(select(func.count()).select_from(CollectedBatch)) or 0

    def forget_counts(self) -> None:
        """Empty Redis: no rate-limit counts from earlier requests."""
        with redis.Redis.from_url(self.redis_url) as store:
            store.flushdb()


@pytest.fixture
def deployment(backend: str, template_database: str, postgres: PostgresCluster,
               idp: tuple[OIDCProvider, TamperProxy], production_ports: tuple[int, int],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Start both pairs (the shared pair on the ports the provider knows) on a fresh database."""
    assert backend == "postgresql"
    database_url = postgres.create_database(DATABASE, template="portal_template")
    folder = tmp_path_factory.mktemp("two-servers")
    with pytest.MonkeyPatch.context() as environment:
        for name in [name for name in os.environ if name.startswith("PORTAL_")]:
            environment.delenv(name)
        environment.setenv("PORTAL_INSTANCE_PATH", str(folder / "test-process"))
        app = create_app(portal_settings(database_url, idp[0].issuer, "http://localhost"))
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        _collector, token, _secret = create_collector("laptop agent", ("keystrokes",))
        commit()

    def server(name: str, port: int | None, storage: str) -> Gunicorn:
        gunicorn = Gunicorn("wsgi:app", {}, workers=1,
                            threads=4, ready_path="/readyz", port=port)
        settings = portal_settings(database_url, idp[0].issuer, gunicorn.url)
        settings.update({
            # Every host gets the same receipt signing key, as the README asks.
            "RECEIPT_KEY_FILE": str(folder / "receipt-signing-key.jwk"),
            "RATELIMIT_STORAGE_URL": storage,
            "SIGN_IN_RATE_LIMIT": f"{SIGN_IN_LIMIT} per hour",
            "DOWNLOAD_RATE_LIMIT": f"{DOWNLOAD_LIMIT} per hour",
            "API_RATE_LIMIT": f"{API_LIMIT} per hour",
            "LOG_LEVEL": "WARNING",
        })
        # Each server its own instance folder, as on separate hosts.
        gunicorn.environment = portal_environment(settings, folder / name)
        return gunicorn

    try:
        with redis_server() as redis_url:
            shared = (server("one", production_ports[0], redis_url),
                      server("two", production_ports[1], redis_url))
            in_memory = (server("three", None, "memory://"), server("four", None, "memory://"))
            with started(*shared, *in_memory):
                yield Deployment(shared, in_memory, app, redis_url, token)
    finally:
        get_engine(app).dispose()
        postgres.drop_database(DATABASE)


class Browser:
    """A person's browser: one session cookie, sent to whichever server it talks to."""

    def __init__(self) -> None:
        self.http = requests.Session()

    def sign_in(self, server: Gunicorn, who: str) -> None:
        start = self.http.get(f"{server.url}/auth/login", allow_redirects=False, timeout=30)
        assert start.status_code == 302, start.text[:500]
        callback = login_via_form(requests.Session(), start.headers["Location"],
                                  ACCOUNTS[who].sub, PASSWORD)
        finish = self.http.get(callback, allow_redirects=False, timeout=30)
        assert finish.status_code == 302, finish.text[:500]

    def get(self, server: Gunicorn, path: str) -> requests.Response:
        return self.http.get(server.url + path, allow_redirects=False, timeout=30)

    def post(self, server: Gunicorn, path: str, data: dict[str, Any]) -> requests.Response:
        """Post a form with the CSRF token of a page of ``server``, as the browser would."""
        match = _CSRF.search(self.get(server, "/consent/history").text)
        assert match is not None, "no form token: not signed in?"
        return self.http.post(server.url + path, data={"csrf_token": match.group(1), **data},
                              allow_redirects=False, timeout=60)

    def close(self) -> None:
        self.http.close()


def shows_signed_in(page: requests.Response) -> bool:
    """Say whether a dashboard answer is the signed-in page (not the welcome page)."""
    return page.status_code == 200 and "/auth/logout" in page.text


def submit(server: Gunicorn, token: str, text: str) -> requests.Response:
    """Send one keystrokes batch of Alex as the collector does."""
    return requests.post(f"{server.url}/api/v1/batches", json=keystroke_batch("sub-alex", text),
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_two_servers_share_sessions_consent_and_rate_limits(deployment: Deployment) -> None:
    # One test rather than three: pytest-xdist would share them out to both workers, and
    # each would start the four servers.
    for part in (a_session_begun_on_one_server_works_on_the_other_and_ends_on_both,
                 a_withdrawal_through_one_server_is_refused_by_the_other_at_once,
                 rate_limits_count_across_both_servers_in_redis_not_in_memory):
        deployment.forget_counts()
        browser = Browser()
        try:
            part(deployment, browser)
        finally:
            browser.close()


def a_session_begun_on_one_server_works_on_the_other_and_ends_on_both(
        deployment: Deployment, browser: Browser) -> None:
    one, two = deployment.shared
    assert not shows_signed_in(browser.get(two, "/"))
    browser.sign_in(one, "alex")

    for server in (one, two):
        page = browser.get(server, "/")
        assert shows_signed_in(page), server.url
        assert ACCOUNTS["alex"].name in page.text
    # Signed out through the second server (its own form and token), the session is gone on
    # both: the row is deleted, not just forgotten by one process.
    farewell = browser.post(two, "/auth/logout", {})
    assert farewell.status_code == 302
    for server in (one, two):
        assert not shows_signed_in(browser.get(server, "/")), server.url
        assert browser.get(server, "/my-data").status_code == 302


def a_withdrawal_through_one_server_is_refused_by_the_other_at_once(
        deployment: Deployment, browser: Browser) -> None:
    one, two = deployment.shared
    token = deployment.token
    browser.sign_in(one, "alex")
    # Each way round: the choice through one server, the batch to the other.
    for web, api in ((one, two), (two, one)):
        granted = browser.post(web, "/consent/keystrokes/grant", {"notice_version": "1"})
        assert granted.status_code == 303, granted.text[:500]
        before = deployment.stored_batches()
        accepted = submit(api, token, "allowed")
        assert accepted.status_code == 201, accepted.text
        assert deployment.stored_batches() == before + 1

        withdrawn = browser.post(web, "/consent/keystrokes/withdraw", {"notice_version": "1"})
        assert withdrawn.status_code == 303, withdrawn.text[:500]
        refused = submit(api, token, "after the withdrawal")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "consent_required"
        assert deployment.stored_batches() == before + 1
    # Both servers sign receipts with the one key every host is given.
    assert (requests.get(f"{one.url}/.well-known/jwks.json", timeout=10).json()
            == requests.get(f"{two.url}/.well-known/jwks.json", timeout=10).json())


def alternate(servers: tuple[Gunicorn, Gunicorn], count: int) -> list[Gunicorn]:
    """Return ``count`` servers, taking turns."""
    return list(islice(cycle(servers), count))


def rate_limits_count_across_both_servers_in_redis_not_in_memory(
        deployment: Deployment, browser: Browser) -> None:
    shared, in_memory = deployment.shared, deployment.in_memory
    browser.sign_in(shared[0], "bea")  # the session is in the database: all four know it
    deployment.forget_counts()  # the sign-in itself counted

    def sign_ins(servers: tuple[Gunicorn, Gunicorn], count: int) -> list[int]:
        return [requests.get(f"{server.url}/auth/login", allow_redirects=False,
                             timeout=30).status_code for server in alternate(servers, count)]

    def downloads(servers: tuple[Gunicorn, Gunicorn], count: int) -> list[int]:
        return [browser.post(server, "/my-data/download", {"categories": ["keystrokes"]})
                .status_code for server in alternate(servers, count)]

    def api_calls(servers: tuple[Gunicorn, Gunicorn], count: int) -> list[int]:
        return [requests.get(f"{server.url}/api/v1/consent/changes", timeout=30,
                             headers={"Authorization": f"Bearer {deployment.token}"})
                .status_code for server in alternate(servers, count)]

    # Shared: the limit is reached by both servers together, and then both refuse.
    assert sign_ins(shared, SIGN_IN_LIMIT + 2) == [302] * SIGN_IN_LIMIT + [429, 429]
    assert downloads(shared, DOWNLOAD_LIMIT + 2) == [200] * DOWNLOAD_LIMIT + [429, 429]
    assert api_calls(shared, API_LIMIT + 2) == [200] * API_LIMIT + [429, 429]
    # In memory each process counts alone: the request the shared count refused is accepted,
    # as neither server alone has reached the limit.
    assert sign_ins(in_memory, SIGN_IN_LIMIT + 1) == [302] * (SIGN_IN_LIMIT + 1)
    assert downloads(in_memory, DOWNLOAD_LIMIT + 1) == [200] * (DOWNLOAD_LIMIT + 1)
    assert api_calls(in_memory, API_LIMIT + 1) == [200] * (API_LIMIT + 1)
