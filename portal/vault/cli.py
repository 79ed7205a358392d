"""Commands: ``portal vault rotate-master-key`` and ``portal vault purge-expired``."""

from __future__ import annotations

import sys
from typing import TextIO

import click
from flask.cli import with_appcontext

from portal.db import commit
from portal.vault.journal import replay_shreds_command


@click.group("vault")
def vault_group() -> None:
    """Look after the encrypted vault of collected data."""


vault_group.add_command(replay_shreds_command)


@vault_group.command("rotate-master-key")
@click.option("--new-key-file", required=True, type=click.File("r"),
              help="File holding the new master key (base64 of 32 random bytes); - for "
                   "standard input.")
@with_appcontext
def rotate_master_key(new_key_file: TextIO) -> None:
    """Re-wrap every data key under a new master key, without touching any ciphertext.

    Procedure: stop the portal's processes (or at least the collector API), run this with the
    current key still configured, then set PORTAL_MASTER_KEY to the new key and start them
    again. Keys already under the new key are skipped, so running it again is safe.
    """
    from portal.vault.crypto import MasterKey
    from portal.vault.errors import VaultError
    from portal.vault.keys import rotate_master_key as rotate

    try:
        new = MasterKey.from_base64(new_key_file.read())
    except ValueError as exc:
        click.echo(f"The new key cannot be used: {exc}.", err=True)
        sys.exit(2)
    try:
        report = rotate(new)
    except VaultError as exc:
        click.echo(f"Nothing was changed: {exc}.", err=True)
        sys.exit(1)
    commit()
    already = "was" if report.already_new == 1 else "were"
    destroyed = "key has" if report.destroyed == 1 else "keys have"
    click.echo(f"Re-wrapped {_count(report.rewrapped, 'data key', 'data keys')} from master key "
               f"{report.old_key_id} to {report.new_key_id}; {report.already_new} {already} "
               f"already under the new key; {report.destroyed} destroyed {destroyed} nothing "
               "left to wrap. No ciphertext was touched.")
    for kind, count in sorted(report.others.items()):
        click.echo(f"Also re-wrapped, {kind}: {count}.")
    click.echo("Now set PORTAL_MASTER_KEY to the new key and restart every portal process. "
               "Destroy the old key only when no backup you may restore still needs it: a "
               "backup made before this rotation opens only with the old key.")


@vault_group.command("purge-expired")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@with_appcontext
def purge_expired(dry_run: bool) -> None:
    """Remove the batches older than their category's retention period and say what went."""
    from portal.audit.models import AuditAction, AuditRole
    from portal.audit.service import record
    from portal.vault.erasure import purge_expired as purge

    report = purge(dry_run=dry_run)
    if not dry_run:
        for part in report:
            record("vault.purge_expired", action=AuditAction.DELETE, role=AuditRole.OPERATOR,
                   subjects=part.person_ids, actor_name="portal vault purge-expired",
                   detail={"category": part.category_key, "batches": part.batches,
                           "events": part.events, "retention_days": part.retention_days})
        commit()
    verb = "Would remove" if dry_run else "Removed"
    if not report:
        click.echo("Nothing is past its retention period.")
        return
    for part in report:
        click.echo(f"{verb} {_count(part.batches, 'batch', 'batches')} "
                   f"({_count(part.events, 'event', 'events')}) of {part.category_key} kept "
                   f"{part.retention_days} days: collected {part.oldest:%Y-%m-%d} to "
                   f"{part.newest:%Y-%m-%d} (before {part.cutoff:%Y-%m-%d %H:%M} UTC).")
    total = sum(part.batches for part in report)
    click.echo(f"{verb} {_count(total, 'batch', 'batches')} in all.")


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
