"""The audit commands: ``portal audit verify``."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext


@click.group("audit")
def audit_group() -> None:
    """Check the hash-chained audit log."""


@audit_group.command("verify")
@with_appcontext
def audit_verify() -> None:
    """Check every link of the audit log; name the first broken one and exit 1 if any."""
    from portal.audit.service import verify_log

    verdict = verify_log()
    click.echo(verdict.describe())
    if not verdict.ok:
        sys.exit(1)
