"""The consent commands: rebuild-state, ledger verify, receipts verify."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.db import commit

if TYPE_CHECKING:
    from portal.consent.receipts import KeySet


@click.group("consent")
def consent_group() -> None:
    """Look after the consent state derived from the ledger."""


@consent_group.command("rebuild-state")
@with_appcontext
def rebuild_state() -> None:
    """Rebuild the current consent state from the ledger and say whether it was identical."""
    from portal.consent.service import rebuild_state as rebuild

    report = rebuild()
    commit()
    if report.identical:
        click.echo(f"Identical: the current state ({report.rows} rows) already matched the "
                   "ledger.")
        return
    click.echo(f"Rebuilt {report.rows} rows from the ledger. It differed: "
               f"{len(report.missing)} missing, {len(report.extra)} without any event, "
               f"{len(report.changed)} different.")
    for label, keys in (("missing", report.missing), ("extra", report.extra),
                        ("different", report.changed)):
        for person_id, category_key in keys[:20]:
            click.echo(f"  {label}: person {person_id}, category {category_key}")
    sys.exit(1)


@click.group("ledger")
def ledger_group() -> None:
    """Check the hash-chained consent ledger."""


@ledger_group.command("verify")
@with_appcontext
def ledger_verify() -> None:
    """Check every link of the chain; name the first broken one and exit 1 if any."""
    from portal.consent.service import verify_ledger

    verdict = verify_ledger()
    click.echo(verdict.describe())
    if not verdict.ok:
        sys.exit(1)


@click.group("receipts")
def receipts_group() -> None:
    """Check signed consent receipts and certificates of deletion."""


#: ``--key``, for every command that checks a signed document offline.
key_option = click.option(
    "--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JWK Set or JWK with the public key (e.g. a saved /.well-known/jwks.json). "
         "Default: this installation's own key.")


def verification_keys(app: Flask, key_file: Path | None) -> KeySet:
    """Return the public keys of ``--key``, else this installation's; exit 2 if unreadable."""
    from portal.consent.receipts import key_path, load_keys, public_jwks

    try:
        if key_file is not None:
            return load_keys(json.loads(key_file.read_text()))
        if not key_path(app).exists():
            click.echo("INVALID: this installation has no receipt key; pass --key")
            sys.exit(2)
        return load_keys(public_jwks(app))
    except (ValueError, KeyError) as exc:
        click.echo(f"INVALID: the key cannot be read ({exc})")
        sys.exit(2)


@receipts_group.command("verify")
@click.argument("receipt", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@key_option
def receipts_verify(receipt: Path, key_file: Path | None) -> None:
    """Check a receipt or a certificate of deletion offline: signature and consistency."""
    from portal.consent.receipts import document_checks, verify_document

    app = _app()
    keys = verification_keys(app, key_file)
    # Other kinds of document (certificates of deletion) are checked as their package says.
    check = verify_document(receipt.read_text(errors="replace"), keys, document_checks(app))
    click.echo(check.describe())
    if not check.valid:
        sys.exit(1)


def _app() -> Flask:
    from flask.cli import ScriptInfo

    context = click.get_current_context()
    info = context.find_object(ScriptInfo)
    if info is not None:
        return info.load_app()
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


def init_app(app: Flask) -> None:
    """Attach the consent commands to ``app``."""
    for group in (consent_group, ledger_group, receipts_group):
        app.cli.add_command(group)
