"""Production-like servers for tests and benchmarks: the portal under gunicorn, and Redis.

Tests that need real processes (crashes, several servers, rate limits counted across them)
start them here, configured only through ``PORTAL_*`` environment variables, as an operator
would.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
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
        self.launch()
        return self.wait_until_ready(timeout=timeout)

    def launch(self) -> None:
        """Start the master and its workers without waiting for them (see :func:`started`)."""
        command = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT),
                   "--workers", str(self.workers), "--worker-class", "gthread",
                   "--threads", str(self.threads), "--bind", f"127.0.0.1:{self.port}",
                   "--keep-alive", "30", "--log-level", "warning", "--backlog", "2048",
                   self.target]
        # A new session, so that kill() reaches the master and every worker at once.
        self.process = subprocess.Popen(command, env=self.environment, cwd=ROOT,
                                        start_new_session=True)

    def wait_until_ready(self, *, timeout: float = 60) -> Gunicorn:
        """Return once ``ready_path`` answers 200; kill the server if it never does."""
        deadline = time.monotonic() + timeout
        while not self.answers(self.ready_path):
            if not self.alive() or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"gunicorn did not start {self.target}")
            time.sleep(0.05)
        return self

    def answers(self, path: str) -> bool:
        """Say whether ``GET path`` on the server's port answers 200 now."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", path)
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def alive(self) -> bool:
        """Say whether the master is still running."""
        return self.process is not None and self.process.poll() is None

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
def started(*servers: Gunicorn, timeout: float = 90) -> Iterator[tuple[Gunicorn, ...]]:
    """Start ``servers`` side by side (their imports overlap) and stop them all afterwards."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_until_ready(timeout=timeout)
        yield servers
    finally:
        # Side by side too: a graceful stop takes seconds, spent mostly waiting.
        with ThreadPoolExecutor(max(1, len(servers))) as stopping:
            list(stopping.map(Gunicorn.stop, servers))


class GunicornZygote:
    """A process that has imported the portal once, and forks gunicorn masters from it.

    Importing the portal (WeasyPrint above all) costs seconds of CPU per process; a test that
    kills and restarts gunicorn dozens of times forks each new master from this zygote
    instead, and the master forks its workers (as ``gunicorn --preload`` does). Masters and
    workers run the same gunicorn code as ``gunicorn wsgi:app --preload``. ``environment``
    need only let ``target``'s module be imported; each server gets its own.
    Use as a context manager: leaving it kills every server it forked.
    """

    def __init__(self, target: str, environment: Mapping[str, str], *,
                 log: Path | None = None) -> None:
        self.target = target
        module, _, name = target.partition(":")
        # The servers' own output (errors, access log) goes to ``log`` if given.
        self.log_path = log
        self.log = log.open("ab") if log is not None else None
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.support.servers import serve_forks; "
             f"serve_forks({module!r}, {name or 'app'!r})"],
            env=dict(environment), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log)

    def __enter__(self) -> GunicornZygote:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def fork_master(self, options: Mapping[str, Any], environment: Mapping[str, str]) -> int:
        """Fork a master with gunicorn's ``options`` and ``environment``; return its pid.

        The pid is also its process group's id, already in place when this returns.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        line = json.dumps({"options": dict(options), "environment": dict(environment)})
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the gunicorn zygote ended (could it import {self.target}?)")
        return int(answer)

    def gunicorn(self, environment: Mapping[str, str], **options: Any) -> PreloadedGunicorn:
        """Return a server (not started) forked from this zygote, configured by ``environment``."""
        return PreloadedGunicorn(self, environment, **options)

    def close(self) -> None:
        """End the zygote; it kills every server it forked on its way out."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        if self.log is not None:
            self.log.close()


class PreloadedGunicorn(Gunicorn):
    """A :class:`Gunicorn` whose masters are forked from a :class:`GunicornZygote`."""

    def __init__(self, zygote: GunicornZygote, environment: Mapping[str, str],
                 **options: Any) -> None:
        super().__init__(zygote.target, environment, **options)
        self.zygote = zygote
        self.pid: int | None = None

    def start(self, *, timeout: float = 60) -> PreloadedGunicorn:
        """Fork a new master (and its workers); return once ``ready_path`` answers 200."""
        self.pid = self.zygote.fork_master({
            "bind": f"127.0.0.1:{self.port}", "workers": self.workers,
            "worker_class": "gthread", "threads": self.threads, "keepalive": 30,
            "loglevel": "warning", "backlog": 2048, "preload_app": True}, self.environment)
        self.wait_until_ready(timeout=timeout)
        return self

    def alive(self) -> bool:
        """Say whether any process of the server (master or worker) is still there."""
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _signal_and_wait(self, signum: int, timeout: float) -> bool:
        if self.pid is None:
            return True
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signum)
        # The zygote reaps the master and, as their subreaper, the workers: the group is gone
        # once every one of them has exited.
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        self.pid = None
        return True

    def kill(self) -> None:
        """SIGKILL the master and all its workers at once; return when all are gone."""
        if not self._signal_and_wait(signal.SIGKILL, 30):
            raise RuntimeError("gunicorn's processes outlived SIGKILL")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), as an operator's restart would."""
        if not self._signal_and_wait(signal.SIGTERM, 30):
            self.kill()


def serve_forks(module: str, name: str) -> None:
    """Run a :class:`GunicornZygote`: import ``module`` once, fork a master per line read.

    Each line on stdin holds gunicorn's settings and the server's environment (JSON); the
    new master's pid, which is also its process group, is written back. The zygote reaps its
    masters and, being their child subreaper, the workers they leave behind when killed.
    """
    import ctypes
    import importlib
    import selectors

    from gunicorn.app.base import BaseApplication

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    importlib.import_module(module)  # pays for every import, once

    class Preloaded(BaseApplication):  # type: ignore[misc]
        def __init__(self, options: dict[str, Any]) -> None:
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # A fresh application from the already imported modules, configured by this
            # server's environment (and with no connection inherited from the zygote).
            return getattr(importlib.reload(sys.modules[module]), name)

    masters: list[int] = []
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin, selectors.EVENT_READ)
    while True:
        ready = selector.select(timeout=0.05)
        with suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not ready:
            continue
        line = sys.stdin.readline()
        if not line:
            # The test is over (or died): leave no server behind.
            for group in masters:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            return
        order = json.loads(line)
        grouped, tell = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.setsid()
            os.write(tell, b".")
            os.environ.clear()
            os.environ.update(order["environment"])
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(2, 1)
            try:
                Preloaded(order["options"]).run()
            finally:
                os._exit(0)
        # Answer only once the master leads its own process group, so that the caller can
        # signal the group (and see it alive) from the first moment.
        os.read(grouped, 1)
        os.close(grouped)
        os.close(tell)
        masters.append(pid)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


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
