"""The ``portal demo`` commands (demo mode only)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.auth.demo.provider import issuer, provider
from portal.auth.demo.service import portal_roles, record_demo_people
from portal.db import commit


@click.group("demo")
def demo_group() -> None:
    """Inspect and prepare the built-in demo identity provider and its people."""


@demo_group.command("people")
@with_appcontext
def demo_people() -> None:
    """List the demo people one can sign in as, with the portal roles they get."""
    for person in provider().people.values():
        roles = portal_roles(person, roles_claim=current_app.config["OIDC_ROLES_CLAIM"],
                             role_map=current_app.config["ROLE_MAP"])
        click.echo(f"{person.name} <{person.email}>")
        click.echo(f"  subject:    {person.sub}")
        click.echo(f"  works in:   {person.department}, {person.location}")
        click.echo(f"  groups:     {', '.join(person.groups) or '-'}")
        click.echo(f"  roles:      {', '.join(['employee', *roles])}")


@demo_group.command("seed")
@with_appcontext
def demo_seed() -> None:
    """Prepare the demo: record the demo people in the portal (safe to run again)."""
    added = record_demo_people(provider().people, issuer=issuer(current_app),
                               roles_claim=current_app.config["OIDC_ROLES_CLAIM"],
                               role_map=current_app.config["ROLE_MAP"])
    commit()
    click.echo(f"Demo people: {added} added, {len(provider().people) - added} already there.")
