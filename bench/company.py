"""The benchmark at company scale: ``python bench/company.py`` (about 15 minutes on 2 cores).

One command, all on 127.0.0.1, on a throwaway PostgreSQL cluster (the test suite's):

1. builds a company: 100,000 employees in 10 departments with a consent history for each of
   the catalog's 7 categories (about 1.2 million ledger events, bulk-loaded as
   ``bench/hr_export.py`` does), then 10,000,000 collected events stored through the vault's
   own ingestion (validated, compressed, encrypted per person and category): 1,000,000 for one
   person, the rest in batches of 1,000 for 9,000 others;
2. serves the portal and a bare Flask hello-world with the same gunicorn settings, and
   measures, each figure against a baseline measured in the same run:

   - dashboard pages per second (signed-in people, server-side sessions) against hello-world;
   - consent checks per second through the collector API against hello-world;
   - ingestion through the API (1,000-event batches) against COPY of the same events, one
     row per event, unencrypted;
   - one person's download (1,000,000 events) against ``zipfile`` writing the same files from
     memory;
   - HR's CSV export of all 100,000 employees against PostgreSQL's COPY of the same query;
   - the deletion of one person with 1,000,000 events (a DPO-approved request, executed with
     crypto-shredding and the check afterwards) against a plain ``DELETE`` of as many rows of
     one-row-per-event plaintext;
   - the peak resident memory of the gunicorn workers after all of it.

Then it prints one table. Smaller runs for a quick look: ``--people 10000 --events 1000000
--large 200000``. Figures and their meaning: docs/benchmarks.md, "At company scale".
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.download as download  # noqa: E402  (after the path is set, as a script)
import bench.hr_export as hr_export  # noqa: E402
import bench.run as run  # noqa: E402

ISSUER = "https://idp.bench"  # the issuer bench/hr_export.py gives its people
SMALL_BATCH = 1_000
LARGE_BATCH = 10_000
ONE_HOUR = dt.timedelta(hours=1)


@dataclass
class Row:
    """One line of the table: the portal's figure, its baseline, and how they compare."""

    name: str
    unit: str
    value: float
    baseline: float
    baseline_name: str
    higher_is_better: bool = True
    goal: str = ""

    @property
    def ratio(self) -> float:
        """Return the portal's figure divided by its baseline's."""
        return self.value / self.baseline if self.baseline else float("nan")


def settings(database_url: str, master_key: str) -> dict[str, Any]:
    """Return the portal's settings for every process of the run (one master key for all)."""
    return {"DATABASE_URL": database_url, "SECRET_KEY": secrets.token_urlsafe(48),
            "MASTER_KEY": master_key, "OIDC_ISSUER": ISSUER, "OIDC_CLIENT_ID": "bench",
            "OIDC_CLIENT_SECRET": secrets.token_urlsafe(24), "LOG_LEVEL": "WARNING",
            # The load generators are one client: without this they would meet the limits.
            "API_RATE_LIMIT": "100000000 per minute", "DOWNLOAD_RATE_LIMIT": "1000 per hour"}


def environment(values: dict[str, Any], instance: Path) -> dict[str, str]:
    """Return the settings as ``PORTAL_*`` variables, as gunicorn and subprocesses get them."""
    from tests.support.servers import portal_environment

    return portal_environment(values, instance)


def _app(values: dict[str, Any]) -> Any:
    from portal import create_app

    return create_app(values)


# --- building the company --------------------------------------------------------------------

def consenting_people(database_url: str, category: str, count: int) -> list[tuple[int, str]]:
    """Return ``count`` (person id, subject) whose consent to ``category`` is given now."""
    import psycopg

    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as connection:
        rows = connection.execute(
            "SELECT p.id, p.subject FROM consent_status s JOIN person p ON p.id = s.person_id "
            "WHERE s.category_key = %s AND s.state = 'ConsentGiven' ORDER BY p.id LIMIT %s",
            (category, count)).fetchall()
    if len(rows) < count:
        raise SystemExit(f"only {len(rows)} people consent to {category}; need {count}")
    return [(int(row[0]), str(row[1])) for row in rows]


def _store(values: dict[str, Any], jobs: list[tuple[int, int, int]]) -> int:
    """Store events through the vault's ingestion: jobs of (person id, events, batch size)."""
    from portal.auth.models import Person
    from portal.db import commit, db, get_engine
    from portal.vault.ingest import find_category, ingest_batch

    app = _app(values)
    stored = 0
    with app.app_context():
        category = find_category("pointer")
        end = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).replace(microsecond=0)
        for person_id, total, size in jobs:
            person = db.get(Person, person_id)
            assert person is not None
            # Spread over the last 60 days (pointer data is kept 90), whole milliseconds.
            step = dt.timedelta(milliseconds=60 * 86_400_000 // total)
            start = end - step * total
            for offset in range(0, total, size):
                count = min(size, total - offset)
                events = download._pointer_batch(start + step * offset, step, count, offset)
                ingest_batch(person, category, events=events,
                             collected_from=start + step * offset,
                             collected_to=start + step * (offset + count - 1), dss_level=2)
                commit()
                stored += count
    get_engine(app).dispose()
    return stored


def store_events(values: dict[str, Any], large: tuple[int, int], small: list[int],
                 small_events: int, processes: int = 2) -> int:
    """Store ``large`` = (person id, events) and ``small_events`` each for ``small`` people."""
    jobs = [(person_id, small_events, SMALL_BATCH) for person_id in small]
    shares: list[list[tuple[int, int, int]]] = [jobs[number::processes]
                                                for number in range(processes)]
    shares[0].insert(0, (large[0], large[1], LARGE_BATCH))
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        return sum(pool.starmap(_store, [(values, share) for share in shares]))


def open_sessions(database_url: str, people: list[int]) -> list[str]:
    """Give each person a signed-in server-side session, as a sign-in would; return the ids."""
    import hashlib

    import psycopg
    from psycopg.types.json import Jsonb

    now = dt.datetime.now(dt.UTC)
    ids = []
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as connection, connection.cursor() as cursor, cursor.copy(
            "COPY web_session (id_hash, person_id, data, created_at, last_seen_at, "
            "expires_at, authenticated_at) FROM STDIN") as copy:
        for person_id in people:
            session_id = secrets.token_urlsafe(32)
            ids.append(session_id)
            copy.write_row((hashlib.sha256(session_id.encode()).hexdigest(), person_id,
                            Jsonb({"_user_id": str(person_id), "_fresh": True}), now, now,
                            now + dt.timedelta(hours=12), now))
    return ids


# --- the measures ----------------------------------------------------------------------------

def measure_pages(port: int, hello_port: int, cookie: str, options: argparse.Namespace,
                  ) -> tuple[float, float]:
    """Dashboard pages per second for a signed-in person, and hello-world's (medians)."""
    pages, hellos = [], []
    for _round in range(options.rounds):
        pages.append(run.measure_requests(port, "/", {"Cookie": f"portal_session={cookie}"},
                                          connections=options.connections,
                                          seconds=options.seconds, warmup=options.warmup)[0])
        hellos.append(run.measure_requests(hello_port, "/", {},
                                           connections=options.connections,
                                           seconds=options.seconds, warmup=options.warmup)[0])
    return statistics.median(pages), statistics.median(hellos)


def measure_checks(port: int, hello_port: int, token: str, subject: str,
                   options: argparse.Namespace) -> tuple[float, float]:
    """Consent checks per second through the API, and hello-world's."""
    checks, hellos = [], []
    path = f"/api/v1/consent?subject={subject}&category=pointer"
    for _round in range(options.rounds):
        checks.append(run.measure_requests(port, path, {"Authorization": f"Bearer {token}"},
                                           connections=options.connections,
                                           seconds=options.seconds, warmup=options.warmup)[0])
        hellos.append(run.measure_requests(hello_port, "/", {},
                                           connections=options.connections,
                                           seconds=options.seconds, warmup=options.warmup)[0])
    return statistics.median(checks), statistics.median(hellos)


def ingestion_pool(database_url: str, people: list[tuple[int, str]], size: int,
                   ) -> list[tuple[int, str, dict[str, Any]]]:
    """Batches of 1,000 plausible pointer events for consenting people, as collectors send."""
    pool = []
    for person_id, subject in people[:size]:
        events = run._events("pointer", subject)
        pool.append((person_id, "pointer", {
            "subject": subject, "category": "pointer", "collected_from": events[0]["t"],
            "collected_to": events[-1]["t"], "dss_level": 2, "events": events}))
    return pool


def measure_ingestion(port: int, dsn: str, token: str, pool: list[tuple[int, str, dict[str, Any]]],
                      options: argparse.Namespace) -> tuple[float, float]:
    """Events per second through the API, and through COPY."""
    api, copy = [], []
    for _round in range(options.rounds):
        api.append(run.measure_api_ingestion(port, token, pool, clients=options.clients,
                                             seconds=options.seconds, warmup=options.warmup)[0])
        copy.append(run.measure_copy(dsn, pool, writers=options.clients,
                                     seconds=options.seconds, warmup=options.warmup)[0])
    return statistics.median(api), statistics.median(copy)


def measure_download(env: dict[str, str], person_id: int, folder: Path) -> tuple[float, float]:
    """Seconds for one person's download (fresh process), and for zipfile's floor."""
    target = folder / "download.zip"
    done = download._in_subprocess(env, "--measure", str(person_id), str(target))
    floor = download._in_subprocess(env, "--floor", str(target))
    target.unlink()
    return done["seconds"], floor["seconds"]


def measure_hr_export(values: dict[str, Any], database_url: str, rounds: int,
                      ) -> tuple[float, float]:
    """Seconds for HR's CSV export of everyone, and for COPY of the same query (medians)."""
    from portal.db import get_engine

    app = _app(values)
    sql = hr_export.copy_sql(app)
    portal, copy = [], []
    for _round in range(rounds):
        copy.append(hr_export.time_copy(database_url, sql)[0])
        portal.append(hr_export.time_portal(app)[0])
    get_engine(app).dispose()
    return statistics.median(portal), statistics.median(copy)


def measure_deletion(values: dict[str, Any], database_url: str, person_id: int,
                     events: int) -> tuple[float, float, int]:
    """Seconds to execute one person's deletion request; seconds for the plain DELETE floor."""
    import psycopg

    from portal.auth.models import Person
    from portal.auth.service import sign_in
    from portal.db import commit, db, get_engine
    from portal.requests import service
    from portal.requests.models import DeletionScope, RequestState

    app = _app(values)
    with app.app_context():
        person = db.get(Person, person_id)
        dpo = sign_in({"sub": "bench-dpo", "name": "Bench DPO", "groups": ["privacy-office"]},
                      issuer=ISSUER, roles_claim="groups",
                      role_map={"dpo": ["privacy-office"]})
        assert person is not None
        request = service.submit_deletion_request(person, scope=DeletionScope.ALL)
        service.approve_deletion(request, dpo=dpo)
        commit()
        started = time.perf_counter()
        done = service.execute_deletion(request, actor=dpo)
        seconds = time.perf_counter() - started
        assert done.state is RequestState.EXECUTED and done.verified_at is not None
        deleted = sum(step.events_deleted for step in done.steps)
    get_engine(app).dispose()
    # The floor: as many plaintext rows, one per event, deleted by one statement.
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_plain "
                           "(person_id bigint, t timestamptz, event jsonb)")
        connection.execute("CREATE INDEX IF NOT EXISTS bench_plain_person "
                           "ON bench_plain (person_id)")
        with connection.cursor() as cursor, cursor.copy(
                "COPY bench_plain (person_id, t, event) FROM STDIN") as copy:
            start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
            for number in range(events):
                copy.write_row((person_id, start + dt.timedelta(milliseconds=number),
                                json.dumps({"x": number % 2560, "y": number % 1440})))
        connection.execute("VACUUM ANALYZE bench_plain")
        started = time.perf_counter()
        connection.execute("DELETE FROM bench_plain WHERE person_id = %s", (person_id,))
        floor = time.perf_counter() - started
    return seconds, floor, deleted


def worker_peak_memory(master_pid: int) -> list[float]:
    """Peak resident memory (VmHWM) of each gunicorn worker of ``master_pid``, in MiB."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    peaks = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


# --- the run ---------------------------------------------------------------------------------

def print_table(rows: list[Row], peaks: list[float], scale: str) -> None:
    """Print the figures, each with its baseline and the ratio."""
    print()
    print(f"At company scale: {scale}")
    print(f"Machine: {run.machine()}")
    print()
    print("| measure | portal | baseline (same run) | ratio | goal |")
    print("|---|---|---|---|---|")
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.higher_is_better else f"{row.ratio:.2f}x the time"
        print(f"| {row.name} | {row.value:,.{1 if row.value < 100 else 0}f} {row.unit} "
              f"| {row.baseline:,.{1 if row.baseline < 100 else 0}f} {row.unit} "
              f"({row.baseline_name}) | {ratio} | {row.goal} |")
    print(f"| gunicorn workers' peak memory | {', '.join(f'{peak:.0f}' for peak in peaks)} MiB "
          "| | | |")


def main() -> None:
    """Build the company, measure every figure against its baseline, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000_000,
                        help="collected events in all (the large person's included)")
    parser.add_argument("--large", type=int, default=1_000_000,
                        help="events of the one person downloaded and deleted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--workers", type=int, default=run.WORKERS)
    parser.add_argument("--threads", type=int, default=run.THREADS)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    options = parser.parse_args()

    from tests.support.postgres import PostgresCluster
    from tests.support.servers import Gunicorn

    cluster = PostgresCluster().start()
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-company-"))
    try:
        url = cluster.create_database("company")
        dsn = cluster.url("company", driver=False)
        master_key = base64.b64encode(secrets.token_bytes(32)).decode()
        values = settings(url, master_key)
        env = environment(values, folder / "instance")
        os.environ.update(env)

        started = time.perf_counter()
        counts = hr_export.load(url, options.people)
        print(f"{counts['people']:,} people, {counts['events']:,} consent events "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        small_count = (options.events - options.large) // SMALL_BATCH
        people = consenting_people(url, "pointer", small_count + 1)
        large_person = people[0]
        started = time.perf_counter()
        stored = store_events(values, (large_person[0], options.large),
                              [person_id for person_id, _subject in people[1:]], SMALL_BATCH)
        print(f"{stored:,} events stored through the vault "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        with psycopg_connection(dsn) as connection:
            connection.execute("VACUUM ANALYZE")

        from portal.api.service import create_collector
        from portal.db import commit, get_engine

        app = _app(values)
        with app.app_context():
            _collector, token, _secret = create_collector(
                "company agent", ["pointer", "clicks", "keystrokes"])
            commit()
        get_engine(app).dispose()
        cookies = open_sessions(url, [large_person[0]])
        pool = ingestion_pool(url, people[1:], 100)

        rows: list[Row] = []
        gunicorn_options = {"workers": options.workers, "threads": options.threads}
        portal = Gunicorn("bench.app:app", env, ready_path="/healthz", **gunicorn_options).start()
        hello = Gunicorn("bench.hello:app", env, ready_path="/", **gunicorn_options).start()
        try:
            pages, hello_pages = measure_pages(portal.port, hello.port, cookies[0], options)
            rows.append(Row("dashboard pages", "/s", pages, hello_pages, "hello-world"))
            checks, hello_checks = measure_checks(portal.port, hello.port, token,
                                                  people[1][1], options)
            rows.append(Row("consent checks", "/s", checks, hello_checks, "hello-world",
                            goal=">= 0.5"))
            api, copy = measure_ingestion(portal.port, dsn, token, pool, options)
            rows.append(Row("ingestion", "events/s", api, copy, "COPY", goal=">= 1.0"))
            assert portal.process is not None
            peaks = worker_peak_memory(portal.process.pid)
        finally:
            portal.stop()
            hello.stop()
        seconds, floor = measure_download(env, large_person[0], folder)
        rows.append(Row(f"download of {options.large:,} events", "s", seconds, floor,
                        "zipfile", higher_is_better=False))
        portal_export, copy_export = measure_hr_export(values, url, options.rounds)
        rows.append(Row(f"HR CSV export, {options.people:,} people", "s", portal_export,
                        copy_export, "COPY", higher_is_better=False, goal="<= 3x"))
        deletion, delete_floor, deleted = measure_deletion(values, url, large_person[0],
                                                           options.large)
        rows.append(Row(f"deletion of one person, {deleted:,} events", "s", deletion,
                        delete_floor, "DELETE of plaintext rows", higher_is_better=False))
        print_table(rows, peaks, f"{options.people:,} people, {stored:,} events stored, "
                                 f"gunicorn {options.workers} workers x {options.threads} "
                                 "threads, PostgreSQL 15")
    finally:
        cluster.stop()


def psycopg_connection(dsn: str) -> Any:
    """Open an autocommit connection (VACUUM cannot run in a transaction)."""
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


if __name__ == "__main__":
    main()
