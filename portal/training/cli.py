"""The ``portal training`` commands: clients, the snapshot worker, manifests, retirement."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext


@click.group("training")
def training_group() -> None:
    """Training clients, dataset snapshots and the models trained on them."""


@training_group.group("clients")
def clients_group() -> None:
    """Register, revoke and list the training pipelines that may ask for snapshots."""


# --- training clients (portal.training.service) ----------------------------------------------




# --- building snapshots (portal.training.build) ----------------------------------------------




# --- manifests (portal.training.manifest) -----------------------------------------------------

@training_group.command("verify")
@click.argument("manifest_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--files", "folder", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The folder the snapshot's files were downloaded to: check their sizes and "
                   "SHA-256 against the manifest.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JWK Set or JWK with the public key (e.g. a saved "
                   "/.well-known/jwks.json). Default: this installation's own key.")
@with_appcontext
def verify_command(manifest_file: Path, folder: Path | None, key_file: Path | None) -> None:
    """Check a snapshot's signed manifest offline, and with --files the downloaded files."""
    from flask import current_app

    from portal.consent.receipts import key_path, load_keys, public_jwks
    from portal.training.manifest import verify_files, verify_manifest

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        if key_file is not None:
            keys = load_keys(json.loads(key_file.read_text()))
        else:
            if not key_path(app).exists():
                click.echo("INVALID: this installation has no receipt key; pass --key")
                sys.exit(2)
            keys = load_keys(public_jwks(app))
    except (ValueError, KeyError) as exc:
        click.echo(f"INVALID: the key cannot be read ({exc})")
        sys.exit(2)
    check = verify_manifest(manifest_file.read_text(errors="replace"), keys)
    if check.valid and folder is not None:
        problems = verify_files(check.claims, folder)
        if problems:
            click.echo("INVALID: the manifest is valid, but the files are not the ones it "
                       "lists:")
            for problem in problems:
                click.echo(f"  {problem}")
            sys.exit(1)
        check.summary += f"; all {len(check.claims['files'])} files match"
    click.echo(check.describe())
    if not check.valid:
        sys.exit(1)





# --- retiring snapshots (portal.training.lineage) ---------------------------------------------

@training_group.command("retire")
@click.argument("snapshot")
@click.option("--by", "by", default="", help="Who retires it, for the certificate and the "
              "access log (default: the command).")
@with_appcontext
def retire(snapshot: str, by: str) -> None:
    """Retire SNAPSHOT (its number or public id): destroy its key and files, print the certificate.

    Every copy of its files becomes unreadable; each person it held sees the retirement in
    their access log; its client is told.
    """
    from portal.audit.models import AuditRole
    from portal.db import commit
    from portal.training.lineage import RetirementRefused, find_snapshot, retire_snapshot

    found = find_snapshot(snapshot)
    if found is None:
        click.echo(f"No training dataset {snapshot!r} (give its number or its public id); "
                   "nothing was changed.", err=True)
        sys.exit(2)
    try:
        certificate = retire_snapshot(found, by=by.strip() or "portal training retire",
                                      role=AuditRole.OPERATOR)
    except RetirementRefused as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    commit()
    click.echo(f"Retired training dataset {found.number} ({found.public_id}): its key was "
               "destroyed and its files removed. Certificate of retirement (check it with "
               "`portal receipts verify`):", err=True)
    click.echo(certificate)


@training_group.command("retire-expired")
@click.option("--dry-run", is_flag=True, help="Say what would be retired; retire nothing.")
@with_appcontext
def retire_expired(dry_run: bool) -> None:
    """Retire every snapshot older than TRAINING_SNAPSHOT_MAX_AGE_DAYS (run it daily)."""
    from flask import current_app

    from portal.db import commit
    from portal.training.lineage import expired_snapshots, retire_expired_snapshots

    days = int(current_app.config.get("TRAINING_SNAPSHOT_MAX_AGE_DAYS") or 0)
    if days <= 0:
        click.echo("TRAINING_SNAPSHOT_MAX_AGE_DAYS is 0: snapshots are never retired by age.")
        return
    if dry_run:
        numbers = [found.number for found in expired_snapshots()]
    else:
        numbers = retire_expired_snapshots()
        commit()
    if not numbers:
        click.echo(f"No training dataset is older than {days} days.")
        return
    verb = "Would retire" if dry_run else "Retired"
    click.echo(f"{verb} {len(numbers)} training dataset{'s' if len(numbers) != 1 else ''} "
               f"older than {days} days: {', '.join(str(number) for number in numbers)}.")
