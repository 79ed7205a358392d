"""Crashes: gunicorn killed with SIGKILL at random moments while it works, 20 times each.

20 rounds of: start gunicorn (2 workers x 4 threads), drive three loads at once over HTTP
from threads, SIGKILL master and workers at a random moment once all three flow (so every
kill lands during each of them), then check what the database holds against what the portal
acknowledged:

- ingestion: collectors POST batches; every acknowledged batch is stored whole and decrypts
  to what was sent, an unacknowledged one is wholly there or absent, and its retry with the
  same Idempotency-Key after the restart stores it exactly once;
- consent changes: signed-in people grant and withdraw through the web forms (CSRF token
  and all); every change answered with a redirect is in the ledger, the derived state equals
  the ledger (``portal consent rebuild-state``), both hash chains verify;
- deletion execution: the DPO executes approved deletions through the web form; whatever
  the kill interrupted, ``portal requests resume`` (or ``execute`` for one never started)
  finishes it and ``portal requests verify`` finds nothing left.

The kill moments come from a seeded generator; the seed is printed (rerun one with
``CRASH_TEST_SEED=<seed>``). Masters are forked from a zygote that imported the portal once
(see tests.support.servers.GunicornZygote): a fresh ``gunicorn wsgi:app`` costs seconds of
CPU per process, which 60 restarts cannot afford.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import re
import secrets
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from portal.auth.models import Person, WebSession
from portal.catalog.notices import current_notice
from portal.consent.models import ConsentEvent
from portal.db import commit, db, utcnow
from portal.requests import service as requests_service
from portal.requests.models import DeletionRequest, DeletionScope, RequestState
from portal.vault.ingest import find_category, ingest_batch
from portal.vault.models import CollectedBatch
from portal.vault.reading import read_own_batches
from tests.support.batches import keystroke_batch
from tests.support.collector_api import bearer
from tests.support.config import portal_settings
from tests.support.factories import create_person, grant
from tests.support.identity import ISSUER
from tests.support.servers import GunicornZygote, PreloadedGunicorn, portal_environment

pytestmark = pytest.mark.postgresql_only

ROUNDS = 20
SEED = int(os.environ.get("CRASH_TEST_SEED") or random.SystemRandom().randrange(2**32))
#: Requests that get no answer because the server died under them.
CUT_OFF = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
TIMEOUT = (3, 20)
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CONSENT_KEYS = ("pointer", "clicks", "keystrokes", "ai_transcripts", "conversations")


# --- servers and rounds ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornZygote]:
    """One process that imports the portal once and forks every gunicorn master of the module."""
    folder = tmp_path_factory.mktemp("zygote")
    # Enough configuration to import wsgi; each server brings its own.
    importable = portal_settings(f"sqlite:///{folder / 'unused.sqlite3'}", ISSUER, "http://localhost")
    with GunicornZygote("wsgi:app", portal_environment(importable, folder / "instance"),
                        log=folder / "gunicorn.log") as forks:
        yield forks


@pytest.fixture
def server(zygote: GunicornZygote, app: Flask, settings: dict[str, Any],
           tmp_path: Path) -> Iterator[PreloadedGunicorn]:
    """The portal on this test's database, not started; the same instance folder as ``app``."""
    (tmp_path / "instance").mkdir(exist_ok=True)
    environment = portal_environment({**settings, "LOG_LEVEL": "WARNING"}, tmp_path / "instance")
    portal = zygote.gunicorn(environment, workers=2, threads=4)
    yield portal
    portal.kill()


class Scenario(ABC):
    """One kind of load: what it sets up before a round, sends during it, and checks after.

    Subclasses implement :meth:`check`, and :meth:`drive` (one call per thread and round,
    until ``stop``) when they have threads; they count what happened with :meth:`add`.
    """

    name = ""
    threads = 1

    def __init__(self, app: Flask, server: PreloadedGunicorn) -> None:
        self.app = app
        self.server = server
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        #: Set once this round's load is flowing (the first answer came back).
        self.flowing = threading.Event()

    def add(self, what: str, count: int = 1) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + count

    def before(self, number: int) -> None:
        """Prepare round ``number`` (the server is down); nothing to prepare by default."""
        return None

    def drive(self, number: int, index: int, stop: threading.Event) -> None:
        """Send this scenario's requests from thread ``index`` until ``stop``.

        By default none: a scenario without threads (``threads = 0``) only checks.
        """
        return None

    @abstractmethod
    def check(self, number: int) -> None:
        """Check, after round ``number``'s kill and restart, that nothing was lost."""

    def summary(self, kills: int) -> str:
        counts = dict(self.counts)
        main = [f"{counts.pop(what, 0)} {what}" for what in ("acknowledged", "cut off")
                if self.threads]
        checks = counts.pop("checks", 0)
        return ", ".join([f"crash/{self.name}: seed {SEED}", f"{ROUNDS} rounds",
                          f"{kills} SIGKILLs", *main,
                          *(f"{count} {what}" for what, count in sorted(counts.items())),
                          f"{checks} checks passed"])


def crash_rounds(server: PreloadedGunicorn, scenarios: list[Scenario]) -> None:
    """Run ``ROUNDS`` rounds: start, drive every scenario's load, SIGKILL at a random moment
    once all of it flows, then check every scenario."""
    try:
        _crash_rounds(server, scenarios)
    finally:
        log = server.zygote.log_path
        errors = [line[:3000] for line in (log.read_text().splitlines() if log else [])
                  if '"level": "ERROR"' in line or "Traceback" in line]
        for line in errors[:5]:
            print("server error:", line)


def _crash_rounds(server: PreloadedGunicorn, scenarios: list[Scenario]) -> None:
    rng = random.Random(SEED)
    failures: list[BaseException] = []
    timings: dict[str, float] = {}

    def guarded(scenario: Scenario, *args: Any) -> None:
        try:
            scenario.drive(*args)
        except BaseException as exc:  # reported by the main thread, after the round
            failures.append(exc)
            scenario.flowing.set()

    def timed(what: str, since: float) -> float:
        now = time.monotonic()
        timings[what] = timings.get(what, 0.0) + now - since
        return now

    for number in range(ROUNDS):
        moment = time.monotonic()
        for scenario in scenarios:
            scenario.flowing.clear()
            scenario.before(number)
        moment = timed("setting up", moment)
        server.start()
        moment = timed("starting gunicorn", moment)
        stop = threading.Event()
        load = [threading.Thread(target=guarded, args=(scenario, number, index, stop))
                for scenario in scenarios for index in range(scenario.threads)]
        for thread in load:
            thread.start()
        for scenario in scenarios:
            assert scenario.flowing.wait(30), f"{scenario.name}: no answer in 30 s"
        time.sleep(rng.uniform(0.0, 0.6))
        server.kill()
        stop.set()
        for thread in load:
            thread.join(60)
        moment = timed("loading", moment)
        if failures:
            raise failures[0]
        for scenario in scenarios:
            scenario.check(number)
            moment = timed(f"checking {scenario.name}", moment)
    for scenario in scenarios:
        print(scenario.summary(ROUNDS))
    print("crash: seconds " + ", ".join(f"{what} {seconds:.1f}"
                                         for what, seconds in timings.items()))


def post(client: requests.Session, url: str, **options: Any) -> requests.Response | None:
    """POST; ``None`` if the server died before answering."""
    try:
        return client.post(url, timeout=TIMEOUT, allow_redirects=False, **options)
    except CUT_OFF:
        return None


def cli(app: Flask, *args: str) -> str:
    """Run a ``portal`` command in-process; fail the test on a non-zero exit."""
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, f"portal {' '.join(args)}: {result.output}{result.exception}"
    return result.output


class Chains(Scenario):
    """No load of its own: after every round (and the reruns of deletions), both hash chains
    verify and the derived consent state equals the ledger's last events."""

    name = "hash chains"
    threads = 0

    def before(self, number: int) -> None:
        self.flowing.set()

    def check(self, number: int) -> None:
        cli(self.app, "ledger", "verify")
        cli(self.app, "audit", "verify")
        assert "Identical" in cli(self.app, "consent", "rebuild-state")
        self.add("checks", 3)


# --- the world -------------------------------------------------------------------------------

def open_session(person_id: int) -> tuple[str, str]:
    """Store a signed-in session as the sign-in callback would; return its cookie and CSRF secret.

    Signing in through the provider for every person would cost more than the crashes; the
    requests themselves still go over HTTP with the cookie and a CSRF token from a form.
    """
    session_id, csrf_secret = secrets.token_urlsafe(32), secrets.token_hex(20)
    now = utcnow()
    db.add(WebSession(id_hash=hashlib.sha256(session_id.encode()).hexdigest(),
                      person_id=person_id, created_at=now, last_seen_at=now,
                      expires_at=now + dt.timedelta(hours=12), authenticated_at=now,
                      data={"_user_id": str(person_id), "_fresh": False,
                            "csrf_token": csrf_secret}))
    return session_id, csrf_secret


def form_token(client: requests.Session, url: str) -> str | None:
    """Read the CSRF token of the form on a page; ``None`` if the server died meanwhile."""
    try:
        page = client.get(url, timeout=TIMEOUT)
    except CUT_OFF:
        return None
    assert page.status_code == 200, (url, page.status_code)
    found = CSRF.search(page.text)
    assert found, f"no CSRF token on {url}"
    return found.group(1)


# --- (a) ingestion ---------------------------------------------------------------------------

EVENTS_PER_BATCH = 50


class Ingestion(Scenario):
    """Collectors POST batches; each is acknowledged (201) or cut off by the kill.

    Each round records new people, so that a round's check decrypts only its own batches
    (and the retried ones of the round before); every earlier acknowledged batch is still
    checked to be there, by its id.
    """

    name = "ingestion"
    threads = 3

    def __init__(self, app: Flask, server: PreloadedGunicorn) -> None:
        super().__init__(app, server)
        with app.app_context():
            from portal.api.service import create_collector

            _collector, self.token, _secret = create_collector("crash agent", ("keystrokes",))
            commit()
        self.subjects: list[list[str]] = []
        self.acknowledged: dict[str, tuple[str, list[str]]] = {}  # key: (batch id, keys)
        self.pending: dict[int, dict[str, dict[str, Any]]] = {}  # thread: key: body

    def before(self, number: int) -> None:
        subjects = [f"collected-{number}-{index}" for index in range(self.threads)]
        with self.app.app_context():
            for subject in subjects:
                grant(create_person(subject), "keystrokes")
            commit()
        self.subjects.append(subjects)

    @staticmethod
    def texts(body: dict[str, Any]) -> list[str]:
        return [event["keys"] for event in body["events"]]

    def send(self, client: requests.Session, key: str, body: dict[str, Any], *,
             retry: bool) -> bool:
        answer = post(client, f"{self.server.url}/api/v1/batches", json=body,
                      headers={**bearer(self.token), "Idempotency-Key": key})
        if answer is None:
            self.add("cut off")
            return False
        # A retry finds its batch (200) if the kill came after the commit, else stores it.
        assert answer.status_code in ({200, 201} if retry else {201}), answer.text
        assert answer.json()["events"] == len(body["events"])
        with self.lock:
            self.acknowledged[key] = (answer.json()["batch_id"], self.texts(body))
        self.add("acknowledged")
        if retry:
            self.add("retries found stored" if answer.status_code == 200
                     else "retries stored anew")
        self.flowing.set()
        return True

    def drive(self, number: int, index: int, stop: threading.Event) -> None:
        client = requests.Session()
        mine = self.pending.setdefault(index, {})
        # A collector sends again, with the same key, what got no answer before the crash.
        for key, body in list(mine.items()):
            if stop.is_set() or not self.send(client, key, body, retry=True):
                return
            del mine[key]
        sent = 0
        while not stop.is_set():
            body = keystroke_batch(self.subjects[number][index],
                                   *(f"r{number}-t{index}-b{sent}-e{event}"
                                     for event in range(EVENTS_PER_BATCH)))
            key = uuid.uuid4().hex
            if not self.send(client, key, body, retry=False):
                mine[key] = body
                return
            sent += 1

    def check(self, number: int) -> None:
        recent = self.subjects[max(0, number - 1):number + 1]
        with self.app.app_context():
            stored = {row.idempotency_key: (row.public_id, row.event_count)
                      for row in db.scalars(select(CollectedBatch)
                                            .where(CollectedBatch.collector_id.is_not(None)))}
            people = list(db.scalars(select(Person).where(
                Person.subject.in_([subject for each in recent for subject in each]))))
            opened = {batch.public_id: [event["keys"] for event in batch.events]
                      for who in people for batch in read_own_batches(who)}
            recent_ids = set(db.scalars(select(CollectedBatch.public_id).where(
                CollectedBatch.person_id.in_([who.id for who in people]))))
        # Every stored batch of these people decrypts, with all its events.
        assert set(opened) == recent_ids, "a stored batch does not decrypt"
        for public_id, count in stored.values():
            if public_id in recent_ids:
                assert len(opened[public_id]) == count, f"batch {public_id} is partial"
        # Every acknowledged batch is there, as sent.
        for key, (public_id, sent) in self.acknowledged.items():
            assert stored.get(key, ("",))[0] == public_id, f"acknowledged batch {key} lost"
            if public_id in opened:
                assert opened[public_id] == sent, f"batch {public_id} differs from the sent"
        # One that got no answer is wholly there or absent; nothing else is there.
        cut_off = {key: body for mine in self.pending.values() for key, body in mine.items()}
        for key, body in cut_off.items():
            if key in stored:
                public_id, count = stored[key]
                assert count == len(body["events"]), f"batch {key} is partial"
                if public_id in opened:
                    assert opened[public_id] == self.texts(body), f"batch {key} differs"
                self.add("cut off but stored whole")
        assert set(stored) <= set(self.acknowledged) | set(cut_off), "a batch nobody sent"
        self.add("checks", 4)


# --- (b) consent changes ---------------------------------------------------------------------

class ConsentChanges(Scenario):
    """Signed-in people grant and withdraw through the web forms (303 when accepted)."""

    name = "consent changes"
    threads = 4

    def __init__(self, app: Flask, server: PreloadedGunicorn) -> None:
        super().__init__(app, server)
        with app.app_context():
            people = [create_person(f"chooser-{number}") for number in range(self.threads)]
            self.sessions = [open_session(who.id)[0] for who in people]
            notice = current_notice()
            assert notice is not None
            self.notice_number = notice.number
            commit()
        self.ids = [who.id for who in people]
        # Per person: (category, consent wanted, moment of the answer) of each accepted change.
        self.answered: list[list[tuple[str, bool, dt.datetime]]] = [[] for _ in people]
        self.tokens: list[str | None] = [None] * len(people)
        self.wanted = [dict.fromkeys(CONSENT_KEYS, False) for _ in people]

    def drive(self, number: int, index: int, stop: threading.Event) -> None:
        client = requests.Session()
        client.cookies.set("portal_session", self.sessions[index])
        changes = 0
        while not stop.is_set():
            if self.tokens[index] is None:
                self.tokens[index] = form_token(client,
                                                f"{self.server.url}/categories/keystrokes")
                if self.tokens[index] is None:
                    return
            key = CONSENT_KEYS[(index + changes) % len(CONSENT_KEYS)]
            give = self.wanted[index][key] = not self.wanted[index][key]
            answer = post(client, f"{self.server.url}/consent/{key}/"
                          f"{'grant' if give else 'withdraw'}",
                          data={"csrf_token": self.tokens[index], "next": "",
                                "notice_version": self.notice_number})
            if answer is None:
                self.add("cut off")
                return
            assert answer.status_code == 303, (answer.status_code, answer.text[:500])
            self.answered[index].append((key, give, dt.datetime.now(dt.UTC)))
            self.add("acknowledged")
            self.flowing.set()
            changes += 1

    def check(self, number: int) -> None:
        with self.app.app_context():
            events = list(db.scalars(select(ConsentEvent)
                                     .where(ConsentEvent.person_id.in_(self.ids))
                                     .order_by(ConsentEvent.id)))
        for index, person_id in enumerate(self.ids):
            for key, give, at in self.answered[index]:
                # The person is the only one changing this consent: the last event before
                # the answer came back is the state the answer confirmed.
                before = [event for event in events if event.person_id == person_id
                          and event.category_key == key and event.occurred_at <= at]
                # No event at all: consent was never given, which a withdrawal confirms.
                collecting = bool(before) and before[-1].state.allows_collection
                assert collecting is give, (
                    f"person {person_id}: accepted {'grant' if give else 'withdrawal'} of "
                    f"{key} at {at} lost; the ledger says "
                    f"{before[-1].state if before else 'nothing'}")
                self.add("checks")


# --- (c) deletion execution ------------------------------------------------------------------

def _pointer_events(count: int, start: dt.datetime) -> list[dict[str, Any]]:
    return [{"t": (start + dt.timedelta(seconds=index)).isoformat(timespec="milliseconds")
             .replace("+00:00", "Z"), "x": index, "y": index, "screen": 1, "app": "browser"}
            for index in range(count)]


class Deletions(Scenario):
    """The DPO works the queue through the web form: each thread executes its approved
    requests one after the other, so that a kill finds some done, one mid-way, some waiting."""

    name = "deletion execution"
    threads = 2
    per_thread = 1

    def __init__(self, app: Flask, server: PreloadedGunicorn) -> None:
        super().__init__(app, server)
        with app.app_context():
            dpo = create_person("dpo-dana", groups=("privacy-office",))
            self.session = open_session(dpo.id)[0]
            commit()
        self.references: list[list[str]] = []
        self.executed: set[str] = set()
        self.token: str | None = None

    def before(self, number: int) -> None:
        """Give this round's leavers data in two categories and approve their requests."""
        moment = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
        made = []
        with self.app.app_context():
            approver = db.scalar(select(Person).where(Person.subject == "dpo-dana"))
            assert approver is not None
            for index in range(self.threads * self.per_thread):
                leaver = create_person(f"leaver-{number}-{index}")
                grant(leaver, "keystrokes", "pointer")
                body = keystroke_batch(leaver.subject, *(f"k{n}" for n in range(20)),
                                       minutes_ago=120)
                ingest_batch(leaver, find_category("keystrokes"), events=body["events"],
                             collected_from=moment - dt.timedelta(hours=1),
                             collected_to=moment + dt.timedelta(hours=1), dss_level=2)
                ingest_batch(leaver, find_category("pointer"),
                             events=_pointer_events(20, moment), collected_from=moment,
                             collected_to=moment + dt.timedelta(seconds=20), dss_level=2)
                request = requests_service.submit_deletion_request(
                    leaver, scope=DeletionScope.ALL, withdraw=True)
                requests_service.approve_deletion(request, dpo=approver)
                made.append(request.reference)
            commit()
        self.references.append(made)

    def drive(self, number: int, index: int, stop: threading.Event) -> None:
        client = requests.Session()
        client.cookies.set("portal_session", self.session)
        queue = self.references[number][index * self.per_thread:(index + 1) * self.per_thread]
        for reference in queue:
            if stop.is_set():
                return
            page = f"{self.server.url}/dpo/requests/{reference}/execute"
            if self.token is None:
                self.token = form_token(client, page)
                if self.token is None:
                    return
            self.flowing.set()
            answer = post(client, page, data={"csrf_token": self.token})
            if answer is None:
                self.add("cut off")
                return
            assert answer.status_code == 303, (answer.status_code, answer.text[:500])
            assert answer.headers["Location"].endswith(f"/dpo/requests/{reference}/executed")
            self.executed.add(reference)
            self.add("acknowledged")

    def states(self, made: list[str]) -> dict[str, RequestState]:
        with self.app.app_context():
            return dict(db.execute(select(DeletionRequest.reference, DeletionRequest.state)
                                   .where(DeletionRequest.reference.in_(made))).all())

    def check(self, number: int) -> None:
        made = self.references[number]
        found = self.states(made)
        for reference in made:
            if reference in self.executed:
                assert found[reference] is RequestState.EXECUTED, reference
            self.add({RequestState.EXECUTED: "done before the kill",
                      RequestState.EXECUTING: "interrupted mid-way",
                      RequestState.APPROVED: "not started"}[found[reference]])
        # The rerun: resume what was interrupted, execute what never started.
        interrupted = sum(state is RequestState.EXECUTING for state in found.values())
        assert f"{interrupted} interrupted deletions finished" in cli(self.app, "requests",
                                                                      "resume")
        for reference, state in self.states(made).items():
            assert state is not RequestState.EXECUTING, reference
            if state is RequestState.APPROVED:
                cli(self.app, "requests", "execute", reference)
        for reference in made:
            assert cli(self.app, "requests", "verify", reference).startswith("Deleted:")
            self.add("checks")


# --- the test --------------------------------------------------------------------------------

def test_sigkill_during_ingestion_consent_changes_and_deletions(
        app: Flask, catalog: int, server: PreloadedGunicorn) -> None:
    """All three loads run at once, so each of the 20 kills lands during each of them."""
    ingestion = Ingestion(app, server)
    consent = ConsentChanges(app, server)
    deletions = Deletions(app, server)
    scenarios = [ingestion, consent, deletions, Chains(app, server)]
    crash_rounds(server, scenarios)
    assert ingestion.counts.get("acknowledged", 0) >= ROUNDS
    assert ingestion.counts.get("cut off", 0) >= ROUNDS // 2
    assert consent.counts.get("acknowledged", 0) >= ROUNDS
    assert consent.counts.get("cut off", 0) >= ROUNDS // 2
    assert deletions.counts.get("interrupted mid-way", 0) > 0, "no kill landed mid-execution"
