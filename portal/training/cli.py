"""The ``portal training`` commands: clients, the snapshot worker, manifests, retirement."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from flask.cli import with_appcontext

from portal.consent.cli import key_option, verification_keys
from portal.db import commit
from portal.training.models import TrainingScope


@click.group("training")
def training_group() -> None:
    """Training clients, dataset snapshots and the models trained on them."""


@training_group.group("clients")
def clients_group() -> None:
    """Register, revoke and list the training pipelines that may ask for snapshots."""


# --- training clients (portal.training.service) ----------------------------------------------

@clients_group.command("create")
@click.argument("name")
@click.option("--purpose", "purposes", multiple=True, required=True, metavar="KEY",
              help="A training purpose of the catalog the pipeline trains for (repeat for "
                   "each), e.g. code_and_text_completion.")
@click.option("--scope", "scopes", multiple=True,
              type=click.Choice([scope.value for scope in TrainingScope]),
              help="What its token may do (repeat for each; default: all of them).")
@click.option("--webhook", "webhook_url", default="",
              help="URL the portal posts signed notices of outdated snapshots to (optional).")
@with_appcontext
def create_client_command(name: str, purposes: tuple[str, ...], scopes: tuple[str, ...],
                          webhook_url: str) -> None:
    """Register a training client and print its token once (only its hash is stored)."""
    from portal.training.service import ClientRefused, create_client, open_webhook_secret

    try:
        client, token = create_client(
            name, purposes=purposes,
            scopes=scopes or [scope.value for scope in TrainingScope], webhook_url=webhook_url)
    except ClientRefused as exc:
        for field, message in exc.problems.items():
            click.echo(f"Not registered: {field} {message}.", err=True)
        sys.exit(2)
    commit()
    click.echo(f"Registered training client {client.name!r} for the purposes: "
               f"{', '.join(client.purposes)} (scopes: {', '.join(client.scopes)}).")
    click.echo(f"Token (shown only now; store it in the pipeline's secret store):\n  {token}")
    if client.webhook_url:
        click.echo(f"Webhook secret for signed notices to {client.webhook_url} (shown only "
                   f"now):\n  {open_webhook_secret(client)}")


@clients_group.command("revoke")
@click.argument("name")
@with_appcontext
def revoke_client_command(name: str) -> None:
    """Revoke a training client's token at once; its next request gets 401."""
    from portal.training.service import find_client, revoke_client

    client = find_client(name)
    if client is None:
        click.echo(f"No training client is named {name!r}.", err=True)
        sys.exit(1)
    if not revoke_client(client):
        click.echo(f"Training client {name!r} was already revoked.")
        return
    commit()
    click.echo(f"Revoked training client {name!r}: its token no longer works. Its snapshots "
               "stay until they are retired.")


@clients_group.command("list")
@with_appcontext
def list_clients_command() -> None:
    """List the training clients, their purposes, scopes and state."""
    from portal.training.service import list_clients

    clients = list_clients()
    if not clients:
        click.echo("No training client is registered. Add one with "
                   "`portal training clients create`.")
        return
    for client in clients:
        state = ("active" if client.active
                 else f"revoked {client.revoked_at:%Y-%m-%d %H:%M} UTC")
        click.echo(f"{client.name}  [{state}]  created {client.created_at:%Y-%m-%d} UTC")
        click.echo(f"  purposes: {', '.join(client.purposes or [])}")
        click.echo(f"  scopes:   {', '.join(client.scopes or [])}")
        click.echo(f"  webhook:  {client.webhook_url or '-'}")


# --- building snapshots (portal.training.build) ----------------------------------------------

@training_group.command("work")
@click.option("--once", is_flag=True,
              help="Build what waits now, then stop (default: keep polling for new snapshots).")
@click.option("--owner", default="", metavar="NAME",
              help="This worker's name on its leases (default: host and process id).")
@click.option("--poll", default=5.0, show_default=True, metavar="SECONDS",
              help="How long to wait between looks for new work when idle.")
@with_appcontext
def work_command(once: bool, owner: str, poll: float) -> None:
    """Build queued training snapshots: plan their parts, take parts with a lease, build them.

    Run as many workers as you like, on any host sharing the database: each takes parts
    the others do not hold. A worker that is killed keeps its part until the lease ends
    (TRAINING_PART_LEASE_SECONDS); another worker then builds that part again. A snapshot
    becomes ready only once every part is written.
    """
    from portal.training import build

    name = owner or build.default_owner()
    while True:
        built = build.work(name)
        if built:
            click.echo(f"built {built} part(s) as {name}")
        if once:
            return
        time.sleep(poll)




# --- manifests (portal.training.manifest) -----------------------------------------------------

@training_group.command("verify")
@click.argument("manifest_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--files", "folder", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The folder the snapshot's files were downloaded to: check their sizes and "
                   "SHA-256 against the manifest.")
@key_option
@with_appcontext
def verify_command(manifest_file: Path, folder: Path | None, key_file: Path | None) -> None:
    """Check a snapshot's signed manifest offline, and with --files the downloaded files."""
    from flask import current_app

    from portal.training.manifest import verify_files, verify_manifest

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    keys = verification_keys(app, key_file)
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
