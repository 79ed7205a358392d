"""Outage: PostgreSQL stopped under load, then started again, while gunicorn keeps serving.

While the database is down, pages answer 503 with the portal's plain message (HTML), the
collector API 503 in JSON, ``/readyz`` 503 and ``/healthz`` 200. Once it is back, the portal
recovers by itself, without a restart: the very next requests of every worker succeed.

The test runs its own PostgreSQL cluster, so stopping it cannot disturb any other test.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from portal.auth.models import WebSession
from portal.cli import upgrade_database
from portal.db import commit, db, get_engine, utcnow
from tests.support.collector_api import bearer
from tests.support.config import portal_settings
from tests.support.factories import create_person, grant, publish_shipped_catalog
from tests.support.identity import ISSUER
from tests.support.postgres import PostgresCluster, _binary
from tests.support.servers import Gunicorn, portal_environment

pytestmark = pytest.mark.postgresql_only

WORKERS, THREADS = 2, 4
#: Requests sent at once, per address: enough to keep every thread of every worker busy.
BURST = WORKERS * THREADS
DOWN_MESSAGE = "cannot reach its database right now"


class RestartableCluster(PostgresCluster):
    """A throwaway cluster whose server can be stopped and started again, data kept."""

    def _options(self) -> str:
        # The same settings as PostgresCluster.start.
        return (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.folder} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")

    running = True

    def stop_server(self) -> None:
        """Stop the server as an operator would (fast: clients are disconnected)."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def start_server(self) -> None:
        """Start the stopped server again; return once it accepts connections."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-o", self._options(), "-l",
                  str(self.folder / "server.log"), "-w", "-t", "60", "start")
        self.running = True

    def stop(self) -> None:
        if not self.running:  # a failed test left it stopped: only the files remain
            self.start_server()
        super().stop()


@pytest.fixture
def cluster(backend: str) -> Iterator[RestartableCluster]:
    assert backend == "postgresql"
    own = RestartableCluster().start()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
def settings(cluster: RestartableCluster) -> dict[str, Any]:
    return portal_settings(cluster.create_database("portal"), ISSUER, "http://localhost")


@pytest.fixture
def migrated_catalog(app: Flask) -> int:
    """Migrate the cluster's database (it starts empty) and publish the shipped catalog."""
    upgrade_database(app)
    return publish_shipped_catalog(app)


def test_postgresql_stopped_under_load(app: Flask, migrated_catalog: int, settings: dict[str, Any],
                                       cluster: RestartableCluster, tmp_path: Path) -> None:
    started = time.monotonic()
    with app.app_context():
        alex = create_person("outage-alex")
        grant(alex, "keystrokes")
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        db.add(WebSession(id_hash=hashlib.sha256(session_id.encode()).hexdigest(),
                          person_id=alex.id, data={"_user_id": str(alex.id), "_fresh": False},
                          created_at=now, last_seen_at=now, authenticated_at=now,
                          expires_at=now.replace(year=now.year + 1)))
        from portal.api.service import create_collector

        _collector, token, _secret = create_collector("outage agent", ("keystrokes",))
        commit()
    get_engine(app).dispose()

    (tmp_path / "instance").mkdir(exist_ok=True)
    environment = portal_environment({**settings, "LOG_LEVEL": "WARNING"}, tmp_path / "instance")
    server = Gunicorn("wsgi:app", environment, workers=WORKERS, threads=THREADS).start()
    pages = ["/", "/consent/history", "/categories/keystrokes"]
    api = "/api/v1/consent?subject=outage-alex&category=keystrokes"
    local = threading.local()

    def fetch(path: str) -> requests.Response:
        if not hasattr(local, "client"):
            local.client = requests.Session()
            local.client.cookies.set("portal_session", session_id)
        headers = bearer(token) if path.startswith("/api/") else {}
        return local.client.get(server.url + path, headers=headers, timeout=(3, 30),
                                allow_redirects=False)

    def burst(pool: ThreadPoolExecutor) -> list[tuple[str, requests.Response]]:
        paths = [path for path in [*pages, api, "/readyz", "/healthz"] for _ in range(BURST)]
        return list(zip(paths, pool.map(fetch, paths), strict=True))

    tally: Counter[str] = Counter()
    try:
        with ThreadPoolExecutor(BURST) as pool:
            # Every worker has connections in its pool before the outage.
            for path, answer in burst(pool):
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            cluster.stop_server()
            down_at = time.monotonic()
            for path, answer in burst(pool) + burst(pool):
                tally[f"down {answer.status_code}"] += 1
                if path == "/healthz":
                    assert answer.status_code == 200
                    continue
                assert answer.status_code == 503, (path, answer.status_code, answer.text[:300])
                assert answer.headers["Content-Type"].startswith(
                    "application/json" if path.startswith(("/api/", "/readyz")) else "text/html")
                if path.startswith("/api/"):
                    assert answer.json()["error"] == "service_unavailable"
                    assert DOWN_MESSAGE in answer.json()["message"]
                elif path == "/readyz":
                    assert answer.json()["checks"] == {"database": "unreachable"}
                else:
                    assert DOWN_MESSAGE in answer.text
            cluster.start_server()
            outage = time.monotonic() - down_at
            # Back: the very next requests of every thread of every worker succeed.
            for path, answer in burst(pool):
                tally[f"back {answer.status_code}"] += 1
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                if path in pages:
                    assert "Outage-Alex" in answer.text, f"{path}: not signed in any more"
            # A restart between two requests (a quick failover): every pooled connection is
            # dead, and no request has found out yet. The next ones must not fail either.
            cluster.stop_server()
            cluster.start_server()
            for path, answer in burst(pool):
                tally[f"after a quick restart {answer.status_code}"] += 1
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                if path in pages:
                    assert "Outage-Alex" in answer.text, f"{path}: not signed in any more"
    finally:
        server.stop()
    print(f"outage: {WORKERS} workers x {THREADS} threads, PostgreSQL down {outage:.1f} s: "
          + ", ".join(f"{what} x{count}" for what, count in sorted(tally.items()))
          + f"; {time.monotonic() - started:.1f} s")
