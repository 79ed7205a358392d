"""Benchmark a training snapshot: ``python bench/training_snapshot.py`` (issue 17, point 8).

One command, on a throwaway PostgreSQL cluster (the test suite's):

1. bulk-loads ``--people`` employees (100,000) who consent to ``pointer``, then stores
   ``--events`` pointer events (10,000,000) through the vault's own ingestion (validated,
   compressed, encrypted per person), spread evenly over the last 60 days, and one
   ``sensitivity_ratings`` batch per person (a DSS 1 and a DSS 3 document), so that every rule
   of ``portal/training/rules.py`` runs, the 30-minute window included;
2. builds, each in fresh processes (``portal.training.build.work``, its peak memory its own):
   - a snapshot of everything with one worker, and the same snapshot again with two workers
     at once (parts shared by lease);
   - a snapshot of the last tenth of the period (about a tenth of the events) with one
     worker, for the memory at a tenth of the size;
3. the baseline, in the same run: the rows of the full snapshot, already plaintext, copied
   into a plain table; pyarrow writes them to Parquet (same row groups, same compression)
   read from that table through a server-side cursor, in a process of its own.

It prints one table and checks the goals: the snapshot takes at most 2x the baseline's time;
the worker's peak memory at the full size is within 100 MB of its peak at a tenth; two
workers are faster than one. Figures and their meaning: docs/benchmarks.md, "Training
snapshots". A quick look: ``--people 10000 --events 1000000``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import multiprocessing
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from anywhere: the portal and the test suite's PostgreSQL helper are in ROOT.
sys.path.insert(0, str(ROOT))

ISSUER = "https://idp.bench"
DAYS = 60
TIME_GOAL = 2.0
MEMORY_GOAL_MB = 100


def settings(database_url: str, master_key: str) -> dict[str, Any]:
    """Return the portal's settings for every process of the run (one master key for all)."""
    return {"DATABASE_URL": database_url, "SECRET_KEY": secrets.token_urlsafe(48),
            "MASTER_KEY": master_key, "OIDC_ISSUER": ISSUER, "OIDC_CLIENT_ID": "bench",
            "OIDC_CLIENT_SECRET": secrets.token_urlsafe(24), "LOG_LEVEL": "WARNING"}


def _app(values: dict[str, Any]) -> Any:
    from portal import create_app

    return create_app(values)


def _libpq(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://")


# --- the data --------------------------------------------------------------------------------

def load_people(values: dict[str, Any], count: int) -> None:
    """Migrate, publish the catalog, bulk-load ``count`` people consenting to ``pointer``."""
    import psycopg

    from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
    from portal.catalog.publication import load_catalog
    from portal.cli import upgrade_database
    from portal.db import commit, get_engine

    app = _app(values)
    upgrade_database(app)
    with app.app_context():
        version_id = load_catalog(read_catalog_file(SHIPPED_CATALOG),
                                  published_by="bench").notice.id
        commit()
    get_engine(app).dispose()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=DAYS + 1)
    with psycopg.connect(_libpq(values["DATABASE_URL"])) as connection, \
            connection.cursor() as cursor:
        with cursor.copy("COPY person (id, issuer, subject, name, email, department, location, "
                         "roles, active, created_at, workplace_pseudonym) FROM STDIN") as copy:
            for number in range(1, count + 1):
                copy.write_row((number, ISSUER, f"bench-{number:06d}", f"Employee {number}",
                                f"employee{number}@bench.invalid", "Engineering", "Berlin",
                                "[]", True, since, f"p-{number:012x}"))
        cursor.execute("SELECT setval('person_id_seq', %s)", (count,))
        with cursor.copy("COPY consent_event (id, receipt_id, person_id, category_key, "
                         "notice_version_id, state, occurred_at, actor_id, actor_role, method, "
                         "leaf_hash, chain_hash) FROM STDIN") as copy:
            for number in range(1, count + 1):
                # The chain is not what is measured; unique stand-in hashes suffice.
                copy.write_row((number, str(uuid.uuid4()), number, "pointer", version_id,
                                "ConsentGiven", since, number, "subject", "web",
                                f"{number:064x}", f"{number:064x}"))
        with cursor.copy("COPY consent_status (person_id, category_key, state, "
                         "notice_version_id, since, event_id) FROM STDIN") as copy:
            for number in range(1, count + 1):
                copy.write_row((number, "pointer", "ConsentGiven", version_id, since, number))
        cursor.execute("UPDATE consent_chain_head SET length = %s", (count,))
        connection.commit()


def _store(values: dict[str, Any], people: list[int], each: int, end_iso: str) -> int:
    """Store ``each`` pointer events and one ratings batch for each of ``people``."""
    from portal.auth.models import Person
    from portal.db import commit, db, get_engine
    from portal.vault.ingest import find_category, ingest_batch

    app = _app(values)
    end = dt.datetime.fromisoformat(end_iso)
    step = dt.timedelta(milliseconds=DAYS * 86_400_000 // each)
    apps = ("Visual Studio Code", "Firefox", "Terminal", "Slack")
    stored = 0
    with app.app_context():
        pointer, ratings = find_category("pointer"), find_category("sensitivity_ratings")
        for person_id in people:
            person = db.get_one(Person, person_id)
            start = end - step * each
            # Shifted per person, so that people's records do not all share the same moments.
            start += dt.timedelta(milliseconds=person_id % 997)
            events = [{"t": (start + step * index).isoformat(timespec="milliseconds")
                       .replace("+00:00", "Z"), "x": (index * 37) % 2560,
                       "y": (index * 53) % 1440, "screen": 1 + index % 2,
                       "app": apps[index % len(apps)]} for index in range(each)]
            ingest_batch(person, pointer, events=events, collected_from=start,
                         collected_to=start + step * (each - 1), dss_level=2)
            # A DSS 3 document early in the period, a DSS 1 one near its end (so that the
            # snapshot of the last tenth has ratings too).
            rated = [start + step * (each // 4), start + step * (each * 19 // 20)]
            ingest_batch(person, ratings, events=[
                {"t": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "document_id": f"doc-{person_id:012x}", "dss_level": level,
                 "classifier": "dss-classifier 3.2"}
                for moment, level in zip(rated, (3, 1), strict=True)],
                collected_from=rated[0], collected_to=rated[1], dss_level=1)
            commit()
            stored += each
    get_engine(app).dispose()
    return stored


def store_events(values: dict[str, Any], people: int, events: int, end: dt.datetime,
                 processes: int = 2) -> int:
    """Store ``events`` pointer events spread over ``people``, in ``processes`` processes."""
    each = events // people
    shares = [list(range(1 + number, people + 1, processes)) for number in range(processes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        return sum(pool.starmap(_store, [(values, share, each, end.isoformat())
                                         for share in shares]))


def ask(values: dict[str, Any], start: dt.datetime, end: dt.datetime) -> int:
    """Queue a snapshot of pointer events collected in [start, end); return its id."""
    from portal.db import commit, get_engine
    from tests.support.training import ask_snapshot

    app = _app(values)
    with app.app_context():
        snapshot = ask_snapshot(categories=["pointer"], collected_from=start,
                                collected_to=end, max_dss_level=4)
        commit()
        snapshot_id = snapshot.id
    get_engine(app).dispose()
    return snapshot_id


# --- measured in processes of their own ------------------------------------------------------

def run_worker(owner: str) -> dict[str, Any]:
    """Build what waits, as one worker process; report parts, time and peak memory."""
    from portal import create_app
    from portal.training.build import work

    app = create_app()
    with app.app_context():
        started = time.perf_counter()
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            profile = cProfile.Profile()
            parts = profile.runcall(work, owner)
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        else:
            parts = work(owner)
        seconds = time.perf_counter() - started
    return {"parts": parts, "seconds": seconds,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _workers(env: dict[str, str], count: int) -> tuple[float, list[dict[str, Any]]]:
    """Start ``count`` workers at once; return the wall time until all ended, and theirs."""
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, __file__, "--worker", f"worker-{number}"],
                                  env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                  stderr=None if count == 1 else subprocess.DEVNULL)
                 for number in range(count)]
    reports = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a worker failed ({process.returncode})")
        reports.append(json.loads(output.strip().splitlines()[-1]))
    return time.perf_counter() - started, reports


def snapshot_report(values: dict[str, Any], snapshot_id: int) -> dict[str, Any]:
    """Return a built snapshot's state and totals."""
    from portal.db import db, get_engine
    from portal.training.models import TrainingSnapshot

    app = _app(values)
    with app.app_context():
        snapshot = db.get_one(TrainingSnapshot, snapshot_id)
        report = {"state": str(snapshot.state), "totals": snapshot.totals,
                  "parts": len(snapshot.parts)}
    get_engine(app).dispose()
    return report


def copy_to_plain_table(values: dict[str, Any], snapshot_id: int) -> int:
    """Copy the rows of a built snapshot, plaintext, into ``plain_rows`` (the baseline's)."""
    import psycopg

    from portal.db import db, get_engine
    from portal.training.models import TrainingSnapshot
    from tests.support.training import read_part

    app = _app(values)
    copied = 0
    with app.app_context(), psycopg.connect(_libpq(values["DATABASE_URL"])) as connection:
        connection.execute("CREATE TABLE plain_rows (person text, t timestamptz, x bigint, "
                           "y bigint, screen bigint, app text)")
        snapshot = db.get_one(TrainingSnapshot, snapshot_id)
        with connection.cursor() as cursor, cursor.copy("COPY plain_rows FROM STDIN") as copy:
            for part in snapshot.parts:
                for row in read_part(snapshot, part).to_pylist():
                    copy.write_row((row["person"], row["t"], row["x"], row["y"],
                                    row["screen"], row["app"]))
                    copied += 1
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE plain_rows")
    get_engine(app).dispose()
    return copied


def run_baseline(database_url: str) -> dict[str, Any]:
    """Write ``plain_rows`` to Parquet with pyarrow, read through a server-side cursor."""
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("person", pa.string()), ("t", pa.timestamp("ms", tz="UTC")),
                        ("x", pa.int64()), ("y", pa.int64()), ("screen", pa.int64()),
                        ("app", pa.string())])
    sink = io.BytesIO()
    started = time.perf_counter()
    with psycopg.connect(_libpq(database_url)) as connection, \
            connection.cursor(name="plain") as cursor:
        cursor.itersize = 65_536
        cursor.execute("SELECT person, t, x, y, screen, app FROM plain_rows")
        with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
            while rows := cursor.fetchmany(65_536):
                columns = list(zip(*rows, strict=True))
                writer.write_table(pa.Table.from_arrays(
                    [pa.array(column, field.type) for column, field in zip(columns, schema,
                                                                           strict=True)],
                    schema=schema), row_group_size=65_536)
    return {"seconds": time.perf_counter() - started, "bytes": sink.tell(),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    """Seed, build the snapshots, measure the baseline, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--part-people", type=int, default=2000,
                        help="people per part (TRAINING_PART_PEOPLE)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        print(json.dumps(run_worker(options.worker)))
        return
    if options.baseline:
        print(json.dumps(run_baseline(os.environ["PORTAL_DATABASE_URL"])))
        return

    from tests.support.postgres import PostgresCluster
    from tests.support.servers import portal_environment

    cluster = PostgresCluster().start()
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-training-"))
    try:
        url = cluster.create_database("training")
        values = {**settings(url, base64.b64encode(secrets.token_bytes(32)).decode()),
                  "TRAINING_PART_PEOPLE": options.part_people}
        env = portal_environment(values, folder / "instance")
        os.environ.update(env)
        started = time.perf_counter()
        load_people(values, options.people)
        end = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).replace(microsecond=0)
        stored = store_events(values, options.people, options.events, end)
        print(f"{options.people:,} people, {stored:,} pointer events stored through the vault "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        with cluster_connection(url) as connection:
            connection.execute("VACUUM ANALYZE")

        period_start = end - dt.timedelta(days=DAYS + 1)
        period_end = end + dt.timedelta(minutes=1)
        full = ask(values, period_start, period_end)
        one_seconds, [one] = _workers(env, 1)
        full_report = snapshot_report(values, full)
        print(f"one worker: {one} {full_report}", flush=True)
        ask(values, period_start, period_end)
        two_seconds, two = _workers(env, 2)
        tenth = ask(values, period_end - (period_end - period_start) / 10, period_end)
        _tenth_seconds, [small] = _workers(env, 1)
        tenth_report = snapshot_report(values, tenth)
        rows = copy_to_plain_table(values, full)
        baseline = json.loads(subprocess.run(
            [sys.executable, __file__, "--baseline"], env=env, cwd=ROOT, check=True,
            capture_output=True, text=True).stdout.strip().splitlines()[-1])
    finally:
        cluster.stop()

    totals = full_report["totals"]
    print()
    print("| measure | snapshot | baseline (same run) | ratio | goal |")
    print("|---|---|---|---|---|")
    ratio = one["seconds"] / baseline["seconds"]
    print(f"| {totals['included']:,} rows written ({stored:,} events read, "
          f"{full_report['parts']} parts), one worker | {one['seconds']:.1f} s "
          f"| {baseline['seconds']:.1f} s (pyarrow from a plain table) | {ratio:.2f}x "
          f"| <= {TIME_GOAL:.0f}x: {'met' if ratio <= TIME_GOAL else 'NOT met'} |")
    print(f"| the same, two workers at once | {two_seconds:.1f} s (wall) | {one_seconds:.1f} s "
          f"(one worker, wall) | {two_seconds / one_seconds:.2f}x "
          f"| < 1x: {'met' if two_seconds < one_seconds else 'NOT met'} |")
    difference = one["peak_mb"] - small["peak_mb"]
    print(f"| worker peak memory (ru_maxrss) | {one['peak_mb']:.0f} MB at "
          f"{stored:,} events | {small['peak_mb']:.0f} MB at a tenth "
          f"({tenth_report['totals']['included']:,} rows) | +{difference:.0f} MB "
          f"| within {MEMORY_GOAL_MB} MB: {'met' if difference <= MEMORY_GOAL_MB else 'NOT met'} |")
    print()
    print(f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    print(f"Rows: {rows:,} copied to the baseline's table; left out: "
          f"{json.dumps(totals['excluded'])}; two workers built "
          f"{[report['parts'] for report in two]} parts; baseline Parquet "
          f"{baseline['bytes'] / 1024 / 1024:.1f} MB.")


def cluster_connection(database_url: str) -> Any:
    """Open an autocommit connection (VACUUM cannot run in a transaction)."""
    import psycopg

    return psycopg.connect(_libpq(database_url), autocommit=True)


if __name__ == "__main__":
    main()
