"""Benchmark HR's CSV export against PostgreSQL's own COPY: ``python bench/hr_export.py``.

One command, all on 127.0.0.1: a throwaway PostgreSQL cluster (the test suite's), migrated,
the shipped catalog published, then 100,000 employees in 10 departments with a consent state
for each of the catalog's 7 categories and 1 to 3 ledger events per state (about 1.2 million
events), bulk-loaded with COPY. Then, round after round, in the same run:

- the portal: :func:`portal.hr.service.csv_chunks` streams every record (the export's own
  function: ``yield_per`` on a server-side cursor, formula neutralisation, quoting), its
  bytes counted and dropped;
- the baseline: ``COPY (<the same query>) TO STDOUT WITH CSV`` through psycopg, its bytes
  counted and dropped.

Goal: the portal within 3 times COPY's time. Then the whole export as a request does it
(the people included, the audit entry with one subject row per person, committed, then the
stream) runs in a fresh process each for 10,000 employees (one department) and 100,000 (all),
and each reports its peak resident memory: the streaming part should stay flat. Figures:
docs/benchmarks.md, section "HR consent-record export".
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from anywhere: the portal and the test suite's PostgreSQL helper are in ROOT.
sys.path.insert(0, str(ROOT))

DEPARTMENTS = 10
START = dt.datetime(2025, 1, 6, 8, 0, tzinfo=dt.UTC)


def settings(database_url: str) -> dict[str, Any]:
    """Return the portal's configuration for the benchmark (no sign-in happens)."""
    return {"DATABASE_URL": database_url, "SECRET_KEY": secrets.token_urlsafe(48),
            "MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "OIDC_ISSUER": "http://127.0.0.1:9", "OIDC_CLIENT_ID": "bench",
            "OIDC_CLIENT_SECRET": secrets.token_urlsafe(24), "LOG_LEVEL": "WARNING"}


def make_app(database_url: str) -> Any:
    """Build the portal against ``database_url`` with a throwaway instance folder."""
    os.environ["PORTAL_INSTANCE_PATH"] = tempfile.mkdtemp(prefix="portal-bench-instance-")
    from portal import create_app

    return create_app(settings(database_url))


# --- the data --------------------------------------------------------------------------------

def _people(count: int) -> Iterator[tuple[Any, ...]]:
    for number in range(1, count + 1):
        yield (number, "https://idp.bench", f"bench-{number:06d}", f"Employee {number}",
               f"employee{number}@bench.invalid", f"Department {number % DEPARTMENTS:02d}",
               ("Berlin", "Munich", "Vienna", "Paris")[number % 4], "[]", True,
               START - dt.timedelta(days=30), f"p-{number:012x}")


def _history(person: int, position: int) -> list[str]:
    # Four shapes of history, spread evenly: given; given then withdrawn; declined;
    # given, withdrawn and given again.
    return [["ConsentGiven"], ["ConsentGiven", "ConsentWithdrawn"], ["ConsentRefused"],
            ["ConsentGiven", "ConsentWithdrawn", "ConsentGiven"]][(person + position) % 4]


def load(database_url: str, count: int,
         history: Callable[[int, int], list[str]] | None = None) -> dict[str, int]:
    """Migrate, publish the catalog and bulk-load ``count`` people with their consent.

    ``history(person, category position)`` gives each person's states per category, oldest
    first (by default four shapes spread evenly: given, withdrawn, declined, given again).
    """
    history = history or _history
    import psycopg

    from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
    from portal.catalog.publication import load_catalog
    from portal.cli import upgrade_database
    from portal.db import commit, get_engine

    app = make_app(database_url)
    upgrade_database(app)
    with app.app_context():
        outcome = load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="bench")
        commit()
        version_id = outcome.notice.id
        keys = [section.category_key for section in outcome.notice.sections]
    get_engine(app).dispose()
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    events = statuses = 0
    with psycopg.connect(libpq) as connection, connection.cursor() as cursor:
        with cursor.copy("COPY person (id, issuer, subject, name, email, department, location, "
                         "roles, active, created_at, workplace_pseudonym) FROM STDIN") as copy:
            for row in _people(count):
                copy.write_row(row)
        cursor.execute("SELECT setval('person_id_seq', %s)", (count,))
        last: list[tuple[Any, ...]] = []
        with cursor.copy("COPY consent_event (id, receipt_id, person_id, category_key, "
                         "notice_version_id, state, occurred_at, actor_id, actor_role, method, "
                         "leaf_hash, chain_hash) FROM STDIN") as copy:
            for person in range(1, count + 1):
                for position, key in enumerate(keys):
                    when = START + dt.timedelta(seconds=person * 7 + position)
                    for step, state in enumerate(history(person, position)):
                        events += 1
                        at = when + dt.timedelta(days=40 * step)
                        # The chain is not what is measured; unique stand-in hashes suffice.
                        copy.write_row((events, str(uuid.uuid4()), person, key, version_id,
                                        state, at, person, "subject", "web",
                                        f"{events:064x}", f"{events:064x}"))
                    last.append((person, key, state, version_id, at, events))
        with cursor.copy("COPY consent_status (person_id, category_key, state, "
                         "notice_version_id, since, event_id) FROM STDIN") as copy:
            for row in last:
                copy.write_row(row)
                statuses += 1
        cursor.execute("UPDATE consent_chain_head SET length = %s", (events,))
        connection.commit()
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    return {"people": count, "records": statuses, "events": events}


# --- the measurements ------------------------------------------------------------------------

def time_portal(app: Any) -> tuple[float, int]:
    """Stream every record through the export's CSV function; return seconds and bytes."""
    from portal.catalog.notices import current_notice
    from portal.consent.service import category_titles
    from portal.db import get_engine
    from portal.hr.service import RecordFilter, csv_chunks, included_people

    with app.test_request_context():
        version = current_notice()
        assert version is not None
        titles = category_titles(version.id, "en")
        people = frozenset(included_people(RecordFilter()))
    engine = get_engine(app)
    started = time.perf_counter()
    size = sum(len(chunk) for chunk in csv_chunks(engine, RecordFilter(), people, titles))
    return time.perf_counter() - started, size


def copy_sql(app: Any) -> str:
    """Return the export's own query as SQL, for PostgreSQL's COPY (the same rows and cells)."""
    from sqlalchemy.dialects import postgresql

    from portal.catalog.notices import current_notice
    from portal.consent.service import category_titles
    from portal.hr.service import RecordFilter, export_select

    with app.app_context():
        version = current_notice()
        assert version is not None
        titles = category_titles(version.id, "en")
    statement = export_select(RecordFilter(), titles, "postgresql")
    return str(statement.compile(dialect=postgresql.dialect(),
                                 compile_kwargs={"literal_binds": True}))


def time_copy(database_url: str, sql: str) -> tuple[float, int]:
    """Run ``COPY (sql) TO STDOUT WITH CSV``; return seconds and bytes received."""
    import psycopg

    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as connection, connection.cursor() as cursor:
        started = time.perf_counter()
        size = 0
        with cursor.copy(f"COPY ({sql}) TO STDOUT WITH CSV HEADER") as copy:
            for chunk in copy:
                size += len(chunk)
        return time.perf_counter() - started, size


def worker(database_url: str, department: str | None) -> None:
    """Run one whole export as a request does and print its figures as JSON (a subprocess)."""
    from sqlalchemy import func, select

    from portal.audit.models import AuditAction, AuditEntry, AuditRole
    from portal.audit.service import record
    from portal.auth.models import Person
    from portal.catalog.notices import current_notice
    from portal.consent.service import category_titles
    from portal.db import commit, db, get_engine
    from portal.hr.service import RecordFilter, csv_chunks, included_people

    app = make_app(database_url)
    filters = RecordFilter(department=department)
    started = time.perf_counter()
    with app.test_request_context():
        actor = db.scalar(select(Person).order_by(Person.id).limit(1))
        version = current_notice()
        assert actor is not None and version is not None
        titles = category_titles(version.id, "en")
        people = included_people(filters)
        record("hr.export", action=AuditAction.EXPORT, role=AuditRole.HR, subjects=people,
               actor=actor, purpose="benchmark", detail={"format": "csv"})
        commit()
        entries = db.scalar(select(func.count()).select_from(AuditEntry))
    before_stream = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    audited = time.perf_counter() - started
    size = sum(len(chunk) for chunk in csv_chunks(get_engine(app), filters,
                                                   frozenset(people), titles))
    print(json.dumps({"people": len(people), "bytes": size, "audit_seconds": audited,
                      "seconds": time.perf_counter() - started, "audit_entries": entries,
                      "peak_rss_before_stream_mib": before_stream / 1024,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      / 1024}))


def run_worker(database_url: str, department: str | None) -> dict[str, Any]:
    """Run :func:`worker` in a fresh Python process and return what it printed."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", database_url]
    if department is not None:
        command += ["--department", department]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT,
                            timeout=1800).stdout
    figures: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return figures


def main() -> None:
    """Set up, measure, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--department", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(arguments.worker, arguments.department)
        return

    from portal.db import get_engine
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster().start()
    try:
        url = cluster.create_database("hr_bench")
        started = time.perf_counter()
        counts = load(url, arguments.people)
        print(f"loaded {counts['people']:,} people, {counts['records']:,} consent records, "
              f"{counts['events']:,} ledger events in {time.perf_counter() - started:.0f} s")
        app = make_app(url)
        sql = copy_sql(app)
        portal_times, copy_times = [], []
        for number in range(1, arguments.rounds + 1):
            copy_seconds, copy_bytes = time_copy(url, sql)
            portal_seconds, portal_bytes = time_portal(app)
            copy_times.append(copy_seconds)
            portal_times.append(portal_seconds)
            print(f"round {number}: COPY {copy_seconds:.2f} s ({copy_bytes / 2**20:.0f} MiB), "
                  f"portal {portal_seconds:.2f} s ({portal_bytes / 2**20:.0f} MiB), "
                  f"ratio {portal_seconds / copy_seconds:.2f}")
        get_engine(app).dispose()
        ratio = statistics.median(portal_times) / statistics.median(copy_times)
        print(f"median: COPY {statistics.median(copy_times):.2f} s, portal "
              f"{statistics.median(portal_times):.2f} s, ratio {ratio:.2f} "
              f"(goal <= 3.0: {'met' if ratio <= 3.0 else 'NOT met'})")
        small = run_worker(url, "Department 01")
        large = run_worker(url, None)
        for label, figures in (("10,000", small), ("100,000", large)):
            print(f"whole export, {label} employees ({figures['people']:,} included): "
                  f"{figures['seconds']:.2f} s (audit entry {figures['audit_seconds']:.2f} s), "
                  f"peak RSS {figures['peak_rss_mib']:.0f} MiB "
                  f"(before the stream {figures['peak_rss_before_stream_mib']:.0f} MiB)")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
