"""Benchmark the download of one person's data: ``python bench/download.py``.

One command, on 127.0.0.1: it starts a throwaway PostgreSQL cluster (the test suite's),
migrates it, publishes the shipped catalog, and stores pointer events for two people straight
through the vault's ``ingest_batch`` (10,000 events a batch): a small person (100,000 events
by default) and a large one (1,000,000). Then, each in a fresh Python process so that its
peak memory (``ru_maxrss``) is its own:

- the download of each person through the real view (``POST /my-data/download`` with the
  Flask test client: form, CSRF, audit entry, streamed ZIP), the bytes written to a file;
- the floor: Python's ``zipfile`` writing the large person's same plaintext files
  (``collected/pointer.jsonl`` and ``.csv``, read from the download beforehand) from memory,
  same compression (deflate, level 6), to a sink that discards them.

It prints seconds, MB/s (of the ZIP) and the peak memory of each process, and checks the goal:
the peak memories for the two sizes differ by less than 50 MB. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from anywhere: the portal and the test suite's PostgreSQL helper are in ROOT.
sys.path.insert(0, str(ROOT))

ISSUER = "http://127.0.0.1:9"
BATCH_EVENTS = 10_000
MEMORY_GOAL_MB = 50
_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def environment(database_url: str, instance: Path) -> dict[str, str]:
    """Return the environment that configures the portal for the benchmark."""
    values = {name: value for name, value in os.environ.items()
              if not name.startswith("PORTAL_")}
    values.update({
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(48),
        "PORTAL_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "PORTAL_OIDC_ISSUER": ISSUER,
        "PORTAL_OIDC_CLIENT_ID": "bench",
        "PORTAL_OIDC_CLIENT_SECRET": secrets.token_urlsafe(24),
        "PORTAL_LOG_LEVEL": "WARNING",
        "PORTAL_INSTANCE_PATH": str(instance),
        "PORTAL_DOWNLOAD_RATE_LIMIT": "1000 per hour",
    })
    return values


def _pointer_batch(start: dt.datetime, step: dt.timedelta, count: int,
                   offset: int) -> list[dict[str, Any]]:
    apps = ("Visual Studio Code", "Firefox", "Terminal", "Slack")
    events = []
    for index in range(count):
        moment = start + step * index
        number = offset + index
        events.append({"t": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                       "x": (number * 37) % 2560, "y": (number * 53) % 1440,
                       "screen": 1 + number % 2, "app": apps[number % len(apps)]})
    return events


def seed(events_by_person: dict[str, int]) -> dict[str, int]:
    """Migrate, publish the catalog, give consent, store the events; return person ids."""
    from portal import create_app
    from portal.auth.service import sign_in
    from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
    from portal.catalog.notices import current_notice
    from portal.catalog.publication import load_catalog
    from portal.cli import upgrade_database
    from portal.consent.models import ConsentMethod
    from portal.consent.service import grant_consent
    from portal.db import commit, get_engine
    from portal.vault.ingest import find_category, ingest_batch

    app = create_app()
    upgrade_database(app)
    ids = {}
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="bench")
        notice = current_notice()
        assert notice is not None
        category = find_category("pointer")
        for subject, total in events_by_person.items():
            person = sign_in({"sub": subject, "name": subject.title()}, issuer=ISSUER,
                             roles_claim="groups", role_map={})
            grant_consent(person, category, notice_version=notice,
                          method=ConsentMethod.IMPORT, actor=None)
            commit()
            ids[subject] = person.id
            # Spread over the last 60 days (pointer data is kept 90), oldest first.
            # Whole milliseconds, as collectors write them, so events lie inside their window.
            end = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).replace(microsecond=0)
            step = dt.timedelta(milliseconds=60 * 86_400_000 // total)
            start = end - step * total
            for offset in range(0, total, BATCH_EVENTS):
                count = min(BATCH_EVENTS, total - offset)
                events = _pointer_batch(start + step * offset, step, count, offset)
                ingest_batch(person, category, events=events,
                             collected_from=start + step * offset,
                             collected_to=start + step * (offset + count - 1), dss_level=2)
                commit()
            print(f"  stored {total:,} events for {subject}", flush=True)
    get_engine(app).dispose()
    return ids


# --- measured in a process of their own ------------------------------------------------------

def measure_download(person_id: int, target: str) -> dict[str, float]:
    """Download the person's data through the view into ``target``; report time and memory."""
    from sqlalchemy import update

    from portal import create_app
    from portal.auth.models import WebSession
    from portal.db import commit, db, utcnow

    app = create_app()
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(person_id)
        session["_fresh"] = True
    with app.app_context():
        # As right after a sign-in at the provider: the download asks for a fresh one.
        db.execute(update(WebSession).where(WebSession.person_id == person_id)
                   .values(authenticated_at=utcnow()))
        commit()
    match = _CSRF.search(client.get("/my-data/download").get_data(as_text=True))
    assert match is not None, "the download form did not come"
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    response = client.post("/my-data/download", buffered=False,
                           data={"csrf_token": match.group(1), "categories": ["pointer"]})
    assert response.status_code == 200, response.status
    size = 0
    with open(target, "wb") as sink:
        for chunk in response.response:
            size += len(chunk)
            sink.write(chunk)
    response.close()
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "bytes": size, "peak_mb": peak_kb / 1024,
            "before_mb": baseline_kb / 1024}


class _Discard:
    """A write-only sink that counts what it is given (zipfile writes to it as to a socket)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush."""


def measure_zipfile(source: str) -> dict[str, float]:
    """Zip the collected files of a download from memory with zipfile; report the time."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()
                 if name.startswith("collected/")}
    plaintext = sum(len(data) for data in files.values())
    sink = _Discard()
    started = time.perf_counter()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED,  # type: ignore[arg-type]
                         compresslevel=6) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": sink.size, "plaintext": plaintext,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _in_subprocess(values: dict[str, str], *arguments: str) -> dict[str, float]:
    output = subprocess.run([sys.executable, __file__, *arguments], env=values, check=True,
                            capture_output=True, text=True, cwd=ROOT).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def _plaintext_bytes(path: Path) -> int:
    """Add up the sizes of the files inside a download, as its manifest lists them."""
    with zipfile.ZipFile(path) as archive:
        listed = json.loads(archive.read("manifest.json"))["files"]
    return sum(int(item["bytes"]) for item in listed)


def main() -> None:
    """Seed, measure each part in its own process, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100_000, help="events of the small person")
    parser.add_argument("--large", type=int, default=1_000_000, help="events of the large one")
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure_download(int(options.measure[0]), options.measure[1])))
        return
    if options.floor:
        print(json.dumps(measure_zipfile(options.floor)))
        return

    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster().start()
    folder = Path(tempfile.mkdtemp(prefix="portal-bench-download-"))
    try:
        values = environment(cluster.create_database("bench"), folder / "instance")
        os.environ.update(values)
        print(f"Seeding {options.small:,} + {options.large:,} events on PostgreSQL …",
              flush=True)
        started = time.perf_counter()
        ids = seed({"small-person": options.small, "large-person": options.large})
        print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)
        small = _in_subprocess(values, "--measure", str(ids["small-person"]),
                               str(folder / "small.zip"))
        large = _in_subprocess(values, "--measure", str(ids["large-person"]),
                               str(folder / "large.zip"))
        floor = _in_subprocess(values, "--floor", str(folder / "large.zip"))
        plain = {name: _plaintext_bytes(folder / f"{name}.zip") for name in ("small", "large")}
    finally:
        cluster.stop()
    megabyte = 1024 * 1024
    print()
    print(f"| measure | {options.small:,} events | {options.large:,} events |")
    print("|---|---|---|")
    print(f"| download, seconds | {small['seconds']:.1f} | {large['seconds']:.1f} |")
    print(f"| ZIP size, MB | {small['bytes'] / megabyte:.1f} | {large['bytes'] / megabyte:.1f} |")
    print(f"| download, MB/s (of the ZIP) | {small['bytes'] / megabyte / small['seconds']:.1f} "
          f"| {large['bytes'] / megabyte / large['seconds']:.1f} |")
    print(f"| download, MB/s (of the files inside) "
          f"| {plain['small'] / megabyte / small['seconds']:.1f} "
          f"| {plain['large'] / megabyte / large['seconds']:.1f} |")
    print(f"| events/s | {options.small / small['seconds']:,.0f} "
          f"| {options.large / large['seconds']:,.0f} |")
    print(f"| worker peak memory (ru_maxrss), MB | {small['peak_mb']:.0f} "
          f"| {large['peak_mb']:.0f} |")
    print()
    print(f"Floor, zipfile from memory, {options.large:,} events' plaintext files "
          f"({floor['plaintext'] / megabyte:.1f} MB in, {floor['bytes'] / megabyte:.1f} MB out): "
          f"{floor['seconds']:.1f} s, {floor['bytes'] / megabyte / floor['seconds']:.1f} MB/s; "
          f"the download takes {large['seconds'] / floor['seconds']:.1f}x as long.")
    difference = large["peak_mb"] - small["peak_mb"]
    verdict = "met" if abs(difference) < MEMORY_GOAL_MB else "NOT met"
    print(f"Peak memory difference: {difference:.1f} MB (goal < {MEMORY_GOAL_MB} MB: "
          f"{verdict}).")


if __name__ == "__main__":
    main()
