"""The ``portal catalog`` commands: load the catalog file, publish new notice versions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from babel import Locale
from flask import current_app
from flask.cli import with_appcontext
from flask_babel import force_locale
from flask_babel import gettext as _

from portal.catalog.changes import SectionChange, compare_with_current
from portal.catalog.document import (
    FALLBACK_LANGUAGE,
    SHIPPED_CATALOG,
    CatalogDocument,
    CatalogError,
    read_catalog_file,
)
from portal.catalog.notices import notice_history
from portal.catalog.publication import PublishRefused, load_catalog, publish_notice
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
@click.option("--publish-changes", is_flag=True,
              help="Demo mode only: publish a changed FILE as the next version, every change "
                   "but added translations marked material (what `make demo` does when an "
                   "earlier version of the portal made the demo database).")
@with_appcontext
def catalog_load(file: Path | None, published_by: str, dpo_sign_off: str,
                 works_council_ref: str, publish_changes: bool) -> None:
    """Check FILE (default: the shipped catalog) and publish it as version 1 if none exists.

    Once a version is published, a changed file is only compared: publish it with
    `portal catalog publish`, which records the approval and the material changes.
    """
    if publish_changes and not current_app.config["DEMO"]:
        # Which changes are material is the DPO's decision for real people; the demo's
        # people are invented, so there the command may decide (and decides cautiously).
        click.echo("--publish-changes is for demo mode only. Publish a changed catalog with "
                   "`portal catalog publish`, marking its material changes. Nothing was "
                   "changed.", err=True)
        sys.exit(2)
    path = file or SHIPPED_CATALOG
    document = _read_or_exit(path)
    _warn_about_missing_translations(document)
    if publish_changes and compare_with_current(document).current is not None:
        _publish_demo_changes(path, document, published_by=published_by,
                              dpo_sign_off=dpo_sign_off, works_council_ref=works_council_ref)
        return
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


def _publish_demo_changes(path: Path, document: CatalogDocument, *, published_by: str,
                          dpo_sign_off: str, works_council_ref: str) -> None:
    """Publish a changed demo catalog as the next version; say that an unchanged one is there.

    An earlier version of the portal made the demo database with the catalog it shipped
    (before French, say). A category whose only change is texts in added languages is not
    material: nobody was told anything different. Any other change is marked material, so
    the demo's people confirm again what they agreed to.
    """
    comparison = compare_with_current(document)
    assert comparison.current is not None
    if not comparison.document_changed:
        click.echo(f"{path} matches notice version {comparison.current.number}; nothing to do.")
        return
    material = {change.key: "changed in the catalog shipped with this version of the portal"
                for change in comparison.changed
                if change.status == "changed" and not _adds_translations_only(change)}
    try:
        publication = publish_notice(
            document, published_by=published_by,
            dpo_sign_off=dpo_sign_off or "the demo's data protection officer",
            works_council_ref=works_council_ref, material=material,
            change_summary={code: _demo_change_summary(comparison.changed, material, code)
                            for code in LANGUAGES})
    except PublishRefused as exc:
        click.echo(f"Not published: {exc} Nothing was changed.", err=True)
        sys.exit(1)
    notice, expired = publication.notice, publication.consents_ended
    commit()
    added = [change.key for change in comparison.changed
             if change.status == "changed" and change.key not in material]
    click.echo(f"{path} differs from notice version {comparison.current.number}: published it "
               f"as notice version {notice.number}.")
    if added:
        click.echo(f"  texts in added languages only (not material): {', '.join(added)}")
    for key in material:
        click.echo(f"  {key}: changed, material; {expired.get(key, 0)} consents now wait for "
                   "the person's confirmation")
    for change in comparison.changed:
        if change.status in {"new", "removed"}:
            click.echo(f"  {change.key}: {change.status}")


def _languages(content: dict[str, Any] | None) -> set[str]:
    return set((content or {}).get("text", {}))


def _adds_translations_only(change: SectionChange) -> bool:
    """Say whether a changed category differs only by texts in languages it did not have."""
    assert change.old is not None and change.new is not None
    kept = _languages(change.old)
    if not kept <= _languages(change.new):
        return False
    # Every part of a category's content keyed by language: its texts and its level's meaning.
    trimmed = {**change.new,
               **{part: {code: text for code, text in change.new[part].items() if code in kept}
                  for part in ("text", "sensitivity_level", "training_purpose_texts")
                  if part in change.new}}
    return trimmed == change.old


def _demo_change_summary(changed: list[SectionChange], material: dict[str, str],
                         code: str) -> str:
    """Say, in the language ``code``, what the demo catalog's new version changed."""
    with force_locale(code):
        sentences = [_("Updated to the demo catalog shipped with this version of the portal.")]
        added = sorted(set().union(*(_languages(change.new) - _languages(change.old)
                                     for change in changed if change.status == "changed")))
        if added:
            names = ", ".join(Locale.parse(language).get_display_name(code) or language
                              for language in added)
            sentences.append(_("Its texts are now also in %(languages)s.", languages=names))
        reconfirmed = _titles([change for change in changed if change.key in material], code)
        new = _titles([change for change in changed if change.status == "new"], code)
        removed = _titles([change for change in changed if change.status == "removed"], code)
        # i18n: %(categories)s is a comma-separated list of category titles.
        if reconfirmed:
            sentences.append(_("Changed, to be confirmed again: %(categories)s.",
                               categories=reconfirmed))
        if new:
            sentences.append(_("New categories: %(categories)s.", categories=new))
        if removed:
            sentences.append(_("No longer recorded: %(categories)s.", categories=removed))
        return " ".join(sentences)


def _titles(changes: list[SectionChange], code: str) -> str:
    return ", ".join(change.title(code) for change in changes)


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
        publication = publish_notice(document, published_by=published_by,
                                     dpo_sign_off=dpo_sign_off,
                                     works_council_ref=works_council_ref,
                                     change_summary=change_summary,
                                     material=_parse_material(material))
    except PublishRefused as exc:
        click.echo(f"Not published: {exc}", err=True)
        sys.exit(1)
    notice, expired = publication.notice, publication.consents_ended
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
