"""The audit log: entries written at commit, hash-chained, append-only, checked, fail-closed."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import delete, insert, select, text, update

from portal.audit.models import AuditAction, AuditEntry, AuditRole, AuditSubject
from portal.audit.service import access_log, entries_concerning, record
from portal.auth.models import Person
from portal.db import commit, db, drop_append_only_ddl, get_engine


def _people(app: Flask, *names: str) -> list[int]:
    with app.app_context():
        people = [Person(issuer="https://idp.example", subject=f"sub-{name}", name=name)
                  for name in names]
        db.add_all(people)
        commit()
        return [person.id for person in people]


def _person(app: Flask, person_id: int) -> Person:
    with app.app_context():
        found = db.get(Person, person_id)
        assert found is not None
        return found


def _verify(app: Flask) -> tuple[int, str]:
    result: Result = app.test_cli_runner().invoke(args=["audit", "verify"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _unlock(app: Flask) -> None:
    """Drop the append-only triggers, as an attacker with the database owner's login could."""
    engine = get_engine(app)
    with engine.begin() as connection:
        for table in ("audit_entry", "audit_subject"):
            for statement in drop_append_only_ddl(engine.dialect.name, table):
                connection.execute(text(statement))


@pytest.fixture
def filled(app: Flask) -> tuple[int, int, int]:
    """Three people; HR exported all three, Alex viewed their own data, the DPO opened Bea's."""
    alex, bea, chris = _people(app, "Alex", "Bea", "Chris")
    with app.app_context():
        record("hr.export", action=AuditAction.EXPORT, role=AuditRole.HR,
               subjects=[alex, bea, chris], actor=_person(app, chris), purpose="Annual audit",
               detail={"format": "csv", "rows": 21})
        record("my_data.view", action=AuditAction.READ, role=AuditRole.SUBJECT, subjects=alex,
               actor=_person(app, alex))
        commit()
    with app.app_context():
        record("requests.view", action=AuditAction.READ, role=AuditRole.DPO, subjects=bea,
               actor=_person(app, chris), purpose="Deletion request R-1")
        commit()
    return alex, bea, chris


def test_entries_are_written_at_commit_and_chained(app: Flask,
                                                    filled: tuple[int, int, int]) -> None:
    code, output = _verify(app)
    assert output.startswith("OK: 3 entries, chain head ") and code == 0
    with app.app_context():
        entries = list(db.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        assert [(e.id, e.what, e.subject_count) for e in entries] == [
            (1, "hr.export", 3), (2, "my_data.view", 1), (3, "requests.view", 1)]
        assert entries[0].actor_name == "Chris"
        assert entries[0].detail == '{"format":"csv","rows":21}'


def test_a_rolled_back_unit_of_work_writes_nothing(app: Flask) -> None:
    (alex,) = _people(app, "Alex")
    with app.app_context():
        record("my_data.view", action=AuditAction.READ, role=AuditRole.SUBJECT, subjects=alex,
               actor=_person(app, alex))
        db.rollback()
        commit()
        assert db.scalar(select(AuditEntry.id)) is None


def test_the_access_log_shows_others_newest_first(app: Flask,
                                                  filled: tuple[int, int, int]) -> None:
    alex, bea, _chris = filled
    with app.app_context():
        mine = access_log(alex)
        assert [entry.what for entry in mine.entries] == ["hr.export"]
        assert [entry.what for entry in access_log(bea).entries] == ["requests.view", "hr.export"]
        assert [e.what for e in entries_concerning(alex)] == ["hr.export", "my_data.view"]


def test_the_access_log_is_paginated(app: Flask) -> None:
    alex, chris = _people(app, "Alex", "Chris")
    with app.app_context():
        for number in range(30):
            record("hr.view", action=AuditAction.READ, role=AuditRole.HR, subjects=alex,
                   actor=_person(app, chris), purpose=f"check {number}")
        commit()
        first, last = access_log(alex, per_page=25), access_log(alex, page=2, per_page=25)
        assert (first.total, first.pages, len(first.entries), len(last.entries)) == (30, 2, 25, 5)
        assert first.entries[0].purpose == "check 29" and last.entries[-1].purpose == "check 0"
        assert access_log(alex, page=99).page == 2


@pytest.mark.parametrize(("what", "with_actor", "detail"), [
    ("my_data.peek", True, {}), ("hr.view", False, {}), ("hr.view", True, {"events": [1, 2]})],
    ids=["unknown key", "no actor", "content in detail"])
def test_a_wrong_entry_is_refused_before_anything_is_read(app: Flask, what: str,
                                                          with_actor: bool,
                                                          detail: dict[str, Any]) -> None:
    (alex,) = _people(app, "Alex")
    actor = _person(app, alex) if with_actor else None
    with app.app_context():
        with pytest.raises((ValueError, TypeError)):
            record(what, action=AuditAction.READ, role=AuditRole.HR, subjects=alex, actor=actor,
                   detail=detail)
        assert db.info.get("portal.audit.pending") is None


def test_the_database_refuses_to_change_the_log(app: Flask,
                                                filled: tuple[int, int, int]) -> None:
    with get_engine(app).connect() as connection:
        for statement in (update(AuditEntry).values(purpose="nothing to see"),
                          delete(AuditEntry), delete(AuditSubject)):
            with pytest.raises(Exception, match="append-only"):
                connection.execute(statement)
            connection.rollback()


def test_an_edited_entry_is_detected(app: Flask, filled: tuple[int, int, int]) -> None:
    _unlock(app)
    with get_engine(app).begin() as connection:
        connection.execute(update(AuditEntry).where(AuditEntry.id == 2)
                           .values(actor_name="Someone else"))
    assert _verify(app) == (1, "BROKEN at entry 2: its leaf hash does not match its fields "
                               "(the entry was changed)\n")


def test_a_removed_subject_is_detected(app: Flask, filled: tuple[int, int, int]) -> None:
    alex, _bea, _chris = filled
    _unlock(app)
    with get_engine(app).begin() as connection:
        connection.execute(delete(AuditSubject).where(AuditSubject.entry_id == 1,
                                                      AuditSubject.person_id == alex))
    assert _verify(app) == (1, "BROKEN at entry 1: the people it concerns were changed (its "
                               "subject rows do not match its hash)\n")


def test_an_added_subject_is_detected(app: Flask, filled: tuple[int, int, int]) -> None:
    alex, _bea, _chris = filled
    _unlock(app)
    with get_engine(app).begin() as connection:
        connection.execute(insert(AuditSubject).values(entry_id=3, person_id=alex))
    code, output = _verify(app)
    assert code == 1 and output.startswith("BROKEN at entry 3: the people it concerns")


def test_a_deleted_entry_is_detected(app: Flask, filled: tuple[int, int, int]) -> None:
    _unlock(app)
    with get_engine(app).begin() as connection:
        connection.execute(delete(AuditSubject).where(AuditSubject.entry_id == 3))
        connection.execute(delete(AuditEntry).where(AuditEntry.id == 3))
    assert _verify(app) == (1, "BROKEN at head: the chain head records 3 entries but the audit "
                               "log holds 2\n")


def test_a_failed_audit_write_fails_the_commit(app: Flask) -> None:
    """Audit writes fail closed: a unit of work whose entry cannot be written commits nothing."""
    (alex,) = _people(app, "Alex")
    engine = get_engine(app)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("CREATE TRIGGER audit_down BEFORE INSERT ON audit_entry "
                                    "BEGIN SELECT RAISE(ABORT, 'audit store down'); END"))
        else:
            connection.execute(text("ALTER TABLE audit_entry ADD CONSTRAINT audit_down "
                                    "CHECK (id < 0) NOT VALID"))
    with app.app_context():
        db.add(Person(issuer="https://idp.example", subject="sub-new", name="New"))
        record("my_data.view", action=AuditAction.READ, role=AuditRole.SUBJECT, subjects=alex,
               actor=_person(app, alex))
        with pytest.raises(Exception, match=r"audit store down|audit_down"):
            commit()
    with app.app_context():
        assert db.scalar(select(Person.id).where(Person.subject == "sub-new")) is None
