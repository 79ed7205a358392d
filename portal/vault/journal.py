"""The shred journal: destroyed data keys, kept outside the database so a restore cannot undo them.

A database backup taken before a deletion still holds the person's data key; restoring it
would bring their data back. Every destruction of a data key is therefore also appended to a
file (``PORTAL_SHRED_JOURNAL``, one JSON object per line) on storage that database backups do
not roll back, *after* the database commit and fsync'd, and ``portal vault replay-shreds``
destroys again each listed key that a restored database brought back.

A line is written only once the destruction is committed: a line for a key that is still live
would make a replay destroy data nobody asked to delete. The restore took the deletion's audit
entries back with it, so the replay writes one again for each key it destroys.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from flask import current_app, has_app_context
from flask.cli import with_appcontext
from sqlalchemy import delete, func, select, update

from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record
from portal.db import after_commit, commit, db, utcnow
from portal.vault.models import CollectedBatch, DataKey

log = logging.getLogger(__name__)
JOURNAL_FILE = "shred-journal.jsonl"
#: How the replay names itself in the audit log (as ``portal vault purge-expired`` does).
REPLAY_ACTOR = "portal vault replay-shreds"
#: One append at a time per process; O_APPEND keeps whole lines apart between processes.
_append_lock = threading.Lock()


def journal_path() -> Path:
    """Return the configured journal file (default: ``shred-journal.jsonl`` in the instance)."""
    configured = str(current_app.config.get("SHRED_JOURNAL") or "")
    return Path(configured) if configured else Path(current_app.instance_path) / JOURNAL_FILE


def note_destroyed_keys(person_id: int, category_key: str, key_ids: list[str], *,
                        reference: str | None) -> None:
    """Remember the person's keys of a category, about to be destroyed, for the journal.

    Call it just before destroying them, in the same unit of work; the lines are written when
    that unit commits and forgotten if it rolls back. ``reference`` names the deletion request
    being carried out, if any, so the line says why.
    """
    if not has_app_context() or not key_ids:
        return
    destroyed_at = _iso(utcnow())
    entries = [{"key_id": key_id, "person_id": person_id, "category": category_key,
                "destroyed_at": destroyed_at, "request": reference} for key_id in key_ids]
    # Right after the commit and before a request answers: once someone is told the data is
    # gone, a restore must not be able to bring it back.
    after_commit(functools.partial(_write, journal_path(), entries))


def append_entries(path: Path, entries: list[dict[str, Any]]) -> None:
    """Append one JSON line per entry to the journal and fsync it (the folder too when new)."""
    data = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries).encode()
    created = not path.exists()
    if created:
        # The instance folder may not exist yet (a fresh install whose first act is a deletion).
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _append_lock:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    if created:
        # The new file's name is durable only once its folder is.
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    try:
        append_entries(path, entries)
    except OSError:
        # The keys are destroyed (committed); only their record outside the database is
        # missing. Say exactly what to append, so an operator can restore it by hand.
        log.exception("shred journal %s could not be written; append these lines to it: %s",
                      path, json.dumps(entries, sort_keys=True))


# --- replay ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class JournalEntry:
    """One destroyed key, as the journal remembers it."""

    key_id: str
    person_id: int
    category: str
    destroyed_at: dt.datetime
    request: str | None


@dataclass(frozen=True)
class ReplayedKey:
    """What the replay did with one journalled key."""

    entry: JournalEntry
    #: "destroyed again", "already destroyed" or "not in the database".
    outcome: str
    batches_deleted: int = 0


def read_journal(path: Path) -> tuple[list[JournalEntry], int]:
    """Read the journal; return its entries and how many lines could not be read.

    A line cut short by a crash while it was appended is skipped, not fatal: the key it
    names was committed as destroyed only if its line was written whole.
    """
    entries, unreadable = [], 0
    for line in _lines(path):
        try:
            raw = json.loads(line)
            entries.append(JournalEntry(
                key_id=str(raw["key_id"]), person_id=int(raw["person_id"]),
                category=str(raw["category"]),
                destroyed_at=dt.datetime.fromisoformat(raw["destroyed_at"]),
                request=raw.get("request")))
        except (ValueError, KeyError, TypeError):
            unreadable += 1
    return entries, unreadable


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                yield line


def replay_shreds(entries: list[JournalEntry]) -> list[ReplayedKey]:
    """Destroy again every journalled key that is live in this database, and its batches.

    Run it with the portal stopped, after a restore: the keys are destroyed as a deletion
    does (material emptied, destruction time kept from the journal) and the batches they
    sealed, unreadable from now on, are deleted. Each key destroyed again gets the audit
    entry of a deletion ("requests.execute", by the command), in the person's access log;
    keys already destroyed get none. Flushes only; the caller commits.
    """
    results = []
    for entry in entries:
        key = db.get(DataKey, entry.key_id, populate_existing=True)
        if key is None:
            results.append(ReplayedKey(entry, "not in the database"))
            continue
        if key.destroyed_at is not None:
            results.append(ReplayedKey(entry, "already destroyed"))
            continue
        batches = db.scalar(select(func.count()).select_from(CollectedBatch)
                            .where(CollectedBatch.data_key_id == entry.key_id)) or 0
        # The same entry as the deletion that destroyed it first: the restore took that one
        # back, and the person's access log must still show their data being deleted.
        record("requests.execute", action=AuditAction.DELETE, role=AuditRole.OPERATOR,
               subjects=key.person_id, actor_name=REPLAY_ACTOR,
               detail={"request": entry.request, "category": key.category_key,
                       "batches": int(batches), "key": entry.key_id,
                       "first_destroyed_at": _iso(entry.destroyed_at)})
        db.execute(update(DataKey).where(DataKey.id == entry.key_id,
                                         DataKey.destroyed_at.is_(None))
                   .values(wrapped_key=b"", destroyed_at=entry.destroyed_at))
        db.execute(delete(CollectedBatch).where(CollectedBatch.data_key_id == entry.key_id))
        db.flush()
        results.append(ReplayedKey(entry, "destroyed again", int(batches)))
    return results


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@click.command("replay-shreds")
@click.argument("journal", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def replay_shreds_command(journal: Path) -> None:
    """Destroy again the data keys in a shred JOURNAL that a restored database brought back.

    Part of the restore procedure: restore the database, run `portal db upgrade`, then this
    with the journal (PORTAL_SHRED_JOURNAL; of every host, concatenated), before the portal
    starts. Each key destroyed again is written to the audit log as a deletion, in its
    owner's access log; keys already destroyed are left alone, so running it again
    changes nothing.
    """
    entries, unreadable = read_journal(journal)
    results = replay_shreds(entries)
    commit()
    for result in results:
        if result.outcome == "destroyed again":
            entry = result.entry
            why = f", request {entry.request}" if entry.request else ""
            click.echo(f"Destroyed again key {entry.key_id} (person {entry.person_id}, "
                       f"{entry.category}{why}); deleted {result.batches_deleted} batches "
                       "it sealed.")
    again = sum(result.outcome == "destroyed again" for result in results)
    already = sum(result.outcome == "already destroyed" for result in results)
    missing = sum(result.outcome == "not in the database" for result in results)
    click.echo(f"{len(entries)} keys in the journal: {again} destroyed again, {already} "
               f"already destroyed, {missing} not in this database.")
    if unreadable:
        click.echo(f"{unreadable} lines of the journal could not be read and were skipped "
                   "(a line cut short by a crash while it was written is expected at the "
                   "end).", err=True)
