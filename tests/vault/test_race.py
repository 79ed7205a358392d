"""No race between a batch and a withdrawal: a batch is stored only if consent is current when
it commits.

PostgreSQL only, by construction: these tests take the ``postgres`` cluster itself (not the
``backend`` parameter), because SQLite serialises every writer and so proves nothing here.
Each side runs in its own thread with its own connection, as two requests would, and the
tests ask PostgreSQL which backend waits for which.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from portal import create_app
from portal.auth.models import Person
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.cli import upgrade_database
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import commit, db, get_engine
from portal.vault.errors import ConsentRequired
from portal.vault.models import CollectedBatch
from tests.support.batches import keystroke_events
from tests.support.config import portal_settings
from tests.support.factories import create_person, grant, withdraw
from tests.support.identity import ISSUER
from tests.support.postgres import PostgresCluster
from tests.support.vault import ingest

_numbers = itertools.count(1)
WAIT = 15.0


@pytest.fixture
def pg_app(postgres: PostgresCluster, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The portal on a fresh, migrated PostgreSQL database, with the catalog and Alex."""
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    name = f"vault_race_{next(_numbers)}"
    url = postgres.create_database(name)
    app = create_app(portal_settings(url, ISSUER, "http://localhost"))
    upgrade_database(app)
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        grant(create_person("sub-alex", email=False), "keystrokes")
        commit()
    yield app
    get_engine(app).dispose()
    postgres.drop_database(name)


class Side(threading.Thread):
    """One transaction in its own thread and connection: runs ``work``, then waits for
    ``release`` before committing, and records when it reached each point."""

    def __init__(self, app: Flask, work: Callable[[], Any], *, hold: bool) -> None:
        super().__init__(daemon=True)
        self.app, self.work, self.hold = app, work, hold
        self.connected = threading.Event()
        self.flushed = threading.Event()
        self.release = threading.Event()
        self.pid = 0
        self.outcome: object = None
        self.commit_started = 0.0
        self.finished = 0.0

    def run(self) -> None:
        with self.app.app_context():
            self.pid = int(db.execute(text("SELECT pg_backend_pid()")).scalar_one())
            self.connected.set()
            try:
                self.work()
                if self.hold:
                    self.flushed.set()
                    self.release.wait(WAIT)
                self.commit_started = time.monotonic()
                commit()
                self.outcome = "committed"
            except Exception as exc:  # the test asserts on it, so keep whatever happened
                self.outcome = exc
            finally:
                self.finished = time.monotonic()
                self.flushed.set()


def _blockers(app: Flask, pid: int) -> set[int]:
    """Return the backends that ``pid`` waits for, once it waits (or fail after a while)."""
    assert pid, "the side has not connected yet"
    url = make_url(app.config["DATABASE_URL"]).set(drivername="postgresql")
    deadline = time.monotonic() + WAIT
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT pg_blocking_pids(%s)", (pid,)).fetchone()
            if row and row[0]:
                return set(row[0])
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")


def _wait_behind(app: Flask, holder: Side, waiter: Side) -> None:
    """Start ``waiter``, see it wait for ``holder``'s lock, release ``holder``; end both."""
    waiter.start()
    assert waiter.connected.wait(WAIT)
    assert holder.pid in _blockers(app, waiter.pid)
    holder.release.set()
    holder.join(WAIT)
    waiter.join(WAIT)


def _batches(app: Flask) -> int:
    with app.app_context():
        return db.scalar(select(func.count()).select_from(CollectedBatch)) or 0


def _state(app: Flask) -> ConsentState:
    with app.app_context():
        return db.scalars(select(ConsentStatus.state)).one()


def _alex() -> Person:
    # Read only: signing in again would update the person row, and the two sides would
    # then wait for each other on that row instead of on the consent lock under test.
    return db.scalars(select(Person).where(Person.subject == "sub-alex")).one()


@pytest.mark.parametrize("key_exists", [False, True], ids=["first batch", "key exists"])
def test_a_withdrawal_that_commits_first_makes_the_waiting_batch_fail(
        pg_app: Flask, key_exists: bool) -> None:
    """Without a data key the batch locks the consent row alone; the usual batch reads
    consent and its key in one locking statement. Either waits for the withdrawal, then
    sees it."""
    if key_exists:
        with pg_app.app_context():
            ingest(_alex(), "keystrokes", keystroke_events("first"))  # makes the data key
            commit()
    withdrawal = Side(pg_app, lambda: withdraw(_alex(), "keystrokes"), hold=True)
    withdrawal.start()
    assert withdrawal.flushed.wait(WAIT) and withdrawal.outcome is None
    # The withdrawal has updated the consent row and not committed yet; the batch arrives.
    batch = Side(pg_app, lambda: ingest(_alex(), "keystrokes", keystroke_events("late")),
                 hold=False)
    _wait_behind(pg_app, withdrawal, batch)

    assert withdrawal.outcome == "committed"
    assert isinstance(batch.outcome, ConsentRequired)
    assert batch.outcome.state is ConsentState.WITHDRAWN
    assert batch.finished > withdrawal.commit_started
    assert _batches(pg_app) == (1 if key_exists else 0)


def test_a_batch_holding_its_lock_makes_the_withdrawal_wait_until_it_commits(
        pg_app: Flask) -> None:
    batch = Side(pg_app, lambda: ingest(_alex(), "keystrokes", keystroke_events("in time")),
                 hold=True)
    batch.start()
    assert batch.flushed.wait(WAIT) and batch.outcome is None
    withdrawal = Side(pg_app, lambda: withdraw(_alex(), "keystrokes"), hold=False)
    withdrawal.start()
    assert withdrawal.connected.wait(WAIT)
    assert batch.pid in _blockers(pg_app, withdrawal.pid)
    time.sleep(0.3)
    assert withdrawal.is_alive(), "the withdrawal went through while the batch held its lock"
    batch.release.set()
    batch.join(WAIT)
    withdrawal.join(WAIT)

    assert (batch.outcome, withdrawal.outcome) == ("committed", "committed")
    assert withdrawal.finished > batch.commit_started
    assert _batches(pg_app) == 1
    assert _state(pg_app) is ConsentState.WITHDRAWN
    with pg_app.app_context(), pytest.raises(ConsentRequired):
        ingest(_alex(), "keystrokes", keystroke_events("after"))


def test_concurrent_batches_and_a_withdrawal_leave_no_batch_after_it(pg_app: Flask) -> None:
    """Eight collectors keep sending while the person withdraws: every batch that was stored
    committed before the withdrawal did, and every one sent after it is refused.

    Inside the withdrawal's transaction, after its update of the consent row and before its
    commit, the batches are counted: in READ COMMITTED that count sees every batch committed
    so far. Any batch stored but not counted would have committed after the withdrawal.
    """
    stop = threading.Event()
    results: list[tuple[float, float, str]] = []
    lock = threading.Lock()

    def collector() -> None:
        while not stop.is_set():
            with pg_app.app_context():
                started = time.monotonic()
                try:
                    ingest(_alex(), "keystrokes", keystroke_events("tick"))
                    commit()
                    outcome = "stored"
                except ConsentRequired:
                    outcome = "refused"
                with lock:
                    results.append((started, time.monotonic(), outcome))

    threads = [threading.Thread(target=collector, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    with pg_app.app_context():
        withdraw(_alex(), "keystrokes")
        committed_before = db.scalar(select(func.count()).select_from(CollectedBatch))
        commit()
        withdrawn_at = time.monotonic()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(WAIT)

    stored = [r for r in results if r[2] == "stored"]
    refused = [r for r in results if r[2] == "refused"]
    assert stored and refused
    assert not [r for r in stored if r[0] > withdrawn_at], "a batch begun after was stored"
    assert all(r[2] == "refused" for r in results if r[0] > withdrawn_at)
    assert _batches(pg_app) == len(stored) == committed_before


@pytest.mark.parametrize("first_commits", [True, False], ids=["first commits", "first fails"])
def test_two_sends_of_one_idempotency_key_store_one_batch(pg_app: Flask,
                                                          first_commits: bool) -> None:
    """A collector that times out and sends again while its first request is still being
    stored: the second waits in its insert for the first to end, then answers with the first
    batch, or stores its own if the first failed."""
    from portal.api.service import register_collector

    with pg_app.app_context():
        collector_id = register_collector("laptop-agent", ["keystrokes"])[0].id
        ingest(_alex(), "keystrokes", keystroke_events("earlier"))  # makes the data key
        commit()
    events = keystroke_events("sent twice")
    results: dict[str, Any] = {}
    failed = threading.Event()

    def send(name: str) -> None:
        results[name] = ingest(_alex(), "keystrokes", events, collector_id=collector_id,
                               idempotency_key="agent/42")

    def first_work() -> None:
        send("first")
        if not first_commits:
            first.flushed.set()
            first.release.wait(WAIT)
            failed.set()
            raise RuntimeError("the first request fails before it commits")

    first = Side(pg_app, first_work, hold=first_commits)
    first.start()
    assert first.flushed.wait(WAIT) and "first" in results
    second = Side(pg_app, lambda: send("second"), hold=False)
    _wait_behind(pg_app, first, second)

    assert second.outcome == "committed"
    if first_commits:
        assert first.outcome == "committed"
        assert (results["second"].public_id, results["second"].created) == (
            results["first"].public_id, False)
    else:
        assert failed.is_set() and isinstance(first.outcome, RuntimeError)
        assert results["second"].created
        assert results["second"].public_id != results["first"].public_id
    assert _batches(pg_app) == 2
