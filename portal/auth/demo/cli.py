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
    """Prepare the demo: the demo people, their consents and collected data (safe to rerun).

    The collected data goes through the real collector API, so that the consent gate,
    validation and encryption apply to it as to any collector's.
    """
    from portal.api.cli import seed_demo_collections

    added = record_demo_people(provider().people, issuer=issuer(current_app),
                               roles_claim=current_app.config["OIDC_ROLES_CLAIM"],
                               role_map=current_app.config["ROLE_MAP"])
    commit()
    click.echo(f"Demo people: {added} added, {len(provider().people) - added} already there.")
    report = seed_demo_collections()
    click.echo(f"Demo collection: {report.consents_given} consents given, "
               f"{report.batches_stored} batches ({report.events_stored} events) stored "
               f"through the collector API, {report.batches_already_there} already there, "
               f"{report.consents_withdrawn} withdrawals acknowledged by the collector.")
