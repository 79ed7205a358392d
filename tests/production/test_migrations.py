"""Migrations upgrade from every earlier schema without losing or spoiling data.

The portal itself builds one representative database at the latest schema (people, sessions,
two notice versions, consents given, refused and withdrawn, a collector with its webhook
outbox and acknowledgements, encrypted batches, audit entries, deletion requests in every
kind of state, an objection decided, mail). For every earlier revision, a fresh database is
migrated to that revision and given those rows, restricted to the columns that revision has
and written with plain SQL against its own (reflected) schema; then it is upgraded to head
and read back through the current models: every row is still there with the same values,
the consent ledger and the audit chain verify, batches decrypt to the same events, requests
and objections keep their states, and the portal goes on writing to the chains.

The rows are today's. A migration that transforms data (not only the schema) needs, here,
rows as they were before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Integer,
    MetaData,
    Table,
    delete,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from portal import create_app
from portal.api.models import CollectionAction
from portal.api.service import create_collector, record_acknowledgement
from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record, verify_log
from portal.auth.demo.models import DemoAccessToken, DemoAuthorizationCode
from portal.auth.models import Person, WebSession
from portal.auth.service import sign_in
from portal.catalog.document import SHIPPED_CATALOG, parse_catalog, read_catalog_file
from portal.catalog.models import NoticeVersion, Objection
from portal.catalog.notices import current_notice, find_section
from portal.catalog.objections import file_objection
from portal.catalog.publication import load_catalog, publish_notice
from portal.cli import alembic_config, upgrade_database
from portal.consent.models import ConsentMethod
from portal.consent.service import (
    grant_consent,
    rebuild_state,
    refuse_consent,
    verify_ledger,
    withdraw_consent,
)
from portal.db import Base, commit, db, get_engine, utcnow
from portal.models import MODELS
from portal.requests import service as requests
from portal.requests.models import DeletionRequest, DeletionScope
from portal.training import files
from portal.training import service as training
from portal.training.build import work
from portal.training.keys import open_snapshot_key
from portal.training.lineage import retire_snapshot
from portal.training.manifest import verify_manifest
from portal.training.models import (
    SnapshotState,
    TrainingClient,
    TrainingScope,
    TrainingSnapshot,
)
from portal.vault.erasure import key_still_opens
from portal.vault.ingest import find_category, ingest_batch
from portal.vault.models import DataKey
from portal.vault.reading import read_own_batches
from tests.support.config import portal_settings
from tests.support.identity import ISSUER, ROLE_MAP
from tests.support.postgres import PostgresCluster

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
#: Every revision but the latest, oldest first.
EARLIER = [script.revision for script in
           reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
           if script.revision != HEAD]
TABLES = Base.metadata.sorted_tables  # parents before children
HIDDEN = "alembic_version"


# --- the representative database, built by the portal at head ----------------------------------

def _settings_for(url: str) -> dict[str, Any]:
    values = portal_settings(url, ISSUER, "http://localhost")
    values["DPO_TEAM_EMAIL"] = "privacy-team@example.com"
    return values


def _person(subject: str, *groups: str) -> Person:
    return sign_in({"sub": subject, "name": subject.title(), "email": f"{subject}@example.com",
                    "groups": list(groups), "department": "Engineering", "locale": "de"},
                   issuer=ISSUER, roles_claim="groups", role_map=ROLE_MAP)


def _events(first: str, *texts: str, minutes_ago: int) -> dict[str, Any]:
    start = (utcnow() - dt.timedelta(minutes=minutes_ago)).replace(microsecond=0)
    events = [{"t": (start + dt.timedelta(seconds=index)).isoformat(timespec="milliseconds")
               .replace("+00:00", "Z"), "app": "code editor", "keys": keys,
               "duration_ms": 100 * len(keys)} for index, keys in enumerate((first, *texts))]
    return {"events": events, "collected_from": start,
            "collected_to": start + dt.timedelta(seconds=len(events)), "dss_level": 2}


def _pointer(minutes_ago: int) -> dict[str, Any]:
    start = (utcnow() - dt.timedelta(minutes=minutes_ago)).replace(microsecond=0)
    events = [{"t": (start + dt.timedelta(seconds=index)).isoformat(timespec="milliseconds")
               .replace("+00:00", "Z"), "x": index, "y": 2 * index, "screen": 1,
               "app": "browser"} for index in range(3)]
    return {"events": events, "collected_from": start,
            "collected_to": start + dt.timedelta(seconds=3), "dss_level": 1}


def _ratings(minutes_ago: int, *levels: int) -> dict[str, Any]:
    """A sensitivity_ratings batch: documents opened a minute apart, at the DSS levels given."""
    start = (utcnow() - dt.timedelta(minutes=minutes_ago)).replace(microsecond=0)
    events = [{"t": (start + dt.timedelta(minutes=index)).isoformat(timespec="milliseconds")
               .replace("+00:00", "Z"), "document_id": f"doc-{minutes_ago:08x}{index:04x}",
               "dss_level": level, "classifier": "dss-classifier 3.2"}
              for index, level in enumerate(levels)]
    return {"events": events, "collected_from": start,
            "collected_to": start + dt.timedelta(minutes=len(events)), "dss_level": max(levels)}


def _build_snapshot(client: TrainingClient, categories: tuple[str, ...]) -> TrainingSnapshot:
    """Ask for a snapshot of the last day, as the training API would, and build it (commits)."""
    snapshot = training.request_snapshot(client, training.SnapshotAsk(
        purpose="code_and_text_completion", categories=categories,
        collected_from=utcnow() - dt.timedelta(days=1), collected_to=utcnow(), max_dss_level=2))
    commit()
    work("migrations-test")
    assert snapshot.state is SnapshotState.READY, snapshot.failed_reason
    return snapshot


def build_representative_data() -> None:
    """Fill every table through the portal's services, as months of use would (commits)."""
    load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
    alex, bea, chris = _person("alex"), _person("bea"), _person("chris", "people-ops")
    dana, dora = _person("dana", "privacy-office"), _person("dora", "privacy-office")
    collector, _token, _secret = create_collector(
        "laptop agent", ("keystrokes", "pointer"), webhook_url="https://collector.example.com/hook")
    notice = current_notice()
    assert notice is not None
    for person, keys in ((alex, ("keystrokes", "pointer", "clicks")), (bea, ("keystrokes",))):
        for key in keys:
            grant_consent(person, find_category(key), notice_version=notice,
                          method=ConsentMethod.WEB, actor=person)
    refuse_consent(alex, find_category("conversations"), notice_version=notice,
                   method=ConsentMethod.WEB, actor=alex)
    commit()
    ingest_batch(alex, find_category("keystrokes"), **_events("alpha", "beta", minutes_ago=300),
                 collector_id=collector.id, idempotency_key="batch-1")
    ingest_batch(alex, find_category("keystrokes"), **_events("gamma", minutes_ago=60))
    ingest_batch(alex, find_category("pointer"), **_pointer(90))
    ingest_batch(bea, find_category("keystrokes"), **_events("delta", minutes_ago=120))
    # Ratings beside the keystrokes (so they may enter training), one strictly confidential
    # document open beside alex's last batch (so some are left out, and counted).
    ingest_batch(alex, find_category("sensitivity_ratings"), **_ratings(301, 1, 2))
    ingest_batch(alex, find_category("sensitivity_ratings"), **_ratings(61, 3))
    ingest_batch(bea, find_category("sensitivity_ratings"), **_ratings(121, 1))
    commit()
    # A training pipeline's snapshot, built by the worker, and a model trained on it; a second
    # snapshot retired (key destroyed, certificate issued, its client told).
    pipeline, _token = training.create_client(
        "assistant pipeline", purposes=["code_and_text_completion"],
        scopes=list(TrainingScope), webhook_url="https://training.example.com/hook")
    commit()
    trained_on = _build_snapshot(pipeline, ("keystrokes", "ai_transcripts"))
    assert trained_on.totals["included"] and trained_on.totals["excluded"], trained_on.totals
    training.register_model(pipeline, "internal-assistant", "2025.1", [trained_on.public_id])
    retire_snapshot(_build_snapshot(pipeline, ("keystrokes",)), by="Privacy team")
    commit()
    # A withdrawal queues a stop notice for the collector, which acknowledges it, and marks
    # the snapshot holding bea's keystrokes outdated (an event, a notice to its client).
    withdrawal = withdraw_consent(bea, find_category("keystrokes"), method=ConsentMethod.WEB,
                                  actor=bea)
    assert withdrawal is not None
    commit()
    record_acknowledgement(collector.id, subject="bea", issuer=ISSUER, category_key="keystrokes",
                           change_cursor=withdrawal.id, action=CollectionAction.STOPPED,
                           last_event_at=utcnow() - dt.timedelta(minutes=100))
    record("my_data.download", action=AuditAction.DOWNLOAD, role=AuditRole.SUBJECT,
           subjects=alex.id, actor=alex, detail={"categories": "keystrokes"})
    commit()
    # A second notice version, its change not material (consents stay).
    raw = dict(notice.document)
    raw["categories"] = [dict(entry) for entry in raw["categories"]]
    raw["categories"][0]["text"] = {language: {**words, "summary": words["summary"] + " (2)"}
                                    for language, words in raw["categories"][0]["text"].items()}
    publish_notice(parse_catalog(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)),
                   published_by=chris, dpo_sign_off="Dana Novak",
                   change_summary={"en": "Clearer words.", "de": "Klarere Worte.",
                                   "fr": "Des mots plus clairs."}, material={})
    commit()
    # Deletion requests in every kind of state, and an objection decided.
    in_part = requests.submit_deletion_request(alex, scope=DeletionScope.ALL)
    requests.approve_in_part(in_part, dpo=dana, kept={"keystrokes": "Kept for a lawsuit."})
    executed = requests.submit_deletion_request(alex, scope=DeletionScope.CATEGORIES,
                                                categories=["pointer"], reason="No longer.")
    requests.approve_deletion(executed, dpo=dana)
    commit()
    requests.execute_deletion(executed, actor=dana)
    refused = requests.submit_deletion_request(
        alex, scope=DeletionScope.RANGE, since=utcnow() - dt.timedelta(days=2),
        until=utcnow() - dt.timedelta(days=1))
    requests.refuse_request(refused, dpo=dana, reason="A legal hold applies.")
    extended = requests.submit_deletion_request(bea, scope=DeletionScope.ALL)
    requests.extend_deadline(extended, dpo=dora, months=1, reason="Many systems to check.")
    requests.submit_deletion_request(bea, scope=DeletionScope.CATEGORIES,
                                     categories=["keystrokes"], withdraw=True)
    section = find_section("performance")
    assert section is not None
    objection = file_objection(alex, section, "Reviews should not use recordings.")
    file_objection(bea, section, "Not in my review, please.")
    commit()
    requests.decide_objection(objection, dpo=dana, upheld=True, reason="Agreed.")
    commit()
    # A signed-in browser, and the demo provider's codes and tokens.
    now = utcnow()
    db.add(WebSession(id_hash=hashlib.sha256(b"session").hexdigest(), person_id=alex.id,
                      data={"_user_id": str(alex.id), "locale": "de"}, created_at=now,
                      last_seen_at=now, expires_at=now + dt.timedelta(hours=12),
                      authenticated_at=now))
    code = DemoAuthorizationCode(
        code_hash=hashlib.sha256(b"code").hexdigest(), client_id="portal", subject="demo-ada",
        redirect_uri="http://localhost/auth/callback", scope="openid profile", nonce="n-1",
        code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        code_challenge_method="S256", auth_time=now, issued_at=now,
        expires_at=now + dt.timedelta(minutes=1), redeemed_at=now)
    db.add(code)
    db.flush()
    db.add(DemoAccessToken(token_hash=hashlib.sha256(b"token").hexdigest(), client_id="portal",
                           subject="demo-ada", scope="openid profile", issued_at=now,
                           expires_at=now + dt.timedelta(hours=1), authorization_code_id=code.id))
    commit()


@dataclass(frozen=True)
class Snapshot:
    """What the representative database holds, as the current models read it."""

    rows: dict[str, list[dict[str, Any]]]  # every table's rows, by column name
    batches: dict[str, list[Any]]  # each person's decrypted batches, by subject
    request_states: dict[str, str]
    objection_states: dict[int, str]


def _table_rows(connection: Connection, table: Table) -> list[dict[str, Any]]:
    ordered = select(table).order_by(*table.primary_key.columns)
    return [dict(row._mapping) for row in connection.execute(ordered)]


def _read_everything() -> Snapshot:
    with get_engine().connect() as connection:
        rows = {table.name: _table_rows(connection, table) for table in TABLES}
    batches = {person.subject: list(read_own_batches(person))
               for person in db.scalars(select(Person))}
    return Snapshot(
        rows, batches,
        {request.reference: request.state.value for request in db.scalars(select(DeletionRequest))},
        {objection.id: objection.state.value for objection in db.scalars(select(Objection))})


@dataclass
class Databases:
    """Where this backend's databases are made."""

    backend: str
    folder: Path
    cluster: PostgresCluster | None
    made: list[str]

    def empty(self, name: str) -> str:
        if self.cluster is None:
            return f"sqlite:///{self.folder / name}.sqlite3"
        self.made.append(name)
        return self.cluster.create_database(name)

    def copy_of(self, template: str, name: str) -> str:
        if self.cluster is None:
            target = self.folder / f"{name}.sqlite3"
            shutil.copyfile(template.removeprefix("sqlite:///"), target)
            return f"sqlite:///{target}"
        self.made.append(name)
        return self.cluster.create_database(name, template="portal_template")


@pytest.fixture(scope="module")
def databases(backend: str, request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    cluster = request.getfixturevalue("postgres") if backend == "postgresql" else None
    made = Databases(backend, tmp_path_factory.mktemp(f"migrations-{backend}"), cluster, [])
    yield made
    for name in made.made:
        cluster.drop_database(name)


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One instance folder (the receipt and certificate signing key) for the module's apps."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("PORTAL_")]:
            patch.delenv(name)
        patch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path_factory.mktemp("instance")))
        yield


@pytest.fixture(scope="module")
def snapshot(databases: Databases, template_database: str, instance: None) -> Snapshot:
    """Build the representative database once per backend and read it all."""
    app = create_app(_settings_for(databases.copy_of(template_database, "portal_representative")))
    try:
        with app.app_context():
            build_representative_data()
        with app.app_context():
            found = _read_everything()
            # What each revision from 0010 on is checked against holds here to begin with.
            _check_training_snapshots()
    finally:
        get_engine(app).dispose()
    empty = [table for table, rows in found.rows.items() if not rows]
    assert not empty, f"build_representative_data() leaves these tables empty: {empty}"
    return found


# --- one earlier revision at a time ------------------------------------------------------------

@dataclass(frozen=True)
class Definition:
    """What decides which rows a table accepts: its columns, their nullability, its checks."""

    columns: frozenset[tuple[str, bool]]
    checks: frozenset[str]

    @property
    def names(self) -> set[str]:
        return {name for name, _nullable in self.columns}


def _definitions(connection: Connection) -> dict[str, Definition]:
    """Return the definition of every table the database has now, as it describes them."""
    inspector = inspect(connection)
    checks = inspector.get_multi_check_constraints()
    return {table: Definition(
        frozenset((column["name"], column["nullable"]) for column in columns),
        frozenset(" ".join(str(check["sqltext"]).split()) for check in checks.get(key, ())))
        for key, columns in inspector.get_multi_columns().items()
        if (table := key[1]) != HIDDEN}


def _as_then(table: Table, columns: set[str]) -> Table:
    """Return ``table`` with only the columns an earlier revision had (today's types)."""
    return Table(table.name, MetaData(),
                 *[column._copy() for column in table.columns if column.name in columns])


def _fill(connection: Connection, present: dict[str, Definition], snapshot: Snapshot,
          ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Write the snapshot's rows into every table this revision has; return what was written
    (each row as that revision's columns hold it) and how many rows each table refused."""
    written: dict[str, list[dict[str, Any]]] = {}
    refused: dict[str, int] = {}
    for table in TABLES:
        if table.name not in present:
            continue
        columns = present[table.name].names
        then = _as_then(table, columns)
        # Rows a migration put there itself (the chains' genesis heads) give way to ours.
        if connection.scalar(select(func.count()).select_from(then)):
            connection.execute(delete(then))
        rows = [{name: value for name, value in row.items() if name in columns}
                for row in snapshot.rows[table.name]]
        try:
            with connection.begin_nested():
                connection.execute(then.insert(), rows)
            written[table.name] = rows
            continue
        except IntegrityError:
            pass
        # Some row does not fit this revision: find which, one at a time.
        written[table.name] = []
        for values in rows:
            try:
                with connection.begin_nested():
                    connection.execute(then.insert().values(values))
            except IntegrityError:
                refused[table.name] = refused.get(table.name, 0) + 1
            else:
                written[table.name].append(values)
    if connection.dialect.name == "postgresql":
        # As a restore does: sequences continue after the rows written with their ids.
        # (setval and pg_get_serial_sequence give NULL, harmlessly, where there is none.)
        for table in written:
            key = list(TABLES_BY_NAME[table].primary_key.columns)
            if len(key) == 1 and isinstance(key[0].type, Integer):
                highest = connection.scalar(select(func.max(TABLES_BY_NAME[table].c[key[0].name])))
                connection.execute(text("SELECT setval(pg_get_serial_sequence(:table, :column), "
                                        ":highest)"),
                                   {"table": table, "column": key[0].name, "highest": highest})
    return written, refused


TABLES_BY_NAME = {table.name: table for table in TABLES}


def test_upgrading_from_every_earlier_schema_keeps_every_row(
        snapshot: Snapshot, databases: Databases, instance: None) -> None:
    # One test per backend, not one per revision: pytest-xdist would share revisions out to
    # both workers, and each would build the representative database again.
    assert EARLIER, "no earlier revision to upgrade from"
    failures: dict[str, str] = {}
    for revision in EARLIER:
        try:
            _upgrade_from(revision, snapshot, databases)
        except AssertionError as failure:
            failures[revision] = str(failure)
    assert not failures, "\n\n".join(f"From {revision}: {failure}"
                                       for revision, failure in failures.items())


def _upgrade_from(revision: str, snapshot: Snapshot, databases: Databases) -> None:
    """Give a database at ``revision`` the snapshot's rows, upgrade it, and check it all."""
    app = create_app(_settings_for(databases.empty(f"portal_from_{revision}")))
    try:
        upgrade_database(app, revision)
        engine = get_engine(app)
        with engine.begin() as connection:
            present = _definitions(connection)
            written, refused = _fill(connection, present, snapshot)
        assert written, "no table at this revision"
        upgrade_database(app, "head")

        with engine.connect() as connection:
            # A table may refuse today's rows only where its definition changed since.
            after = _definitions(connection)
            changed = {name for name, definition in present.items() if after[name] != definition}
            assert set(refused) <= changed, (refused, changed)
            for table, rows in written.items():
                assert rows, f"{table}: no representative row at {revision}"
                columns = set(rows[0])
                now = [{name: value for name, value in row.items() if name in columns}
                       for row in _table_rows(connection, TABLES_BY_NAME[table])]
                assert now == rows, f"{table} changed in the upgrade from {revision}"

        with app.app_context():
            _check_through_the_models(snapshot, written)
    finally:
        get_engine(app).dispose()


def _check_training_snapshots() -> None:
    """Each snapshot's key still opens (a retired one has none), its files decrypt, and its
    manifest still verifies: the upgrade kept what binds them (public id, wrapped key)."""
    for snapshot in db.scalars(select(TrainingSnapshot).order_by(TrainingSnapshot.number)):
        if snapshot.state is SnapshotState.RETIRED:
            assert not snapshot.wrapped_key and snapshot.certificate_jws, snapshot.number
            continue
        key = open_snapshot_key(snapshot)
        for part in snapshot.parts:
            plain = b"".join(files.read_decrypted(files.snapshot_file(snapshot, part.path), key,
                                                  aad=files.file_aad(snapshot, part.path)))
            # The part's size and digest are the plaintext's, as the client sees it.
            assert hashlib.sha256(plain).hexdigest() == part.sha256, part.path
            assert pq.read_metadata(io.BytesIO(plain)).num_rows == part.rows, part.path
        assert snapshot.manifest_jws is not None
        verdict = verify_manifest(snapshot.manifest_jws)
        assert verdict.valid, verdict.reason


def _check_through_the_models(snapshot: Snapshot,
                              written: dict[str, list[dict[str, Any]]]) -> None:
    # Every row of every model loads (enums, JSON, times), and nothing else is there.
    for model in MODELS:
        table = model.__table__.name
        loaded = db.scalars(select(model)).all()
        for entity in loaded:
            for column in model.__mapper__.column_attrs:
                getattr(entity, column.key)
        if table in written and table not in {"consent_chain_head", "audit_chain_head"}:
            assert len(loaded) == len(written[table]), table
    people = {person.subject: person for person in db.scalars(select(Person))}
    if "consent_event" in written:
        verdict = verify_ledger()
        assert verdict.ok and verdict.count == len(written["consent_event"]), verdict.describe()
        assert rebuild_state().identical
    if "audit_entry" in written:
        verdict = verify_log()
        assert verdict.ok and verdict.count == len(written["audit_entry"]), verdict.describe()
    if "collected_batch" in written:
        for subject, batches in snapshot.batches.items():
            assert list(read_own_batches(people[subject])) == batches, subject
        for key in db.scalars(select(DataKey)):
            assert key_still_opens(key.id) is (key.destroyed_at is None), key.id
    if "training_snapshot" in written:
        _check_training_snapshots()
    if "deletion_request" in written:
        assert {request.reference: request.state.value for request in
                db.scalars(select(DeletionRequest))} == snapshot.request_states
    if "objection" in written:
        states = {objection.id: objection.state.value
                  for objection in db.scalars(select(Objection))}
        assert states == {number: state for number, state in snapshot.objection_states.items()
                          if number in states}
    # And the portal writes on: one more consent change and audit entry join their chains.
    if "consent_event" in written:
        alex = people["alex"]
        notice = db.scalar(select(NoticeVersion).order_by(NoticeVersion.number.desc()))
        assert notice is not None
        grant_consent(alex, find_category("ai_transcripts"), notice_version=notice,
                      method=ConsentMethod.WEB, actor=alex)
        if "audit_entry" in written:
            record("my_data.download", action=AuditAction.DOWNLOAD, role=AuditRole.SUBJECT,
                   subjects=alex.id, actor=alex, detail={"categories": "pointer"})
        commit()
        ledger = verify_ledger()
        assert ledger.ok and ledger.count == len(written["consent_event"]) + 1
        if "audit_entry" in written:
            log = verify_log()
            assert log.ok and log.count == len(written["audit_entry"]) + 1
    assert db.scalar(select(func.count()).select_from(Person)) == len(written["person"])
