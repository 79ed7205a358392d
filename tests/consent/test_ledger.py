"""The ledger: hash chain, append-only triggers, tamper detection, rebuilding the derived state."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from flask import Flask
from sqlalchemy import delete, select, text
from sqlalchemy.exc import DBAPIError

from portal.auth.models import Person
from portal.catalog.models import Category, NoticeVersion
from portal.catalog.notices import current_notice
from portal.consent import chain, service
from portal.consent.models import (
    ActorRole,
    ConsentChainHead,
    ConsentEvent,
    ConsentMethod,
    ConsentState,
    ConsentStatus,
)
from portal.db import commit, db, drop_append_only_ddl, get_engine

# --- the chain, without a database -----------------------------------------------------------

def _fields(event_id: int, state: str = "ConsentGiven") -> dict[str, object]:
    return {"id": event_id, "receipt_id": f"00000000-0000-4000-8000-{event_id:012d}",
            "person_id": 7, "category_key": "keystrokes", "notice_version_id": 1,
            "state": state, "occurred_at": dt.datetime(2026, 3, 2, 9, 14, 7, 250000, dt.UTC),
            "actor_id": 7, "actor_role": "subject", "method": "web"}


def _chain(length: int) -> list[dict[str, object]]:
    rows, previous = [], chain.GENESIS
    for event_id in range(1, length + 1):
        row = _fields(event_id, "ConsentGiven" if event_id % 2 else "ConsentWithdrawn")
        leaf = chain.leaf_hash(row)
        previous = chain.chain_hash(previous, leaf)
        rows.append({**row, "leaf_hash": leaf.hex(), "chain_hash": previous.hex()})
    return rows


def test_leaf_and_chain_hash_follow_rfc6962_prefixes() -> None:
    fields = _fields(1)
    encoded = chain.canonical_json(fields)
    assert encoded == (
        b'{"actor_id":7,"actor_role":"subject","category_key":"keystrokes","id":1,'
        b'"method":"web","notice_version_id":1,"occurred_at":"2026-03-02T09:14:07.250000Z",'
        b'"person_id":7,"receipt_id":"00000000-0000-4000-8000-000000000001",'
        b'"state":"ConsentGiven","v":1}')
    leaf = chain.leaf_hash(fields)
    assert leaf == hashlib.sha256(b"\x00" + encoded).digest()
    assert chain.chain_hash(chain.GENESIS, leaf) == hashlib.sha256(
        b"\x01" + bytes(32) + leaf).digest()


def test_canonical_form_ignores_time_zone_but_not_values() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    fields = _fields(1)
    moved = {**fields, "occurred_at": fields["occurred_at"].astimezone(berlin)}  # type: ignore[union-attr]
    assert chain.leaf_hash(fields) == chain.leaf_hash(moved)
    assert chain.leaf_hash(fields) != chain.leaf_hash({**fields, "person_id": 8})
    naive = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive"):
        chain.leaf_hash({**fields, "occurred_at": naive})


def test_verify_chain_names_the_first_broken_link() -> None:
    rows = _chain(5)
    assert chain.verify_chain(rows, expected_length=5, expected_head=rows[-1]["chain_hash"]).ok

    edited = [dict(row) for row in rows]
    edited[2]["state"] = "ConsentWithdrawn"
    verdict = chain.verify_chain(edited)
    assert (verdict.ok, verdict.broken_id) == (False, 3)
    assert "leaf hash" in verdict.problem

    deleted = rows[:2] + rows[3:]
    verdict = chain.verify_chain(deleted)
    assert (verdict.broken_id, "missing" in verdict.problem) == (4, True)

    swapped = [dict(row) for row in rows]
    swapped[1]["id"], swapped[2]["id"] = 3, 2
    swapped[1], swapped[2] = swapped[2], swapped[1]
    verdict = chain.verify_chain(swapped)
    assert verdict.broken_id == 2 and "leaf hash" in verdict.problem

    truncated = chain.verify_chain(rows[:4], expected_length=5,
                                   expected_head=rows[-1]["chain_hash"])
    assert not truncated.ok and "records 5 events" in truncated.problem


# --- the ledger in the database --------------------------------------------------------------

def _toggle(app: Flask, times: int, *, keys: tuple[str, ...] = ("keystrokes", "clicks")) -> None:
    """Give and withdraw consent for Alex and Bea, ``times`` changes each per category."""
    with app.app_context():
        notice = current_notice()
        assert notice is not None
        people = []
        for name in ("alex", "bea"):
            subject = Person(issuer="https://idp.test", subject=f"sub-{name}", name=name)
            db.add(subject)
            people.append(subject)
        db.flush()
        for round_number in range(times):
            for subject in people:
                for key in keys:
                    category = db.get(Category, key)
                    assert category is not None
                    if round_number % 2 == 0:
                        service.grant_consent(subject, category, notice_version=notice,
                                              method=ConsentMethod.WEB, actor=subject)
                    else:
                        service.withdraw_consent(subject, category, method=ConsentMethod.WEB,
                                                 actor=subject)
        commit()


def _drop_triggers(app: Flask) -> None:
    engine = get_engine(app)
    with engine.begin() as connection:
        for statement in drop_append_only_ddl(engine.dialect.name, "consent_event"):
            connection.execute(text(statement))


def _verify(app: Flask) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    return result.exit_code, result.output


def test_verify_ok_on_an_intact_ledger(app: Flask, catalog: int) -> None:
    assert _verify(app) == (0, "OK: 0 events, chain head " + "0" * 64 + "\n")
    _toggle(app, 3)
    code, output = _verify(app)
    assert code == 0 and output.startswith("OK: 12 events")


def test_the_database_refuses_update_and_delete(app: Flask, catalog: int) -> None:
    _toggle(app, 1)
    engine = get_engine(app)
    for statement in ("UPDATE consent_event SET state = 'ConsentWithdrawn' WHERE id = 1",
                      "DELETE FROM consent_event WHERE id = 1",
                      "DELETE FROM consent_event"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("TRUNCATE consent_event CASCADE"))
    assert _verify(app)[0] == 0


def test_edited_event_is_detected(app: Flask, catalog: int) -> None:
    _toggle(app, 2)
    _drop_triggers(app)
    with get_engine(app).begin() as connection:
        connection.execute(text(
            "UPDATE consent_event SET state = 'ConsentGiven' WHERE id = 6"))
    code, output = _verify(app)
    assert code == 1
    assert output == ("BROKEN at event 6: its leaf hash does not match its fields (the event "
                      "was changed)\n")


def test_edited_time_is_detected(app: Flask, catalog: int) -> None:
    _toggle(app, 2)
    _drop_triggers(app)
    with app.app_context():
        event = db.get(ConsentEvent, 3)
        assert event is not None
        event.occurred_at = event.occurred_at - dt.timedelta(days=30)
        commit()
    assert _verify(app) == (1, "BROKEN at event 3: its leaf hash does not match its fields "
                               "(the event was changed)\n")


def test_deleted_event_is_detected(app: Flask, catalog: int) -> None:
    _toggle(app, 2)
    _drop_triggers(app)
    with app.app_context():
        db.execute(delete(ConsentStatus))
        db.execute(delete(ConsentEvent).where(ConsentEvent.id == 4))
        commit()
    code, output = _verify(app)
    assert code == 1
    assert output.startswith("BROKEN at event 5: expected event 4 here, found event 5: an "
                             "event is missing (deleted)")


def test_deleted_last_event_is_detected_by_the_head(app: Flask, catalog: int) -> None:
    _toggle(app, 2)
    _drop_triggers(app)
    with app.app_context():
        db.execute(delete(ConsentStatus))
        db.execute(delete(ConsentEvent).where(ConsentEvent.id == 8))
        commit()
    assert _verify(app) == (1, "BROKEN at head: the chain head records 8 events but the "
                               "ledger holds 7\n")


def test_reordered_events_are_detected(app: Flask, catalog: int) -> None:
    _toggle(app, 2)
    _drop_triggers(app)
    with app.app_context():
        db.execute(delete(ConsentStatus))
        # Swap the positions of events 2 and 3 through a free id.
        db.execute(text("UPDATE consent_event SET id = 1000 WHERE id = 2"))
        db.execute(text("UPDATE consent_event SET id = 2 WHERE id = 3"))
        db.execute(text("UPDATE consent_event SET id = 3 WHERE id = 1000"))
        commit()
    code, output = _verify(app)
    assert code == 1
    assert output.startswith("BROKEN at event 2: its leaf hash does not match")


def test_reordered_events_with_recomputed_leaves_break_the_chain(app: Flask,
                                                                 catalog: int) -> None:
    """A careful forger re-hashes the swapped leaves: the chain still gives them away."""
    _toggle(app, 2)
    _drop_triggers(app)
    with app.app_context():
        db.execute(delete(ConsentStatus))
        first, second = db.get(ConsentEvent, 2), db.get(ConsentEvent, 3)
        assert first is not None and second is not None
        values = {event.id: (event.receipt_id, event.person_id, event.category_key,
                             str(event.state), event.occurred_at) for event in (first, second)}
        db.expunge_all()
        for target, source in ((2, 3), (3, 2)):
            receipt_id, person_id, key, state, occurred = values[source]
            event = db.get(ConsentEvent, target)
            assert event is not None
            event.receipt_id = f"{receipt_id[:-1]}{'x' if target == 2 else 'y'}"
            event.person_id, event.category_key = person_id, key
            event.state, event.occurred_at = ConsentState(state), occurred
            db.flush()
            event.leaf_hash = chain.leaf_hash(event.leaf_fields()).hex()
        commit()
    assert _verify(app) == (1, "BROKEN at event 2: its chain hash does not follow from the "
                               "event before it (an event was inserted, removed or "
                               "reordered)\n")


def _forge(app: Flask, event_id: int, *, rehash_head: bool) -> None:
    """Insert an event that never happened, with hashes computed as the portal would."""
    with app.app_context():
        head = db.get(ConsentChainHead, 1)
        assert head is not None
        previous = db.get(ConsentEvent, event_id - 1)
        forged = ConsentEvent(
            id=event_id, receipt_id="11111111-2222-4333-8444-555555555555",
            person_id=db.scalar(select(Person.id).limit(1)), category_key="keystrokes",
            notice_version_id=db.scalar(select(NoticeVersion.id).limit(1)),
            state=ConsentState.GIVEN, occurred_at=dt.datetime.now(dt.UTC),
            actor_id=None, actor_role=ActorRole.SYSTEM, method=ConsentMethod.IMPORT)
        leaf = chain.leaf_hash(forged.leaf_fields())
        forged.leaf_hash = leaf.hex()
        base = bytes.fromhex(previous.chain_hash) if previous else chain.GENESIS
        forged.chain_hash = chain.chain_hash(base, leaf).hex()
        db.add(forged)
        if rehash_head:
            head.length, head.chain_hash = event_id, forged.chain_hash
        commit()


def test_forged_event_at_the_end_is_detected_by_the_head(app: Flask, catalog: int) -> None:
    _toggle(app, 2)
    _forge(app, 9, rehash_head=False)
    assert _verify(app) == (1, "BROKEN at head: the chain head records 8 events but the ledger "
                               "holds 9\n")


def test_forged_event_in_the_middle_is_detected(app: Flask, catalog: int) -> None:
    _toggle(app, 2)
    _drop_triggers(app)
    with app.app_context():
        db.execute(delete(ConsentStatus))
        # Make room at position 5 by moving the later events up, as a forger must.
        for event_id in range(8, 4, -1):
            db.execute(text("UPDATE consent_event SET id = :new WHERE id = :old"),
                       {"new": event_id + 1, "old": event_id})
        commit()
    _forge(app, 5, rehash_head=True)
    code, output = _verify(app)
    assert code == 1
    assert output.startswith("BROKEN at event 6: its leaf hash does not match")


def test_events_and_state_are_saved_or_undone_together(app: Flask, catalog: int) -> None:
    _toggle(app, 1)
    with app.app_context():
        alex = db.scalar(select(Person).where(Person.subject == "sub-alex"))
        category = db.get(Category, "keystrokes")
        assert alex is not None and category is not None
        service.withdraw_consent(alex, category, method=ConsentMethod.WEB, actor=alex)
        db.rollback()
    with app.app_context():
        assert db.scalar(select(ConsentChainHead.length)) == 4
        assert len(db.scalars(select(ConsentEvent)).all()) == 4
        alex = db.scalar(select(Person).where(Person.subject == "sub-alex"))
        assert alex is not None
        assert service.current_states(alex.id)["keystrokes"].state is ConsentState.GIVEN


def test_rebuild_state_reports_identical_then_repairs_differences(app: Flask,
                                                                  catalog: int) -> None:
    _toggle(app, 3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consent", "rebuild-state"])
    assert (result.exit_code, result.output) == (
        0, "Identical: the current state (4 rows) already matched the ledger.\n")

    with app.app_context():
        before = {(s.person_id, s.category_key): (s.state, s.event_id, s.since)
                  for s in db.scalars(select(ConsentStatus))}
        statuses = db.scalars(select(ConsentStatus).order_by(ConsentStatus.person_id,
                                                             ConsentStatus.category_key)).all()
        statuses[0].state = ConsentState.WITHDRAWN
        db.delete(statuses[1])
        commit()
    result = runner.invoke(args=["consent", "rebuild-state"])
    assert result.exit_code == 1
    assert "It differed: 1 missing, 0 without any event, 1 different." in result.output
    with app.app_context():
        after = {(s.person_id, s.category_key): (s.state, s.event_id, s.since)
                 for s in db.scalars(select(ConsentStatus))}
    assert after == before
    assert runner.invoke(args=["consent", "rebuild-state"]).exit_code == 0


def test_ledger_rows_hold_no_content(app: Flask, catalog: int) -> None:
    _toggle(app, 1)
    with app.app_context():
        row = db.execute(select(ConsentEvent.__table__)).mappings().first()
        assert row is not None
        assert set(row) == {"id", "receipt_id", "person_id", "category_key",
                            "notice_version_id", "state", "occurred_at", "actor_id",
                            "actor_role", "method", "leaf_hash", "chain_hash"}
        assert json.dumps(chain.canonical_fields(dict(row)))
