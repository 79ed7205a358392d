"""Benchmark the collector API against plain baselines, all in one run: ``python bench/run.py``.

(a) Ingestion: events per second through ``POST /api/v1/batches`` (1,000-event batches,
    validated, consent-gated, compressed, encrypted) under gunicorn on PostgreSQL, against the
    same events written one row per event with psycopg's COPY (no checks, no encryption).
(b) Consent checks: ``GET /api/v1/consent`` requests per second, against the same bare Flask
    app (same gunicorn settings) running the consent check's one SQL statement (``/db``), and
    against its hello-world (``/``). For context, no goal: ``SELECT 1`` in that app (``/one``,
    the least a database read costs) and the portal's ``/healthz`` (its page hooks alone).

Everything runs on 127.0.0.1: a throwaway PostgreSQL cluster (the test suite's), a throwaway
redis-server for the rate limits (as in production; ``--rate-limit-store memory`` counts in
each process instead), gunicorn (4 workers x 2 threads by default, what gunicorn.conf.py runs
on 2 cores; the same for the portal and the bare app), and the load generators (``wrk`` when
installed, for the consent checks; Python processes otherwise). Each figure and its baseline
are measured in turn, round after round (3 rounds of 8 s by default, about 4 minutes in all);
the table gives the medians with every round's figure, the CPU time every process of the run
spent per unit of work (read from /proc: rates move with other load, CPU per unit barely
does), and the machine's load average. The goals: (a) at least COPY's rate, (b) at least half
the rate of the bare app doing the same read. docs/benchmarks.md has the figures, and why (b)
is measured against the same read rather than against hello-world alone.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from anywhere: the portal and the test suite's PostgreSQL helper are in ROOT.
sys.path.insert(0, str(ROOT))

ISSUER = "http://127.0.0.1:9"
CATEGORIES = ("pointer", "clicks", "keystrokes")
BATCH_EVENTS = 1000
PEOPLE = 48
POOL = 24
#: Gunicorn's settings, the same for the portal and the hello-world.
WORKERS = 4
THREADS = 2
COPY_TABLE = """CREATE TABLE bench_event (
    person_id integer NOT NULL, category text NOT NULL, t timestamptz NOT NULL,
    event jsonb NOT NULL)"""


@dataclass
class Figure:
    """One measured rate and its baseline."""

    name: str
    unit: str
    value: float
    baseline_name: str
    baseline: float
    goal: float | None
    note: str = ""
    #: CPU time per unit (ms), every process of the run counted; NaN where not measured.
    cpu: float = math.nan
    baseline_cpu: float = math.nan

    @property
    def ratio(self) -> float:
        """Return the rate as a multiple of its baseline."""
        return self.value / self.baseline if self.baseline else 0.0


# --- the portal's data -----------------------------------------------------------------------

def portal_environment(database_url: str, instance: Path,
                       rate_limit_store: str = "memory://") -> dict[str, str]:
    """Return the environment that configures the portal for the benchmark."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("PORTAL_")}
    environment.update({
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_RATELIMIT_STORAGE_URL": rate_limit_store,
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(48),
        "PORTAL_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "PORTAL_OIDC_ISSUER": ISSUER,
        "PORTAL_OIDC_CLIENT_ID": "bench",
        "PORTAL_OIDC_CLIENT_SECRET": secrets.token_urlsafe(24),
        "PORTAL_LOG_LEVEL": "WARNING",
        "PORTAL_INSTANCE_PATH": str(instance),
    })
    return environment


def _events(category: str, subject: str) -> list[dict[str, Any]]:
    """Return 1,000 plausible events of one person and category, oldest first."""
    from portal.vault.demo_data import generate_batches

    days = 3
    while True:
        events = [event for body in generate_batches(category, person_seed=subject, days=days,
                                                     batches_per_day=8)
                  for event in body["events"]]
        if len(events) >= BATCH_EVENTS:
            return events[-BATCH_EVENTS:]
        days += 3


def seed(environment: dict[str, str]) -> tuple[str, list[tuple[int, str, dict[str, Any]]]]:
    """Migrate, publish the catalog, give consents, register a collector; make the batches.

    Returns the collector's token and the pool of batches as (person id, category, body).
    """
    os.environ.update(environment)
    from portal import create_app
    from portal.api.service import create_collector
    from portal.auth.service import sign_in
    from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
    from portal.catalog.notices import current_notice
    from portal.catalog.publication import load_catalog
    from portal.cli import upgrade_database
    from portal.consent.models import ConsentMethod
    from portal.consent.service import grant_consent
    from portal.db import commit, get_engine
    from portal.vault.ingest import find_category

    app = create_app()
    upgrade_database(app)
    pool: list[tuple[int, str, dict[str, Any]]] = []
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="bench")
        notice = current_notice()
        assert notice is not None
        people = []
        for number in range(PEOPLE):
            person = sign_in({"sub": f"bench-{number:03d}", "name": f"Bench {number}"},
                             issuer=ISSUER, roles_claim="groups", role_map={})
            for key in CATEGORIES:
                grant_consent(person, find_category(key), notice_version=notice,
                              method=ConsentMethod.IMPORT, actor=None)
            people.append(person)
        _collector, token, _secret = create_collector("bench agent", CATEGORIES)
        commit()
        for number in range(POOL):
            person, category = people[number % PEOPLE], CATEGORIES[number % len(CATEGORIES)]
            events = _events(category, person.subject)
            body = {"subject": person.subject, "category": category,
                    "collected_from": events[0]["t"], "collected_to": events[-1]["t"],
                    "dss_level": 2, "events": events}
            pool.append((person.id, category, body))
    get_engine(app).dispose()
    return token, pool


# --- servers ---------------------------------------------------------------------------------

@contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway redis-server on a free port of 127.0.0.1, without persistence.

    Yields its URL. Redis is where the portal counts rate limits in production (one count
    for all processes and hosts), so the benchmark counts there too.
    """
    from tests.support.servers import redis_server as throwaway_redis

    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server);"
                         " or run with --rate-limit-store memory")
    with throwaway_redis() as url:
        yield url


@contextmanager
def gunicorn(target: str, environment: dict[str, str], *, workers: int, threads: int,
             ready_path: str) -> Iterator[int]:
    """Serve ``target`` with gunicorn on a free port of 127.0.0.1; yield the port."""
    from tests.support.postgres import free_port

    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT), "--workers",
               str(workers), "--worker-class", "gthread", "--threads", str(threads),
               "--bind", f"127.0.0.1:{port}", "--keep-alive", "30", "--log-level", "warning",
               "--backlog", "2048", target]
    # The portal writes one access line per request (portal.observability), as in
    # production: to a file, as a log collector would take it, not onto this terminal.
    log = Path(environment["PORTAL_INSTANCE_PATH"]) / f"{target.replace(':', '-')}.log"
    with log.open("ab") as output:
        server = subprocess.Popen(command, env=environment, cwd=ROOT, stdout=output,
                                  stderr=output)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}",
                                            timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start {target}; its log:\n"
                                       + log.read_text(errors="replace")[-3000:]) from None
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(30)


# --- CPU used, every process counted ---------------------------------------------------------

def _process_times() -> dict[int, tuple[int, float, float]]:
    """Return each live process's parent, CPU seconds, and its ended children's CPU seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The name in parentheses may hold spaces: the fields start after its ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile; its parent's "children" times now hold it
        times = [int(value) / ticks for value in fields[11:15]]
        found[int(entry.name)] = (int(fields[1]), times[0] + times[1], times[2] + times[3])
    return found


class CpuMeter:
    """CPU seconds used by every process of the benchmark, the database server's included.

    Rates on a shared machine move with whatever else runs; the CPU time a unit of work
    costs barely does, so each figure is also given as CPU per unit. Counted from /proc
    (Linux): the processes this script started (gunicorn and its workers, redis-server,
    wrk, the senders, the COPY writers) and PostgreSQL's (its backends); an ended process
    is counted in its parent's "children" times. This script's own coordinating work is
    left out. Elsewhere than on Linux, no CPU figures.
    """

    def __init__(self, *roots: int) -> None:
        self.roots = roots
        self.available = Path("/proc/self/stat").exists()

    def read(self) -> float:
        """Return the CPU seconds used so far by the processes under the roots."""
        if not self.available:
            return math.nan
        processes = _process_times()
        children: dict[int, list[int]] = {}
        for pid, (parent, _own, _ended) in processes.items():
            children.setdefault(parent, []).append(pid)
        total, pending = 0.0, list(self.roots)
        while pending:
            pid = pending.pop()
            if pid in processes:
                _parent, own, ended = processes[pid]
                total += ended if pid == os.getpid() else own + ended
                pending.extend(children.get(pid, []))
        return total


def _cpu_between(meter: CpuMeter | None, start: float, stop: float) -> float:
    """Sleep until ``start``, then until ``stop``; return the CPU seconds used in between."""
    if meter is None:
        return math.nan
    time.sleep(max(0.0, start - time.time()))
    before = meter.read()
    time.sleep(max(0.0, stop - time.time()))
    return meter.read() - before


# --- load ------------------------------------------------------------------------------------

def _run_workers(worker: Callable[..., tuple[int, int, str]], arguments: list[tuple[Any, ...]],
                 window: tuple[float, float, float], meter: CpuMeter | None,
                 ) -> tuple[int, int, str, float]:
    """Run one worker process per argument tuple; add up (units, failures, first failure).

    Also returns the CPU seconds every process used during the measured part of ``window``.
    """
    context = multiprocessing.get_context("fork")
    _start, measure_from, stop = window
    with context.Pool(len(arguments)) as pool:
        pending = pool.starmap_async(worker, arguments)
        cpu = _cpu_between(meter, measure_from, stop)
        results = pending.get()
    units = sum(result[0] for result in results)
    failures = sum(result[1] for result in results)
    first = next((result[2] for result in results if result[2]), "")
    return units, failures, first, cpu


def _api_ingestion_worker(port: int, token: str, bodies: list[tuple[bytes, int]], worker: str,
                          start: float, measure_from: float, stop: float) -> tuple[int, int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    events = failures = sent = 0
    first = ""
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < stop:
        body, count = bodies[sent % len(bodies)]
        sent += 1
        connection.request("POST", "/api/v1/batches", body=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Idempotency-Key": f"bench/{worker}/{sent}"})
        answer = connection.getresponse()
        reply = answer.read()
        finished = time.time()
        if answer.status != 201:
            failures += 1
            first = first or f"HTTP {answer.status}: {reply[:300]!r}"
        elif measure_from <= finished <= stop:
            events += count
    connection.close()
    return events, failures, first


def _copy_worker(dsn: str, batches: list[tuple[int, str, list[dict[str, Any]]]], worker: int,
                 start: float, measure_from: float, stop: float) -> tuple[int, int, str]:
    import psycopg
    from psycopg.types.json import Jsonb

    events = done = 0
    with psycopg.connect(dsn) as connection:
        while time.time() < start:
            time.sleep(0.001)
        while time.time() < stop:
            person_id, category, rows = batches[(worker + done) % len(batches)]
            done += 1
            with connection.cursor() as cursor, cursor.copy(
                    "COPY bench_event (person_id, category, t, event) FROM STDIN") as copy:
                for event in rows:
                    copy.write_row((person_id, category, event["t"], Jsonb(event)))
            connection.commit()
            if measure_from <= time.time() <= stop:
                events += len(rows)
    return events, 0, ""


def _window(seconds: float, warmup: float) -> tuple[float, float, float]:
    start = time.time() + 1.0  # every process starts at the same moment
    return start, start + warmup, start + warmup + seconds


def measure_api_ingestion(port: int, token: str, pool: list[tuple[int, str, dict[str, Any]]],
                          *, clients: int, seconds: float, warmup: float,
                          meter: CpuMeter | None = None) -> tuple[float, float]:
    """Return the API's ingestion rate in events per second, and the CPU seconds per event."""
    bodies = [(json.dumps(body, separators=(",", ":")).encode(), len(body["events"]))
              for _person, _category, body in pool]
    window = start, measure_from, stop = _window(seconds, warmup)
    # Every batch gets a new idempotency key, across rounds too: none is a retry.
    run = secrets.token_hex(4)
    events, failures, first, cpu = _run_workers(_api_ingestion_worker, [
        (port, token, bodies[number::clients] or bodies, f"{run}-{number}", start,
         measure_from, stop) for number in range(clients)], window, meter)
    if failures:
        raise RuntimeError(f"{failures} batches were refused; the first: {first}")
    return events / seconds, cpu / max(events, 1)


def measure_copy(dsn: str, pool: list[tuple[int, str, dict[str, Any]]], *, writers: int,
                 seconds: float, warmup: float,
                 meter: CpuMeter | None = None) -> tuple[float, float]:
    """Return COPY's rate in events (rows) per second, and the CPU seconds per event."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_event")
        connection.execute(COPY_TABLE)
    batches = [(person_id, category, body["events"]) for person_id, category, body in pool]
    window = start, measure_from, stop = _window(seconds, warmup)
    events, _failures, _first, cpu = _run_workers(_copy_worker, [
        (dsn, batches, number, start, measure_from, stop) for number in range(writers)],
        window, meter)
    return events / seconds, cpu / max(events, 1)


def _get_worker(port: int, path: str, headers: dict[str, str], start: float,
                measure_from: float, stop: float) -> tuple[int, int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    done = failures = 0
    first = ""
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < stop:
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            failures += 1
            first = first or f"HTTP {answer.status}"
        elif time.time() >= measure_from:
            done += 1
    connection.close()
    return done, failures, first


def measure_requests(port: int, path: str, headers: dict[str, str], *, connections: int,
                     seconds: float, warmup: float,
                     meter: CpuMeter | None = None) -> tuple[float, float]:
    """Return requests per second on ``path`` (wrk if installed) and CPU seconds per request."""
    wrk = shutil.which("wrk")
    url = f"http://127.0.0.1:{port}{path}"
    if wrk:
        # A 10 s timeout: wrk's default (2 s) counts slow pages under load as errors.
        arguments = [wrk, "-t1", f"-c{connections}", "--timeout", "10s"]
        for name, value in headers.items():
            arguments += ["-H", f"{name}: {value}"]
        subprocess.run([*arguments, f"-d{max(1, int(warmup))}s", url], check=True,
                       capture_output=True, text=True)
        before = meter.read() if meter else math.nan
        output = subprocess.run([*arguments, f"-d{int(seconds)}s", url], check=True,
                                capture_output=True, text=True).stdout
        cpu = meter.read() - before if meter else math.nan
        if "Non-2xx" in output or "Socket errors" in output:
            raise RuntimeError(f"wrk saw errors:\n{output}")
        rate = re.search(r"Requests/sec:\s+([0-9.]+)", output)
        done = re.search(r"([0-9]+) requests in", output)
        assert rate is not None and done is not None, output
        return float(rate.group(1)), cpu / max(int(done.group(1)), 1)
    window = start, measure_from, stop = _window(seconds, warmup)
    done, failures, first, cpu = _run_workers(_get_worker, [
        (port, path, headers, start, measure_from, stop) for _ in range(connections)],
        window, meter)
    if failures:
        raise RuntimeError(f"{failures} requests failed; the first: {first}")
    return done / seconds, cpu / max(done, 1)


# --- the run ---------------------------------------------------------------------------------

def machine() -> str:
    """Describe the machine the figures come from."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1) if found else model
    return (f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def print_table(figures: list[Figure]) -> None:
    """Print each figure with its baseline, the ratio and whether the goal is met."""
    print()
    print(f"{'measure':<34} {'portal':>12} {'baseline':>22} {'ratio':>7} {'goal':>7}  met")
    for figure in figures:
        baseline = f"{figure.baseline:,.0f} ({figure.baseline_name})"
        goal = "" if figure.goal is None else f">= {figure.goal}"
        met = "" if figure.goal is None else ("yes" if figure.ratio >= figure.goal else "NO")
        print(f"{figure.name + ' (' + figure.unit + ')':<34} {figure.value:>12,.0f} "
              f"{baseline:>22} {figure.ratio:>7.2f} {goal:>7}  {met}")
        if figure.note:
            print(f"  {figure.note}")
        if not math.isnan(figure.cpu):
            per = "1,000 events" if figure.unit == "events/s" else "request"
            print(f"  CPU per {per}, every process counted: {figure.cpu:.2f} ms against "
                  f"{figure.baseline_cpu:.2f} ms ({figure.baseline_name}), a ratio of "
                  f"{figure.baseline_cpu / figure.cpu:.2f}")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _spread(values: list[float]) -> str:
    return f"rounds: {', '.join(f'{value:,.0f}' for value in values)}"


def main() -> None:
    """Run every phase, interleaved round by round, and print the table of medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="how often each figure and its baseline are measured, in turn")
    parser.add_argument("--seconds", type=float, default=8,
                        help="measured time of each figure in each round")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured time before each")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="gunicorn workers (portal and hello-world alike)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help="threads per gunicorn worker (portal and hello-world alike)")
    parser.add_argument("--clients", type=int, default=4,
                        help="concurrent batch senders, and COPY writers")
    parser.add_argument("--connections", type=int, default=8,
                        help="concurrent connections for the consent checks")
    parser.add_argument("--rate-limit-store", choices=("redis", "memory"), default="redis",
                        help="where the portal counts rate limits: a redis-server the "
                             "benchmark starts (as in production), or each process's memory")
    parser.add_argument("--only", choices=("ingestion", "consent"),
                        help="measure one goal only (with its baseline)")
    options = parser.parse_args()

    from tests.support.postgres import PostgresCluster

    print(f"Machine: {machine()}")
    load = os.getloadavg()
    print(f"Load average at the start: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min)")
    if load[0] > 0.5:
        # The figures are only as good as the machine is quiet: say so rather than mislead.
        print(f"Warning: the load average is {load[0]:.1f}; other processes compete for the "
              "CPU and every figure will come out low.")
    cluster = PostgresCluster().start()
    instance = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    try:
        with (redis_server() if options.rate_limit_store == "redis"
              else nullcontext("memory://")) as store:
            database_url = cluster.create_database("bench")
            environment = portal_environment(database_url, instance, store)
            print("Preparing: schema, catalog, consents, collector, batches ...", flush=True)
            token, pool = seed(environment)
            # Every process of the run: this script's (servers, clients) and PostgreSQL's.
            postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
            rates, cpu = measure(options, environment, cluster.url("bench", driver=False),
                                 token, pool, CpuMeter(os.getpid(), postmaster))
        report(options, rates, cpu)
        load = os.getloadavg()
        print(f"Load average at the end: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min)")
    finally:
        cluster.stop()
        shutil.rmtree(instance, ignore_errors=True)


def measure(options: argparse.Namespace, environment: dict[str, str], dsn: str, token: str,
            pool: list[tuple[int, str, dict[str, Any]]], meter: CpuMeter,
            ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Measure each figure and its baseline in turn, round after round.

    Returns every rate and every CPU time per unit (seconds), by figure.
    """
    subject, category = pool[0][2]["subject"], pool[0][2]["category"]
    query = f"?subject={subject}&category={category}"
    auth = {"Authorization": f"Bearer {token}"}
    timing = {"seconds": options.seconds, "warmup": options.warmup, "meter": meter}
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def keep(name: str, measured: tuple[float, float]) -> None:
        rates.setdefault(name, []).append(measured[0])
        cpu.setdefault(name, []).append(measured[1])

    gunicorn_options = {"workers": options.workers, "threads": options.threads}
    requests = {"connections": options.connections, **timing}
    # Both servers stay up; the idle one costs nothing. Measuring each figure and its
    # baseline in turn, round after round, spreads any disturbance over both.
    with gunicorn("bench.app:app", environment, ready_path="/healthz",
                  **gunicorn_options) as port, \
            gunicorn("bench.hello:app", environment, ready_path="/",
                     **gunicorn_options) as hello_port:
        for number in range(1, options.rounds + 1):
            print(f"Round {number} of {options.rounds} ...", flush=True)
            if options.only in {None, "ingestion"}:
                keep("api", measure_api_ingestion(port, token, pool, clients=options.clients,
                                                  **timing))
                keep("copy", measure_copy(dsn, pool, writers=options.clients, **timing))
            if options.only in {None, "consent"}:
                keep("consent", measure_requests(port, f"/api/v1/consent{query}", auth,
                                                 **requests))
                keep("read", measure_requests(hello_port, f"/db{query}", auth, **requests))
                keep("hello", measure_requests(hello_port, "/", {}, **requests))
                keep("round_trip", measure_requests(hello_port, "/one", {}, **requests))
                keep("floor", measure_requests(port, "/healthz", {}, **requests))
    return rates, cpu


def report(options: argparse.Namespace, rates: dict[str, list[float]],
           cpu: dict[str, list[float]]) -> None:
    """Print the table of medians, with every round's figure and the CPU per unit."""
    setting = (f"gunicorn {options.workers} workers x {options.threads} threads, rate limits "
               f"counted in {options.rate_limit_store}; median of {options.rounds} rounds of "
               f"{options.seconds:.0f} s")
    tool = "wrk, 1 thread" if shutil.which("wrk") else "Python processes"
    median = {name: _median(values) for name, values in rates.items()}
    # Milliseconds per unit: per 1,000 events for ingestion, per request otherwise.
    scale = {"api": 1e6, "copy": 1e6}
    cost = {name: _median(values) * scale.get(name, 1e3) for name, values in cpu.items()}

    def figure(name: str, value: str, baseline: str, baseline_name: str,
               goal: float | None, note: str) -> Figure:
        return Figure(name, "requests/s" if value != "api" else "events/s", median[value],
                      baseline_name, median[baseline], goal, note, cost[value], cost[baseline])

    figures = []
    if "api" in median:
        figures.append(figure(
            "ingestion", "api", "copy", "COPY", 1.0,
            f"{BATCH_EVENTS}-event batches, {options.clients} senders and {options.clients} "
            f"COPY writers; {setting}\n  API {_spread(rates['api'])}; COPY "
            f"{_spread(rates['copy'])}"))
    if "consent" in median:
        figures += [
            figure("consent checks", "consent", "read", "same read, bare", 0.5,
                   f"{options.connections} keep-alive connections ({tool}); {setting}\n"
                   f"  API {_spread(rates['consent'])}; bare Flask + the same read "
                   f"{_spread(rates['read'])}"),
            figure("consent checks", "consent", "hello", "hello-world", 0.5,
                   "issue 5's goal: a check reads the database, hello-world does not (see "
                   f"the next two lines and docs/benchmarks.md)\n  hello-world "
                   f"{_spread(rates['hello'])}"),
            figure("bare Flask + the same read", "read", "hello", "hello-world", None,
                   "context, no goal: hello-world's app running the consent check's SQL "
                   "statement through psycopg (prepared), no portal, no rate limit"),
            figure("bare Flask + SELECT 1", "round_trip", "hello", "hello-world", None,
                   "context, no goal: the least any answer read from the database costs "
                   f"here\n  {_spread(rates['round_trip'])}"),
            figure("portal floor: /healthz", "floor", "hello", "hello-world", None,
                   "context, no goal: the hooks the portal runs on every request, no "
                   f"database, no API code\n  {_spread(rates['floor'])}")]
    print_table(figures)


if __name__ == "__main__":
    main()
