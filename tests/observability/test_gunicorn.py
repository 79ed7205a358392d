"""Under gunicorn with the shipped gunicorn.conf.py: metrics add up across workers, JSON logs."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.observability import METRICS_TOKEN, parse, value
from tests.support.servers import Gunicorn, portal_environment

pytestmark = pytest.mark.postgresql_only

HEALTHZ = {"endpoint": "core.healthz", "method": "GET", "status": "200"}


def get(server: Gunicorn, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``path`` on a new connection (so the kernel may hand it to any worker)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def healthz_count(server: Gunicorn) -> float:
    _status, body = get(server, "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    return value(parse(body.decode()), "portal_http_requests_total", **HEALTHZ)


def workers_of(master: int) -> set[int]:
    return {int(pid) for pid in
            Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def counting_workers(folder: Path) -> set[int]:
    """Return the workers that wrote counters to the multiprocess folder."""
    return {int(path.stem.rpartition("_")[2]) for path in folder.glob("counter_*.db")}


def test_counts_add_up_across_workers_and_survive_a_dead_worker(
        database_settings: dict[str, Any], tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "metrics"
    environment = portal_environment({**database_settings, "LOG_FORMAT": "json"},
                                     tmp_path / "instance")
    environment["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left by an earlier master")  # must be wiped
    server = Gunicorn("wsgi:app", environment, workers=2, threads=2).start()
    try:
        assert server.process is not None
        assert len(workers_of(server.process.pid)) == 2
        before = healthz_count(server)
        sent = 0
        deadline = time.monotonic() + 20
        # New connections until both workers have served some (the kernel picks the worker).
        while sent < 20 or len(counting_workers(folder)) < 2:
            assert get(server, "/healthz")[0] == 200
            sent += 1
            assert time.monotonic() < deadline, "one worker never got a request"
        assert counting_workers(folder) == workers_of(server.process.pid)
        # Every scrape, whichever worker answers it, sees the sum of both.
        assert {healthz_count(server) - before for _ in range(6)} == {sent}

        victim = min(workers_of(server.process.pid))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in workers_of(server.process.pid) or len(
                workers_of(server.process.pid)) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)
        # The dead worker's counts stay in the sum.
        assert {healthz_count(server) - before for _ in range(4)} == {sent}
    finally:
        server.kill()  # a graceful stop would wait for the replacement worker to boot
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # all JSON
    gunicorn_lines = [line for line in lines if line["logger"] == "gunicorn.error"]
    assert any(f"(pid:{victim})" in line["message"] and line["level"] == "ERROR"
               for line in gunicorn_lines), gunicorn_lines
    access = [line for line in lines if line["logger"] == "portal.access"]
    assert len({line["request_id"] for line in access}) == len(access) >= sent
    assert not (folder / "counter_1.db").exists()
