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
