"""The ``portal catalog`` commands: load the catalog file, publish new notice versions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_babel import force_locale

from portal.catalog.service import (
    FALLBACK_LANGUAGE,
    SHIPPED_CATALOG,
    CatalogDocument,
    CatalogError,
    PublishRefused,
    SectionChange,
    expired_consents,
    load_catalog,
    notice_history,
    publish_notice,
    read_catalog_file,
)
from portal.db import commit
from portal.i18n import LANGUAGES

CATALOG_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("catalog")
@click.pass_context
@with_appcontext
def catalog_group(context: click.Context) -> None:
    """Load the catalog of what is collected and publish notice versions."""
    # Commands serve no person: they speak the portal's default language (and choosing it
    # up front keeps Flask-Babel from asking the request-bound locale selector).
    context.with_resource(force_locale(current_app.config["DEFAULT_LOCALE"]))


def _read_or_exit(path: Path) -> CatalogDocument:
    try:
        return read_catalog_file(path)
    except CatalogError as exc:
        click.echo(f"{path} cannot be used:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)


def _warn_about_missing_translations(document: CatalogDocument) -> None:
    # Allowed (readers get English with a note), but the operator should know.
    for category in document.categories:
        for language in LANGUAGES:
            if language not in category.text:
                click.echo(f"Note: category '{category.key}' has no '{language}' text; those "
                           f"readers see the '{FALLBACK_LANGUAGE}' text with a note.")


def _describe(change: SectionChange) -> str:
    return f"{change.key} ({change.status})"


@catalog_group.command("load")
@click.argument("file", required=False, type=CATALOG_FILE)
@click.option("--by", "published_by", default="the portal catalog load command",
              show_default=True, help="Who installs the catalog (recorded on version 1).")
@click.option("--dpo-sign-off", default="",
              help='The data protection officer\'s approval, e.g. "Dana Novak, 2026-11-20".')
@click.option("--works-council", "works_council_ref", default="",
              help="The works council's reference for its agreement, if there is one.")
@with_appcontext
def catalog_load(file: Path | None, published_by: str, dpo_sign_off: str,
                 works_council_ref: str) -> None:
    """Check FILE (default: the shipped catalog) and publish it as version 1 if none exists.

    Once a version is published, a changed file is only compared: publish it with
    `portal catalog publish`, which records the approval and the material changes.
    """
    path = file or SHIPPED_CATALOG
    document = _read_or_exit(path)
    _warn_about_missing_translations(document)
    outcome = load_catalog(document, published_by=published_by, dpo_sign_off=dpo_sign_off,
                           works_council_ref=works_council_ref)
    number = outcome.notice.number
    if outcome.published:
        commit()
        click.echo(f"Published notice version {number} with {len(document.categories)} "
                   f"categories: {', '.join(c.key for c in document.categories)}.")
        return
    if not outcome.document_changed:
        click.echo(f"{path} matches notice version {number}; nothing to do.")
        return
    where = ", ".join(map(_describe, outcome.pending)) or \
        "the controller or the sensitivity levels"
    click.echo(f"{path} differs from notice version {number} in: {where}.\n"
               "Nothing was changed. Publish it as a new version with `portal catalog publish "
               f"{path} --dpo-sign-off ... --by ...`, marking material changes.", err=True)
    sys.exit(1)


def _summary_options(command: Any) -> Any:
    for code in reversed(LANGUAGES):
        command = click.option(f"--summary-{code}", f"summary_{code}", default="",
                               help=f"What changed, in plain words, in {LANGUAGES[code]}.",
                               )(command)
    return command


def _parse_material(values: tuple[str, ...]) -> dict[str, str]:
    material: dict[str, str] = {}
    for value in values:
        key, sep, reason = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"'{value}' is not KEY=REASON", param_hint="--material")
        if key.strip() in material:
            raise click.BadParameter(f"'{key}' is given twice", param_hint="--material")
        material[key.strip()] = reason
    return material


@catalog_group.command("publish")
@click.argument("file", type=CATALOG_FILE)
@click.option("--by", "published_by", required=True, help="Who publishes this version.")
@click.option("--dpo-sign-off", required=True,
              help='The data protection officer\'s approval, e.g. "Dana Novak, 2026-11-20".')
@click.option("--works-council", "works_council_ref", default="",
              help="The works council's reference for its agreement, if there is one.")
@click.option("--material", multiple=True, metavar="KEY=REASON",
              help="A changed category whose consents must be confirmed again, and why "
                   "(repeat for each).")
@_summary_options
@with_appcontext
def catalog_publish(file: Path, published_by: str, dpo_sign_off: str, works_council_ref: str,
                    material: tuple[str, ...], **summaries: str) -> None:
    """Publish FILE as the next notice version.

    Consents for the categories marked --material end at once; each person is asked to
    confirm or decline under the new text.
    """
    document = _read_or_exit(file)
    _warn_about_missing_translations(document)
    change_summary = {code: summaries.get(f"summary_{code}", "") for code in LANGUAGES}
    try:
        notice = publish_notice(document, published_by=published_by, dpo_sign_off=dpo_sign_off,
                                works_council_ref=works_council_ref,
                                change_summary=change_summary,
                                material=_parse_material(material))
    except PublishRefused as exc:
        click.echo(f"Not published: {exc}", err=True)
        sys.exit(1)
    expired = expired_consents(notice)
    commit()
    click.echo(f"Published notice version {notice.number}.")
    for section in notice.sections:
        if section.changed:
            line = f"  {section.category_key}: changed"
            if section.material:
                line += (f", material ({section.material_reason}); "
                         f"{expired.get(section.category_key, 0)} consents now wait for "
                         "the person's confirmation")
            click.echo(line)


@catalog_group.command("versions")
@with_appcontext
def catalog_versions() -> None:
    """List the published notice versions with who approved them."""
    versions = notice_history()
    if not versions:
        click.echo("No notice version is published yet: run `portal catalog load`.")
    for notice in versions:
        changed = [s.category_key for s in notice.sections if s.changed]
        click.echo(f"{notice.number}  {notice.published_at:%Y-%m-%d %H:%M} UTC  "
                   f"by {notice.published_by_name}; DPO: {notice.dpo_sign_off or '-'}; "
                   f"works council: {notice.works_council_ref or '-'}; "
                   f"changed: {', '.join(changed) or '-'}")
