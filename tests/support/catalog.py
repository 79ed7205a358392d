"""The catalog in tests: the shipped catalog, changed copies of it, publishing them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from flask import Flask
from flask_babel import force_locale
from sqlalchemy import select

from portal.catalog.document import (
    SHIPPED_CATALOG,
    CatalogDocument,
    parse_catalog,
    read_catalog_file,
)
from portal.catalog.models import NoticeVersion
from portal.catalog.publication import load_catalog, publish_notice
from portal.db import commit, db

Raw = dict[str, Any]


def shipped_raw() -> Raw:
    """Return the shipped catalog as plain data, to change in a test."""
    raw: Raw = yaml.safe_load(SHIPPED_CATALOG.read_text(encoding="utf-8"))
    return raw


def to_yaml(raw: Raw) -> str:
    """Write catalog data back as YAML."""
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)


def category(raw: Raw, key: str) -> Raw:
    """Return the category ``key`` of catalog data (to change it in place)."""
    [found] = [item for item in raw["categories"] if item["key"] == key]
    return found


def changed_document(change: Callable[[Raw], None]) -> CatalogDocument:
    """Return the shipped catalog with ``change`` applied, checked like any file."""
    raw = shipped_raw()
    change(raw)
    return parse_catalog(to_yaml(raw))


def new_purpose(key: str, text: str = "Also train the meeting summariser.",
                ) -> Callable[[Raw], None]:
    """Return a change that adds a purpose (in English and German) to category ``key``."""

    def change(raw: Raw) -> None:
        texts = category(raw, key)["text"]
        texts["en"]["purposes"].append(text)
        texts["de"]["purposes"].append("Außerdem den Besprechungs-Zusammenfasser trainieren.")

    return change


def write_catalog(tmp_path: Path, raw: Raw, name: str = "catalog.yaml") -> Path:
    """Write catalog data to a file and return its path."""
    path = tmp_path / name
    path.write_text(to_yaml(raw), encoding="utf-8")
    return path


@contextmanager
def in_app(app: Flask) -> Iterator[None]:
    """Work inside ``app`` as a command does: an app context, the default language."""
    with app.app_context(), force_locale("en"):
        yield


def load_shipped(app: Flask) -> None:
    """Publish the shipped catalog as version 1, as `portal catalog load` does."""
    with in_app(app):
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()


def publish(app: Flask, document: CatalogDocument, *, material: dict[str, str] | None = None,
            ) -> int:
    """Publish ``document`` with a complete approval; return its version number."""
    with in_app(app):
        notice = publish_notice(document, published_by="tests", dpo_sign_off="Dana Novak",
                                works_council_ref="WC-1",
                                change_summary={"en": "A change.", "de": "Eine Änderung.",
                                                "fr": "Une modification."},
                                material=material or {}).notice
        commit()
        return notice.number


def versions(app: Flask) -> list[NoticeVersion]:
    """Return every published version, oldest first."""
    with app.app_context():
        return list(db.scalars(select(NoticeVersion).order_by(NoticeVersion.number)))
