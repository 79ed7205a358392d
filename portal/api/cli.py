"""The ``portal collectors`` and ``portal webhooks`` commands; the demo's collection via the API."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.db import commit


@click.group("collectors")
def collectors_group() -> None:
    """Register, revoke and list the collectors that may use the collector API."""


@collectors_group.command("create")
@click.argument("name")
@click.option("--categories", required=True,
              help="Comma-separated category keys the collector records, e.g. pointer,clicks.")
@click.option("--webhook", "webhook_url", default="",
              help="URL the portal posts signed withdrawal notices to (optional).")
@with_appcontext
def create(name: str, categories: str, webhook_url: str) -> None:
    """Register a collector and print its token once (only its hash is stored)."""
    from portal.api.service import CollectorRefused, create_collector

    try:
        collector, token, webhook_secret = create_collector(
            name, categories.split(","), webhook_url=webhook_url)
    except CollectorRefused as exc:
        for field, message in exc.problems.items():
            click.echo(f"Not registered: {field} {message}.", err=True)
        sys.exit(2)
    commit()
    click.echo(f"Registered collector {collector.name!r} for: "
               f"{', '.join(collector.categories)}.")
    click.echo(f"Token (shown only now; store it in the collector's secret store):\n  {token}")
    if collector.webhook_url:
        click.echo(f"Webhook secret for signed notices to {collector.webhook_url} (shown only "
                   f"now):\n  {webhook_secret}")


@collectors_group.command("revoke")
@click.argument("name")
@with_appcontext
def revoke(name: str) -> None:
    """Revoke a collector's token at once; its next request gets 401."""
    from portal.api.service import find_collector, revoke_collector

    collector = find_collector(name)
    if collector is None:
        click.echo(f"No collector is named {name!r}.", err=True)
        sys.exit(1)
    if not revoke_collector(collector):
        click.echo(f"Collector {name!r} was already revoked.")
        return
    commit()
    click.echo(f"Revoked collector {name!r}: its token no longer works.")


@collectors_group.command("list")
@with_appcontext
def list_() -> None:
    """List the collectors, their categories and state, and withdrawals they left unconfirmed."""
    from portal.api.service import list_collectors, unacknowledged_stops

    collectors = list_collectors()
    if not collectors:
        click.echo("No collector is registered. Add one with `portal collectors create`.")
        return
    pending: dict[str, int] = {}
    for stops in unacknowledged_stops():
        pending[stops.collector_name] = pending.get(stops.collector_name, 0) + stops.count
    for collector in collectors:
        state = ("active" if collector.active
                 else f"revoked {collector.revoked_at:%Y-%m-%d %H:%M} UTC")
        click.echo(f"{collector.name}  [{state}]  created {collector.created_at:%Y-%m-%d} UTC")
        click.echo(f"  categories: {', '.join(collector.categories or [])}")
        click.echo(f"  webhook:    {collector.webhook_url or '-'}")
        if collector.active:
            click.echo(f"  withdrawals not yet acknowledged: {pending.get(collector.name, 0)}")


@click.group("webhooks")
def webhooks_group() -> None:
    """Send withdrawal notices to collectors."""


@webhooks_group.command("deliver")
@click.option("--loop", is_flag=True, help="Keep running, sending notices as they fall due.")
@click.option("--interval", default=1.0, show_default=True,
              help="Seconds between passes with --loop.")
@with_appcontext
def webhooks_deliver(loop: bool, interval: float) -> None:
    """Send every notice that is due (once, or continuously with --loop)."""
    from portal.api.webhooks import deliver_due

    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    while True:
        run = deliver_due(app)
        if run.attempted or not loop:
            click.echo(f"{run.delivered} delivered, {run.retrying} to retry, "
                       f"{run.failed} failed for good.")
        if not loop:
            return
        time.sleep(interval)


# --- the demo's collection -------------------------------------------------------------------

DEMO_COLLECTOR = "demo collection agent"
#: Consent categories every demo person has switched on, and those only some have.
DEMO_ALWAYS = ("pointer", "clicks")
DEMO_SOMETIMES = ("keystrokes", "ai_transcripts", "conversations")


@dataclass
class DemoCollection:
    """What :func:`seed_demo_collections` did."""

    people: int = 0
    consents_given: int = 0
    consents_withdrawn: int = 0
    batches_stored: int = 0
    batches_already_there: int = 0
    events_stored: int = 0
    refused: int = 0
    acknowledged: int = 0
    by_category: dict[str, int] = field(default_factory=dict)


def seed_demo_step() -> str:
    """Seed the demo collections (a step of ``portal demo seed``) and say what was done."""
    report = seed_demo_collections()
    return (f"Demo collection: {report.consents_given} consents given, "
            f"{report.batches_stored} batches ({report.events_stored} events) stored "
            f"through the collector API, {report.batches_already_there} already there, "
            f"{report.consents_withdrawn} withdrawals acknowledged by the collector.")


def _demo_plan(subject: str, keys: list[str]) -> tuple[list[str], list[str]]:
    """Return which consent categories a demo person gives, and which of them they withdraw.

    Derived from the subject, so that every run (and every machine) gives the same demo.
    """
    draw = hashlib.sha256(subject.encode()).digest()
    given = [key for key in DEMO_ALWAYS if key in keys]
    given += [key for number, key in enumerate(DEMO_SOMETIMES)
              if key in keys and draw[number] % 3 != 0]
    # About one person in three withdraws one consent later: the demo then shows a stopped
    # collection, the collector's acknowledgement, and data held from before.
    withdrawn = [given[-1]] if given and draw[7] % 3 == 0 else []
    return given, withdrawn


def seed_demo_collections(*, days: int = 5, batches_per_day: int = 3) -> DemoCollection:
    """Fill the demo through the real collector API: consents, batches, acknowledgements.

    Registers the demo collector (or gives it a new token), gives demo consents for every
    person of the configured identity provider (method ``import``, as a migration of earlier
    choices would), and submits :func:`portal.vault.demo_data.generate_batches` through
    ``POST /api/v1/batches`` with Flask's test client: the same path as any collector, so the
    consent gate, validation and encryption all apply. Some people then withdraw one consent,
    and the collector acknowledges it through the API. Safe to run again: batches carry
    idempotency keys, and consents already decided are left alone.

    Call inside an application context; commits what it does.
    """
    from sqlalchemy import select

    from portal.api.service import (
        categories_in_force,
        create_collector,
        find_collector,
        rotate_collector_token,
    )
    from portal.auth.models import Person
    from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
    from portal.catalog.notices import current_notice
    from portal.catalog.publication import load_catalog
    from portal.consent.models import ConsentMethod
    from portal.consent.service import current_states, grant_consent, withdraw_consent
    from portal.db import db
    from portal.vault.demo_data import PLANS, generate_batches
    from portal.vault.ingest import find_category

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if current_notice() is None:
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="portal demo seed")
    keys = categories_in_force()
    collector = find_collector(DEMO_COLLECTOR)
    if collector is None:
        collector, token, _secret = create_collector(DEMO_COLLECTOR, keys)
    elif collector.active:
        token = rotate_collector_token(collector)
    else:
        raise click.ClickException(f"the collector {DEMO_COLLECTOR!r} was revoked; the demo "
                                   "does not bring it back")
    issuer = str(app.extensions["portal.oidc"].expected_issuer)
    people = list(db.scalars(select(Person).where(Person.issuer == issuer, Person.active)
                             .order_by(Person.subject)))
    report = DemoCollection(people=len(people))
    notice = current_notice()
    assert notice is not None
    withdrawals: list[tuple[Person, str]] = []
    for person in people:
        decided = current_states(person.id)
        given, withdrawn = _demo_plan(person.subject, keys)
        for key in given:
            if key in decided:
                continue  # the person (or an earlier run) decided already: leave it
            if grant_consent(person, find_category(key), notice_version=notice,
                             method=ConsentMethod.IMPORT, actor=None):
                report.consents_given += 1
                if key in withdrawn:
                    withdrawals.append((person, key))
    commit()

    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, **options: Any) -> Any:
        # A fresh application context per request: the request's unit of work must not be
        # this command's.
        with app.app_context():
            return client.open(path, method=method, headers={**headers,
                                                             **options.pop("headers", {})},
                               **options)

    last_recorded: dict[tuple[str, str], str] = {}
    for person in people:
        for key in keys:
            if key not in PLANS:
                continue
            answer = call("GET", "/api/v1/consent",
                          query_string={"subject": person.subject, "category": key}).get_json()
            if not answer["allowed"]:
                continue
            # The people one talks to are the other demo people, named as collectors name
            # them: by their workplace pseudonyms (the consent answer gives each one).
            colleagues = tuple(other.workplace_pseudonym for other in people
                               if other.id != person.id)
            for body in generate_batches(key, person_seed=person.subject, days=days,
                                         batches_per_day=batches_per_day,
                                         colleagues=colleagues):
                body["subject"] = person.subject
                response = call("POST", "/api/v1/batches", json=body, headers={
                    "Idempotency-Key": f"demo/{person.subject}/{key}/{body['collected_from']}"})
                if response.status_code in {200, 201}:
                    last_recorded[(person.subject, key)] = body["collected_to"]
                if response.status_code == 201:
                    report.batches_stored += 1
                    report.events_stored += len(body["events"])
                    report.by_category[key] = report.by_category.get(key, 0) + len(body["events"])
                elif response.status_code == 200:
                    report.batches_already_there += 1
                else:
                    report.refused += 1

    for person, key in withdrawals:
        if withdraw_consent(person, find_category(key), method=ConsentMethod.IMPORT,
                            actor=None):
            report.consents_withdrawn += 1
    commit()
    report.acknowledged = _acknowledge_demo_stops(call, last_recorded)
    return report


def _acknowledge_demo_stops(call: Any, last_recorded: dict[tuple[str, str], str]) -> int:
    """Read the changes feed as the demo collector and acknowledge every stop in it."""
    acknowledged, after = 0, "0"
    while True:
        page = call("GET", "/api/v1/consent/changes",
                    query_string={"after": after, "limit": 1000}).get_json()
        for change in page["changes"]:
            if change["allowed"]:
                continue
            response = call("POST", "/api/v1/consent/acknowledgements", json={
                "subject": change["subject"], "category": change["category"],
                "change_cursor": change["cursor"], "action": "stopped",
                "last_event_at": last_recorded.get((change["subject"], change["category"]))})
            acknowledged += response.status_code == 201
        if page["next_cursor"] == after:
            return acknowledged
        after = page["next_cursor"]
