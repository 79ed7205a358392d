"""The request commands: execute or resume a deletion, and check one afterwards."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from portal.consent.models import ConsentMethod
from portal.db import commit

OPERATOR = "portal requests (server operator)"


@click.group("requests")
def requests_group() -> None:
    """Carry out and check deletion requests."""


@requests_group.command("execute")
@click.argument("reference")
@with_appcontext
def execute(reference: str) -> None:
    """Execute an approved deletion request, or finish one that was interrupted."""
    from portal.requests.service import (
        DeletionUnverified,
        RequestError,
        execute_deletion,
        find_request,
    )

    request = find_request(reference)
    if request is None:
        click.echo(f"No request {reference}.")
        sys.exit(2)
    try:
        done = execute_deletion(request, actor=None, actor_name=OPERATOR,
                                method=ConsentMethod.SYSTEM)
    except DeletionUnverified as exc:
        click.echo(f"NOT VERIFIED: the deletion ran, but the check found: {exc}. The request "
                   "stays executing; run this command again.")
        sys.exit(1)
    except RequestError as exc:
        click.echo(f"Refused: {exc}. Nothing more was changed.")
        sys.exit(1)
    click.echo(f"Executed {done.reference}: {len(done.steps)} categories deleted; "
               f"certificate {done.certificate_id}.")


@requests_group.command("resume")
@with_appcontext
def resume() -> None:
    """Finish every deletion whose execution was interrupted."""
    from portal.requests.service import resume_interrupted

    finished = resume_interrupted(actor_name=OPERATOR)
    click.echo(f"{len(finished)} interrupted deletions finished."
               + "".join(f"\n  {request.reference}" for request in finished))


@requests_group.command("verify")
@click.argument("reference")
@with_appcontext
def verify(reference: str) -> None:
    """Check that nothing in an executed request's scope remains; exit 1 if anything does."""
    from portal.requests.service import RequestError, find_request, verify_deletion

    request = find_request(reference)
    if request is None:
        click.echo(f"No request {reference}.")
        sys.exit(2)
    try:
        check = verify_deletion(request, record_event=False)
    except RequestError as exc:
        click.echo(f"Refused: {exc}.")
        sys.exit(1)
    commit()
    if not check.ok:
        click.echo("NOT DELETED: " + "; ".join(check.problems))
        sys.exit(1)
    click.echo(f"Deleted: nothing in scope remains; {check.keys_tried} destroyed keys tried, "
               "none decrypts.")
