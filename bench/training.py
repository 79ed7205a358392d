"""Benchmark building a training snapshot against pyarrow alone: ``python bench/training.py``.

One command, all on 127.0.0.1, on a throwaway PostgreSQL cluster (the test suite's):

1. 100,000 employees who consent to pointer recording (bulk-loaded as ``bench/hr_export.py``
   does), and 10,000,000 pointer events, 100 per person spread over 10 days, stored as the
   vault stores them (one batch per person, compressed and encrypted under the person's data
   key, the key wrapped by the master key), with each person's sensitivity ratings (two
   documents rated DSS 1 and 2, so that nothing is left out and both sides write the same
   rows). The same events also go, one row per event in plaintext, into a plain table;
2. then, in the same run:

   - the baseline: pyarrow writing every row of the plain table to Parquet (read with a
     server-side cursor, a row group at a time, uncompressed text to Snappy Parquet): the
     least any snapshot could cost;
   - a snapshot of the 10,000,000 events built by one worker process, then another by two
     worker processes at once (parts taken with leases), each worker's peak resident memory
     (VmHWM) read at its end;
   - a snapshot of one day (1,000,000 events) by one worker, for its peak memory.

Goals (issue 17): one worker within 2x the baseline's time; two workers faster than one; the
worker's peak at 10,000,000 events within 100 MB of its peak at 1,000,000. A smaller run for a
quick look: ``--people 10000``. Figures: docs/benchmarks.md, section "Training snapshots".
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.hr_export as hr_export  # noqa: E402  (after the path is set, as a script)

EVENTS_PER_PERSON = 100
DAYS = 10
APPS = ("Visual Studio Code", "Terminal", "Spreadsheet", "Mail", "Browser")
PURPOSE = "assistant_workflows"


def settings(database_url: str, master_key: str, storage: Path) -> dict[str, Any]:
    """Return the portal's settings for every process of the run (one master key for all)."""
    return {"DATABASE_URL": database_url, "SECRET_KEY": secrets.token_urlsafe(48),
            "MASTER_KEY": master_key, "OIDC_ISSUER": "http://127.0.0.1:9",
            "OIDC_CLIENT_ID": "bench", "OIDC_CLIENT_SECRET": secrets.token_urlsafe(24),
            "LOG_LEVEL": "WARNING", "TRAINING_STORAGE_DIR": str(storage)}


def period(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return the 10 days the events were recorded in, ending an hour before ``now``."""
    end = (now - dt.timedelta(hours=1)).replace(microsecond=0)
    return end - dt.timedelta(days=DAYS), end


# --- the data --------------------------------------------------------------------------------

def _all_consent(_person: int, _position: int) -> list[str]:
    return ["ConsentGiven"]


def _pointer_events(person: int, start: dt.datetime) -> list[dict[str, Any]]:
    step = dt.timedelta(days=DAYS) / EVENTS_PER_PERSON
    return [{"t": (start + step * number).isoformat(timespec="milliseconds")
             .replace("+00:00", "Z"),
             "x": (person * 7 + number * 13) % 2560, "y": (person * 11 + number * 17) % 1440,
             "screen": 1 + number % 2, "app": APPS[(person + number) % len(APPS)]}
            for number in range(EVENTS_PER_PERSON)]


def _ratings(start: dt.datetime) -> list[dict[str, Any]]:
    return [{"t": (start + dt.timedelta(days=day)).isoformat(timespec="seconds")
             .replace("+00:00", "Z"), "document_id": f"doc-{day:012x}", "dss_level": 1 + day % 2,
             "classifier": "dss-classifier 3.2"} for day in (1, 2)]


def _seed_share(dsn: str, master_key: str, people: list[int], start_iso: str) -> int:
    """Store the events of ``people`` as the vault does, and in the plain table; return events."""
    import psycopg

    from portal.vault import crypto

    master = crypto.MasterKey.from_base64(master_key)
    start = dt.datetime.fromisoformat(start_iso)
    now = dt.datetime.now(dt.UTC)
    events_stored = 0
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        keys: dict[tuple[int, str], tuple[str, bytes]] = {}
        with cursor.copy("COPY data_key (id, person_id, category_key, wrapped_key, "
                         "master_key_id, created_at) FROM STDIN") as copy:
            for person in people:
                for category in ("pointer", "sensitivity_ratings"):
                    key_id, material = str(uuid.uuid4()), crypto.new_data_key()
                    keys[person, category] = key_id, material
                    copy.write_row((key_id, person, category, crypto.wrap_data_key(
                        master, material, key_id=key_id, person_id=person,
                        category_key=category), master.key_id, now))
        with cursor.copy("COPY collected_batch (public_id, person_id, category_key, "
                         "data_key_id, collected_from, collected_to, received_at, dss_level, "
                         "event_count, compressed_size, nonce, ciphertext) FROM STDIN") as copy:
            for person in people:
                for category, events in (("pointer", _pointer_events(person, start)),
                                         ("sensitivity_ratings", _ratings(start))):
                    key_id, material = keys[person, category]
                    public_id = str(uuid.uuid4())
                    sealed = crypto.seal_batch(material, crypto.encode_events(events),
                                               batch_id=public_id, person_id=person,
                                               category_key=category)
                    times = [dt.datetime.fromisoformat(event["t"].replace("Z", "+00:00"))
                             for event in events]
                    copy.write_row((public_id, person, category, key_id, min(times),
                                    max(times), now, 2, len(events), sealed.compressed_size,
                                    sealed.nonce, sealed.ciphertext))
        with cursor.copy("COPY plain_pointer (person_id, t, x, y, screen, app) "
                         "FROM STDIN") as copy:
            for person in people:
                for event in _pointer_events(person, start):
                    copy.write_row((person, event["t"], event["x"], event["y"],
                                    event["screen"], event["app"]))
                    events_stored += 1
        connection.commit()
    return events_stored


def seed(dsn: str, master_key: str, people: int, start: dt.datetime) -> int:
    """Store everyone's events in two processes; return how many pointer events."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE UNLOGGED TABLE plain_pointer (person_id integer NOT NULL, "
                           "t timestamptz NOT NULL, x integer NOT NULL, y integer NOT NULL, "
                           "screen integer NOT NULL, app text NOT NULL)")
    everyone = list(range(1, people + 1))
    shares = [everyone[number::2] for number in range(2)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        stored = sum(pool.starmap(_seed_share, [(dsn, master_key, share, start.isoformat())
                                                for share in shares]))
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    return stored


# --- the measurements ------------------------------------------------------------------------

def baseline(dsn: str, folder: Path) -> tuple[float, int]:
    """Write every row of the plain table to one Parquet file with pyarrow; seconds and rows."""
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("person", pa.string()), ("t", pa.timestamp("ms", tz="UTC")),
                        ("x", pa.int64()), ("y", pa.int64()), ("screen", pa.int64()),
                        ("app", pa.string())])
    rows = 0
    started = time.perf_counter()
    with psycopg.connect(dsn) as connection, connection.cursor(name="rows") as cursor, \
            pq.ParquetWriter(folder / "baseline.parquet", schema) as writer:
        cursor.itersize = 65_536
        cursor.execute("SELECT 's-' || person_id, t, x, y, screen, app FROM plain_pointer "
                       "ORDER BY person_id")
        while chunk := cursor.fetchmany(65_536):
            columns = list(zip(*chunk, strict=True))
            writer.write_batch(pa.RecordBatch.from_arrays(
                [pa.array(column, type=field.type)
                 for column, field in zip(columns, schema, strict=True)], schema=schema))
            rows += len(chunk)
    return time.perf_counter() - started, rows


def ask_snapshot(number: int, start: dt.datetime, end: dt.datetime) -> None:
    """Ask for a snapshot of pointer events between ``start`` and ``end`` (in the app context)."""
    from sqlalchemy import select

    from portal.catalog.notices import current_notice
    from portal.db import commit, db
    from portal.training.keys import new_snapshot_key
    from portal.training.models import TrainingClient, TrainingSnapshot

    client = db.scalar(select(TrainingClient)) or TrainingClient(
        name="bench trainer", purposes=[PURPOSE], scopes=["snapshots"],
        token_hash=secrets.token_hex(32))
    notice = current_notice()
    assert notice is not None
    snapshot = TrainingSnapshot(public_id=str(uuid.uuid4()), number=number, client=client,
                                purpose_key=PURPOSE, categories=["pointer"],
                                collected_from=start, collected_to=end, max_dss_level=2,
                                notice_version_id=notice.id)
    new_snapshot_key(snapshot)
    db.add(snapshot)
    commit()


def build_with(workers: int, env: dict[str, str]) -> tuple[float, list[float]]:
    """Run ``workers`` worker processes until the queued snapshot is built; seconds, peaks."""
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, __file__, "--worker", f"bench-{number}"],
                                  env=env, stdout=subprocess.PIPE, text=True)
                 for number in range(workers)]
    reports = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a worker failed with exit code {process.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return time.perf_counter() - started, [report["peak_mb"] for report in reports]


def worker(owner: str) -> None:
    """Build queued snapshot parts until none is left; print the peak memory as JSON."""
    from portal import create_app
    from portal.training.build import work

    app = create_app()
    with app.app_context():
        parts = work(owner, until_idle=True)
    peak_kb = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    print(json.dumps({"parts": parts, "peak_mb": peak_kb / 1024}))


def snapshot_rows(number: int) -> tuple[str, int]:
    """Return the state of snapshot ``number`` and how many records it includes."""
    from sqlalchemy import select

    from portal.db import db
    from portal.training.models import TrainingSnapshot

    snapshot = db.scalar(select(TrainingSnapshot).where(TrainingSnapshot.number == number))
    assert snapshot is not None
    return str(snapshot.state), int((snapshot.totals or {}).get("included", 0))


def main() -> None:
    """Build the company, measure each snapshot against the baseline, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(options.worker)
        return

    from portal import create_app
    from portal.db import get_engine
    from tests.support.postgres import PostgresCluster
    from tests.support.servers import portal_environment

    cluster = PostgresCluster().start()
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-training-"))
    try:
        url = cluster.create_database("training")
        dsn = cluster.url("training", driver=False)
        master_key = base64.b64encode(secrets.token_bytes(32)).decode()
        values = settings(url, master_key, folder / "snapshots")
        env = portal_environment(values, folder / "instance")
        os.environ.update(env)

        started = time.perf_counter()
        hr_export.load(url, options.people, history=_all_consent)
        start, end = period(dt.datetime.now(dt.UTC))
        events = seed(dsn, master_key, options.people, start)
        print(f"{options.people:,} people, {events:,} pointer events stored "
              f"({time.perf_counter() - started:.0f} s)", flush=True)

        base_seconds, base_rows = baseline(dsn, folder)
        print(f"baseline: {base_rows:,} rows in {base_seconds:.1f} s", flush=True)
        app = create_app(values)
        results = []
        for number, workers, until in ((1, 1, end + dt.timedelta(milliseconds=1)),
                                       (2, 2, end + dt.timedelta(milliseconds=1)),
                                       (3, 1, start + dt.timedelta(days=1))):
            with app.app_context():
                ask_snapshot(number, start, until)
            seconds, peaks = build_with(workers, env)
            with app.app_context():
                state, rows = snapshot_rows(number)
            print(f"snapshot {number}: {workers} worker(s), {state}, {rows:,} records, "
                  f"{seconds:.1f} s, peak {', '.join(f'{peak:.0f} MB' for peak in peaks)}",
                  flush=True)
            results.append((workers, rows, seconds, peaks))
        get_engine(app).dispose()

        (_, rows_one, one, peaks_one), (_, _, two, _), (_, rows_day, _, peaks_day) = results
        print()
        print("| measure | value | baseline (same run) | ratio | goal |")
        print("|---|---|---|---|---|")
        print(f"| snapshot of {rows_one:,} records, 1 worker | {one:.1f} s | "
              f"{base_seconds:.1f} s (pyarrow, {base_rows:,} rows) | {one / base_seconds:.2f} "
              "| <= 2 |")
        print(f"| the same, 2 workers | {two:.1f} s | {one:.1f} s (1 worker) | "
              f"{two / one:.2f} | < 1 |")
        print(f"| worker peak memory, {rows_one:,} vs {rows_day:,} records | "
              f"{max(peaks_one):.0f} MB | {max(peaks_day):.0f} MB | "
              f"+{max(peaks_one) - max(peaks_day):.0f} MB | <= +100 MB |")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
