"""The ``portal training`` commands: clients, the snapshot worker, manifests, retirement."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

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




# --- manifests (portal.training.manifest) -----------------------------------------------------




# --- retiring snapshots (portal.training.lineage) ---------------------------------------------
