"""The ``portal demo`` commands (demo mode only)."""

from __future__ import annotations

from collections.abc import Callable

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.auth.demo.provider import issuer, provider
from portal.auth.demo.service import portal_roles, record_demo_people
from portal.db import commit

#: Further steps of ``portal demo seed`` (``app.extensions``), added by the packages that have
#: demo data of their own (the collector API's collections): sign-in sits below them and must
#: not import them. Each step does its work, commits, and returns a line saying what it did.
DEMO_SEED_STEPS = "portal.demo_seed_steps"


def register_seed_step(app: Flask, step: Callable[[], str]) -> None:
    """Run ``step`` in ``portal demo seed`` after the demo people are recorded."""
    app.extensions.setdefault(DEMO_SEED_STEPS, []).append(step)


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
    added = record_demo_people(provider().people, issuer=issuer(current_app),
                               roles_claim=current_app.config["OIDC_ROLES_CLAIM"],
                               role_map=current_app.config["ROLE_MAP"])
    commit()
    click.echo(f"Demo people: {added} added, {len(provider().people) - added} already there.")
    for step in current_app.extensions.get(DEMO_SEED_STEPS, []):
        click.echo(step())
