"""The rate-limit store (Redis) killed mid-run: the portal keeps serving, still rate-limited.

Two instances of the portal count in one Redis: this test process's application (through its
test client) and a gunicorn server. While Redis is down, each counts in its own memory: the
sign-in page and the collector API still answer, and a low limit still refuses with 429. Once
Redis is back, both count there again: one count for both. Each instance says so in its
log, once each way, in JSON and without the store's password.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from portal.api.service import create_collector
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.db import commit
from portal.limits import RECHECK_SECONDS, REDIS_TIMEOUT_SECONDS, limiter
from tests.support.collector_api import bearer
from tests.support.config import portal_settings
from tests.support.oidc_provider import OIDCProvider
from tests.support.postgres import free_port
from tests.support.servers import Gunicorn, portal_environment
from tests.support.tamper_proxy import TamperProxy

# One backend: what is tested is Redis, and the second instance is a process of its own.
pytestmark = pytest.mark.postgresql_only

SIGN_IN_LIMIT = API_LIMIT = 3  # per hour: no window ends mid-test
PASSWORD = "redis-password-that-must-not-be-logged"
CONSENT_CHECK = "/api/v1/consent?subject=sub-alex&category=keystrokes"
UNREACHABLE = "the rate-limit store is unreachable: counting in this process's memory until " \
              "it answers again"
BACK = "the rate-limit store answers again: counting there again"


class RestartableRedis:
    """A throwaway redis-server with a password, killed and started again on the same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install "
                               "redis-server)")
        self.port = free_port()
        self.command = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                        "--appendonly", "no", "--loglevel", "warning", "--requirepass",
                        PASSWORD]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(f"AUTH {PASSWORD}\r\nPING\r\n".encode())
                    if b"+PONG" in probe.recv(64):
                        return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: the counts are gone with it."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
            self.process = None

    def keys(self, pattern: str) -> list[bytes]:
        with redis.Redis.from_url(self.url) as store:
            return list(store.scan_iter(match=pattern))


@pytest.fixture(autouse=True)
def _store_alive_for_later_tests() -> Iterator[None]:
    """Leave the process's Flask-Limiter as found: not holding a store for dead.

    The Limiter is one per process and keeps that state across init_app; a later test's
    application would count in its fallback store, then move to its own mid-test.
    """
    yield
    limiter._storage_dead = False


@pytest.fixture
def store() -> Iterator[RestartableRedis]:
    server = RestartableRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def settings(database_url: str, idp: tuple[OIDCProvider, TamperProxy],
             store: RestartableRedis) -> dict[str, Any]:
    """Both instances' configuration: low limits counted in Redis, one proxy in front."""
    return {**portal_settings(database_url, idp[0].issuer, "http://localhost"),
            "RATELIMIT_STORAGE_URL": store.url,
            "SIGN_IN_RATE_LIMIT": f"{SIGN_IN_LIMIT} per hour",
            "API_RATE_LIMIT": f"{API_LIMIT} per hour",
            # X-Forwarded-For then gives each step of the test a client address of its own.
            "TRUSTED_PROXIES": 1}


def collector_tokens(app: Flask, count: int) -> list[str]:
    """Publish the catalog and register ``count`` collectors of keystrokes; return tokens."""
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        tokens = [create_collector(f"agent {number}", ("keystrokes",))[1]
                  for number in range(count)]
        commit()
    return tokens


@dataclass
class Instances:
    """The two instances of the portal, asked the same way: A in this process, B in gunicorn."""

    client: FlaskClient  # this process's application
    server: Gunicorn  # the other process

    def sign_in(self, which: str, address: str) -> requests.Response | Any:
        headers = {"X-Forwarded-For": address}
        if which == "A":
            return self.client.get("/auth/login", headers=headers)
        return requests.get(self.server.url + "/auth/login", headers=headers,
                            allow_redirects=False, timeout=30)

    def check_consent(self, which: str, token: str) -> requests.Response | Any:
        if which == "A":
            return self.client.get(CONSENT_CHECK, headers=bearer(token))
        return requests.get(self.server.url + CONSENT_CHECK, headers=bearer(token), timeout=30)


def statuses(answers: list[Any]) -> list[int]:
    return [answer.status_code for answer in answers]


def test_the_portal_keeps_serving_and_limiting_while_redis_is_down(
        app: Flask, settings: dict[str, Any], store: RestartableRedis, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    during, after = collector_tokens(app, 2)
    environment = portal_environment({**settings, "LOG_LEVEL": "WARNING"}, tmp_path / "other")
    # Killed at the end rather than stopped (a graceful stop waits seconds): the metrics
    # folder is then this test's, not one gunicorn would have to remove.
    environment["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    server = Gunicorn("wsgi:app", environment, workers=1, threads=2, ready_path="/healthz")
    try:
        # Started here, so that its standard error is captured with ours (capfd).
        server.start()
        portal = Instances(app.test_client(), server)
        for which in "AB":  # both count in Redis (and hold connections) before it dies
            assert portal.sign_in(which, "198.51.100.1").status_code == 302
            assert portal.check_consent(which, during).status_code == 200
        assert len(store.keys("*198.51.100.1*")) == 1

        store.kill()
        # Down: both still answer, and each counts in its own memory. A refuses once the
        # limit is reached there; B, which counted alone, still accepts. B's first request
        # is the API's, A's a page's: each part finds the store down by itself.
        down = "198.51.100.2"
        assert portal.check_consent("B", during).status_code == 200
        sign_ins = [portal.sign_in("A", down) for _ in range(SIGN_IN_LIMIT + 1)]
        assert statuses(sign_ins) == [302] * SIGN_IN_LIMIT + [429], sign_ins[-1].text[:300]
        assert int(sign_ins[-1].headers["Retry-After"]) > 0
        assert portal.sign_in("B", down).status_code == 302
        # The token's count of before the outage stayed in Redis: memory counts from zero.
        checks = [portal.check_consent("A", during) for _ in range(API_LIMIT + 1)]
        assert statuses(checks) == [200] * API_LIMIT + [429], checks[-1].text[:300]
        assert checks[-1].get_json()["error"] == "too_many_requests"
        assert int(checks[-1].headers["Retry-After"]) > 0
        assert portal.check_consent("B", during).status_code == 200
        last_api_try = time.monotonic()

        store.start()  # empty: the counts of before the outage are gone
        # Back: each instance finds Redis again by itself, without a restart: pages after
        # Flask-Limiter's back-off (2 s here), the API on its first request RECHECK_SECONDS
        # after its last try.
        wait_until_counted_in_redis(portal, store)
        time.sleep(max(0.0, last_api_try + RECHECK_SECONDS - time.monotonic()))
        # One count for both instances again.
        shared = "198.51.100.3"
        answers = [portal.sign_in(which, shared) for which in "ABABA"]
        assert statuses(answers) == [302] * SIGN_IN_LIMIT + [429, 429]
        answers = [portal.check_consent(which, after) for which in "ABABA"]
        assert statuses(answers) == [200] * API_LIMIT + [429, 429]
        # The address A refused while Redis was down counts from zero in Redis.
        assert portal.sign_in("A", down).status_code == 302
    finally:
        server.kill()
    output = capfd.readouterr().err
    assert PASSWORD not in output
    lines = list(json_lines(output))
    said = Counter((line["message"], line["part"]) for line in lines
                   if line["logger"] == "portal.limits")
    # Once each way, per instance and part: not once per request.
    assert said == {(message, part): 2 for message in (UNREACHABLE, BACK)
                    for part in ("pages", "collector API")}, said
    assert {line["store"] for line in lines if line["logger"] == "portal.limits"} == {
        f"redis://127.0.0.1:{store.port}/0"}
    assert not [line for line in lines if line["logger"] == "flask-limiter"]


def test_a_store_that_does_not_answer_holds_no_request_for_long(
        settings: dict[str, Any], request: pytest.FixtureRequest) -> None:
    # A host that drops packets, or a Redis that hangs: connections are accepted (by the
    # kernel, into the backlog) and never answered.
    waiting = ThreadPoolExecutor(1)
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        settings["RATELIMIT_STORAGE_URL"] = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        app: Flask = request.getfixturevalue("app")
        client = app.test_client()
        try:
            for path, headers, status in (
                    ("/auth/login", {}, 302),
                    (CONSENT_CHECK, bearer(collector_tokens(app, 1)[0]), 200)):
                # A timeout of a second (two for a page: its count, then Flask-Limiter's
                # ping), then counted in memory: the next request does not wait at all.
                # (Without a timeout the request would wait forever: a failure, not a hang.)
                for most in (4 * REDIS_TIMEOUT_SECONDS, REDIS_TIMEOUT_SECONDS / 2):
                    answer = waiting.submit(client.get, path, headers=headers)
                    assert answer.result(timeout=most).status_code == status, path
        finally:
            # Closing the socket ends any request still waiting on it.
            waiting.shutdown(wait=False, cancel_futures=True)


def wait_until_counted_in_redis(portal: Instances, store: RestartableRedis) -> None:
    """Ask each instance for its sign-in page (an address of its own) until Redis holds it."""
    deadline = time.monotonic() + 40
    for which, address in (("A", "198.51.100.10"), ("B", "198.51.100.11")):
        while not store.keys(f"*{address}*"):
            assert time.monotonic() < deadline, f"{which} did not count in Redis again"
            assert portal.sign_in(which, address).status_code in {302, 429}
            time.sleep(0.2)


def json_lines(output: str) -> Iterator[dict[str, Any]]:
    """Parse the JSON log lines of both instances; anything else (pytest's) is skipped."""
    for line in output.splitlines():
        if line.startswith("{"):
            yield json.loads(line)
