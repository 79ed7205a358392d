"""1,000 toggles from 50 clients across two server processes sharing one PostgreSQL database.

PostgreSQL only, by construction: the test takes the ``postgres`` cluster itself (not the
``backend`` parameter), because SQLite serialises every writer and so proves nothing here.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from portal import ROOT, create_app
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.cli import upgrade_database
from portal.consent import service
from portal.consent.models import ConsentEvent, ConsentState, ConsentStatus
from portal.db import commit, db, get_engine
from tests.support.browserless_login import login_via_form
from tests.support.config import portal_settings
from tests.support.consent import CONSENT_KEYS
from tests.support.identity import ACCOUNTS, PASSWORD
from tests.support.oidc_provider import OIDCProvider
from tests.support.postgres import PostgresCluster, free_port
from tests.support.tamper_proxy import TamperProxy

CLIENTS = 50
TOGGLES_PER_CLIENT = 20
PEOPLE = ("alex", "bea", "chris", "dana", "eli")
_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


@dataclass
class Server:
    """A gunicorn process serving the portal."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _environment(settings: dict[str, Any], instance: Path) -> dict[str, str]:
    """Turn the tests' settings into the PORTAL_* environment a server process reads."""
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith("PORTAL_")}
    for name, value in settings.items():
        if name != "BASE_URL":
            environ[f"PORTAL_{name}"] = json.dumps(value) if isinstance(value, dict) else str(
                value)
    environ.update({"PORTAL_INSTANCE_PATH": str(instance), "PORTAL_LOG_LEVEL": "WARNING"})
    return environ


def _start(port: int, environ: dict[str, str], log: Path) -> Server:
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
             "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5", "wsgi:app"],
            cwd=ROOT, env={**environ, "PORTAL_BASE_URL": f"http://127.0.0.1:{port}"},
            stdout=output, stderr=subprocess.STDOUT)
    return Server(f"http://127.0.0.1:{port}", process, log)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{server.log.read_text()[-3000:]}")
        try:
            if requests.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"gunicorn not ready:\n{server.log.read_text()[-3000:]}")


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


@pytest.fixture
def two_servers(postgres: PostgresCluster, idp: tuple[OIDCProvider, TamperProxy],
                production_ports: tuple[int, int], tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch,
                ) -> Iterator[tuple[str, list[Server]]]:
    """Two gunicorn processes (2 workers x 4 threads each) on one fresh, migrated database.

    The first listens on the port the test provider accepts callbacks for, so people sign in
    there; sessions live in the shared database, so the second process knows them too.
    """
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    database_url = postgres.create_database(f"portal_concurrency_{os.getpid()}")
    settings = portal_settings(database_url, idp[0].issuer, "http://localhost")
    environ = _environment(settings, tmp_path / "instance")
    app = create_app(settings)
    upgrade_database(app)
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
    servers = [_start(production_ports[0], environ, tmp_path / "first.log"),
               _start(free_port(), environ, tmp_path / "second.log")]
    try:
        for server in servers:
            _wait_ready(server)
        yield database_url, servers
    finally:
        for server in servers:
            _stop(server)
        get_engine(app).dispose()
        postgres.drop_database(f"portal_concurrency_{os.getpid()}")


def _sign_in(base: str, who: str) -> tuple[str, str]:
    """Sign in through the real provider once; return the session cookie and a CSRF token."""
    portal = requests.Session()
    start = portal.get(f"{base}/auth/login", allow_redirects=False, timeout=10)
    callback = login_via_form(requests.Session(), start.headers["Location"], ACCOUNTS[who].sub,
                              PASSWORD)
    finish = portal.get(callback, allow_redirects=False, timeout=10)
    assert finish.status_code == 302, finish.text[:500]
    page = portal.get(f"{base}/consent/history", timeout=10).text
    match = _CSRF.search(page)
    assert match is not None
    cookie = portal.cookies.get("portal_session")
    assert cookie
    return cookie, match.group(1)


@dataclass(frozen=True)
class Toggle:
    """One accepted request and what the portal answered."""

    who: str
    key: str
    action: str
    server: int
    changed: bool
    receipt_id: str | None
    state: str | None


def _client(number: int, servers: list[Server], people: dict[str, tuple[str, str]],
            start: threading.Barrier) -> list[Toggle]:
    rng = random.Random(number)
    http = requests.Session()
    server = number % len(servers)
    base = servers[server].url
    results = []
    start.wait()
    for _ in range(TOGGLES_PER_CLIENT):
        who = rng.choice(PEOPLE)
        key = rng.choice(CONSENT_KEYS[:3])
        action = rng.choice(("grant", "withdraw"))
        cookie, token = people[who]
        response = http.post(
            f"{base}/consent/{key}/{action}",
            data={"csrf_token": token, "notice_version": "1", "next": ""},
            headers={"Accept": "application/json", "Cookie": f"portal_session={cookie}"},
            allow_redirects=False, timeout=60)
        assert response.status_code == 200, (response.status_code, response.text[:300])
        answer: dict[str, Any] = response.json()
        results.append(Toggle(who, key, action, server, answer["changed"],
                              answer["receipt_id"], answer["state"]))
    return results


def test_thousand_toggles_from_fifty_clients_on_two_servers(
        two_servers: tuple[str, list[Server]]) -> None:
    database_url, servers = two_servers
    people = {who: _sign_in(servers[0].url, who) for who in PEOPLE}
    start = threading.Barrier(CLIENTS)
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(_client, number, servers, people, start)
                   for number in range(CLIENTS)]
        toggles = [toggle for future in futures for toggle in future.result()]

    assert len(toggles) == CLIENTS * TOGGLES_PER_CLIENT == 1000
    assert {toggle.server for toggle in toggles} == {0, 1}
    accepted = [toggle for toggle in toggles if toggle.changed]
    assert accepted and len(accepted) < len(toggles)  # both kinds happened under contention

    app = create_app(portal_settings(database_url, "http://127.0.0.1:9", "http://localhost"))
    try:
        with app.app_context():
            events = list(db.scalars(select(ConsentEvent).order_by(ConsentEvent.id)))
            # Exactly one event per accepted change, none for a refused or repeated one.
            assert len(events) == len(accepted)
            assert sorted(event.receipt_id for event in events) == sorted(
                str(toggle.receipt_id) for toggle in accepted)
            by_pair: dict[tuple[int, str], list[ConsentEvent]] = collections.defaultdict(list)
            for event in events:
                by_pair[(event.person_id, event.category_key)].append(event)
            for pair_events in by_pair.values():
                states = [event.state for event in pair_events]
                # Decisions were taken on the current state: given and withdrawn alternate.
                assert states[0] is ConsentState.GIVEN
                assert all(a is not b for a, b in itertools.pairwise(states))
            statuses = {(status.person_id, status.category_key): status
                        for status in db.scalars(select(ConsentStatus))}
            assert set(statuses) == set(by_pair)
            for pair, status in statuses.items():
                last = by_pair[pair][-1]
                assert (status.state, status.event_id, status.since) == (
                    last.state, last.id, last.occurred_at)
            verdict = service.verify_ledger()
            assert verdict.ok, verdict.describe()
            assert verdict.count == len(accepted)
            assert service.rebuild_state().identical
    finally:
        get_engine(app).dispose()
