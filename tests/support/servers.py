"""Production-like servers for tests and benchmarks: the portal under gunicorn, and Redis.

Tests that need real processes (crashes, several servers, rate limits counted across them)
start them here, configured only through ``PORTAL_*`` environment variables, as an operator
would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.support.postgres import free_port

ROOT = Path(__file__).resolve().parents[2]


def portal_environment(settings: Mapping[str, Any], instance: Path) -> dict[str, str]:
    """Return this process's environment without ``PORTAL_*``, plus ``settings`` as
    ``PORTAL_*`` variables (JSON for anything that is not a string)."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("PORTAL_")}
    for name, value in settings.items():
        environment[f"PORTAL_{name}"] = value if isinstance(value, str) else json.dumps(value)
    environment["PORTAL_INSTANCE_PATH"] = str(instance)
    return environment


class Gunicorn:
    """A gunicorn master serving ``target`` on a port of 127.0.0.1, started and stopped at will.

    The port stays the same across restarts, so clients can keep their base URL.
    """

    def __init__(self, target: str, environment: Mapping[str, str], *, workers: int = 2,
                 threads: int = 4, ready_path: str = "/healthz", port: int | None = None) -> None:
        self.target = target
        self.environment = dict(environment)
        self.workers = workers
        self.threads = threads
        self.ready_path = ready_path
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60) -> Gunicorn:
        """Start the master and its workers; return once ``ready_path`` answers 200."""
        command = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT),
                   "--workers", str(self.workers), "--worker-class", "gthread",
                   "--threads", str(self.threads), "--bind", f"127.0.0.1:{self.port}",
                   "--keep-alive", "30", "--log-level", "warning", "--backlog", "2048",
                   self.target]
        # A new session, so that kill() reaches the master and every worker at once.
        self.process = subprocess.Popen(command, env=self.environment, cwd=ROOT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(  # noqa: S310 (our own http://127.0.0.1 URL)
                        self.url + self.ready_path, timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"gunicorn did not start {self.target}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the master and all its workers, as a power cut or the OOM killer would."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), as an operator's restart would."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None


@contextmanager
def gunicorn(target: str, environment: Mapping[str, str], **options: Any) -> Iterator[Gunicorn]:
    """Serve ``target`` with gunicorn for the duration of the block."""
    server = Gunicorn(target, environment, **options).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway redis-server on a free port of 127.0.0.1, without persistence.

    Yields its URL. Redis is where the portal counts rate limits when several processes or
    hosts serve it.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    server = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port),
                               "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                              stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(30)
