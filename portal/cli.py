"""The ``portal`` command: Flask's CLI (``run``, ``routes``, ``shell``) plus our own commands."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import Connection

from portal import ROOT
from portal.db import get_engine


def alembic_config() -> AlembicConfig:
    """Return Alembic's configuration, pointing at the project's migrations."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    return cfg


@contextmanager
def _migrating(app: Flask) -> Iterator[Connection]:
    """Yield a connection in a transaction for Alembic, committed at the end.

    On SQLite, foreign keys are off while migrating: a batch migration rebuilds a table
    (copy, DROP, rename), and dropping a table that other rows refer to (``person``) fails
    while they are on, so an upgrade of any database with people in it would stop. Alembic's
    advice (https://alembic.sqlalchemy.org/en/latest/batch.html#dealing-with-referencing-
    foreign-keys); the pragma is a no-op inside a transaction, so it is set before one begins,
    and ``foreign_key_check`` proves the migrated rows still refer to what exists.
    """
    with get_engine(app).connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"the migration left rows referring to nothing: "
                                           f"{broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def upgrade_database(app: Flask, revision: str = "head") -> None:
    """Bring the schema of ``app``'s database to ``revision``."""
    cfg = alembic_config()
    with _migrating(app) as connection:
        cfg.attributes["connection"] = connection
        alembic_command.upgrade(cfg, revision)


def downgrade_database(app: Flask, revision: str) -> None:
    """Take the schema of ``app``'s database back to ``revision``."""
    cfg = alembic_config()
    with _migrating(app) as connection:
        cfg.attributes["connection"] = connection
        alembic_command.downgrade(cfg, revision)


@click.group("db")
def db_group() -> None:
    """Manage the database schema."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Create or upgrade the schema (from empty, or from any earlier version)."""
    from flask import current_app

    upgrade_database(current_app, revision)
    click.echo(f"Database schema is at {revision}.")


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="What the migration changes.")
@with_appcontext
def db_revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    from portal.models import MODELS

    click.echo(f"Comparing {len(MODELS)} models with the database.")
    cfg = alembic_config()
    with get_engine().begin() as connection:
        cfg.attributes["connection"] = connection
        alembic_command.revision(cfg, message=message, autogenerate=True)


@click.group("translations")
def translations_group() -> None:
    """Extract, update and compile the message catalogs in ``translations/``."""


def _pybabel(*args: str) -> None:
    from babel.messages.frontend import CommandLineInterface

    CommandLineInterface().run(["pybabel", "-q", *args])


POT = str(ROOT / "translations" / "messages.pot")
SOURCE_LANGUAGE = "en"


@translations_group.command("extract")
def translations_extract() -> None:
    """Collect every translatable string into ``translations/messages.pot``."""
    _pybabel("extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-k", "pgettext:1c,2",
             "--add-comments=i18n:", "--no-location", "--sort-output",
             "--project=consent-portal", "-o", POT, str(ROOT / "portal"), str(ROOT / "templates"))


@translations_group.command("init")
@click.argument("language")
def translations_init(language: str) -> None:
    """Start the catalog of a new language (then translate it and add it to LANGUAGES)."""
    _pybabel("init", "-i", POT, "-d", str(ROOT / "translations"), "-l", language)


@translations_group.command("update")
def translations_update() -> None:
    """Merge new strings from the template into every language's catalog."""
    _pybabel("update", "-i", POT, "-d", str(ROOT / "translations"), "--no-fuzzy-matching",
             "--ignore-obsolete")
    fill_source_language()


def fill_source_language() -> None:
    """Make the English catalog complete: the source text is the English text."""
    from babel.messages.pofile import read_po, write_po

    path = ROOT / "translations" / SOURCE_LANGUAGE / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalog = read_po(handle)
    for message in catalog:
        if not message.id:
            continue
        if isinstance(message.id, tuple | list):
            # A plural: the empty translation is a tuple of empty strings, which is truthy.
            if not all(message.string):
                message.string = tuple(message.id)
        elif not message.string:
            message.string = message.id
    with path.open("wb") as handle:
        write_po(handle, catalog, width=100)


@translations_group.command("compile")
def translations_compile() -> None:
    """Compile the catalogs to ``.mo`` files (done by the install step, never committed)."""
    _pybabel("compile", "-d", str(ROOT / "translations"), "--statistics")


@translations_group.command("check")
def translations_check() -> None:
    """Fail when a language lacks a translation or has a fuzzy one."""
    from babel.messages.pofile import read_po

    missing = []
    for po_path in sorted((ROOT / "translations").glob("*/LC_MESSAGES/messages.po")):
        with po_path.open("rb") as handle:
            catalog = read_po(handle)
        for message in catalog:
            if message.id and (not message.string or message.fuzzy or (
                    isinstance(message.string, tuple) and not all(message.string))):
                missing.append(f"{po_path.parent.parent.name}: {message.id!r}")
    if missing:
        click.echo("\n".join(missing), err=True)
        sys.exit(1)
    click.echo("Every language is complete.")


def init_app(app: Flask) -> None:
    """Attach the project's command groups to ``app``."""
    app.cli.add_command(db_group)
    if app.config["DEMO"]:
        from portal.auth.demo import demo_group

        app.cli.add_command(demo_group)


def main() -> None:
    """Run the ``portal`` console script from any folder."""
    from portal import create_app
    from portal.config import ConfigError

    def create_or_explain() -> Flask:
        try:
            return create_app()
        except ConfigError as exc:
            # A plain sentence, not a traceback: the operator has a setting to fix.
            click.echo(f"The portal cannot start: {exc}", err=True)
            sys.exit(2)

    group = FlaskGroup(create_app=create_or_explain, add_version_option=False)
    # Translations are handled before any configuration exists (at install time).
    group.add_command(translations_group)
    group.main(prog_name="portal")


