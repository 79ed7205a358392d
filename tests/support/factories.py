"""Factories of the things most tests start from: the published catalog, people, consent.

Functions taking ``app`` run in their own application context and commit, as a command would,
so that pages the test client opens afterwards see what they made. The others work in the
caller's context and only flush.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import yaml
from flask import Flask
from sqlalchemy import select

from portal.auth.models import Person
from portal.auth.service import sign_in
from portal.catalog.document import SHIPPED_CATALOG, parse_catalog, read_catalog_file
from portal.catalog.models import Category, NoticeVersion
from portal.catalog.notices import current_notice
from portal.catalog.publication import load_catalog, publish_notice
from portal.consent.models import ConsentMethod
from portal.consent.service import grant_consent, withdraw_consent
from portal.db import commit, db
from portal.vault.ingest import find_category
from tests.support.identity import ACCOUNTS, ISSUER, ROLE_MAP

# --- the catalog -----------------------------------------------------------------------------

def publish_shipped_catalog(app: Flask) -> int:
    """Publish the shipped catalog as notice version 1; return its number."""
    with app.app_context():
        outcome = load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
        return outcome.notice.number


def publish_changed_text(app: Flask, key: str, *, material: bool) -> int:
    """Publish a new notice version where ``key``'s English summary changed; return its number."""
    with app.app_context():
        current = db.scalar(select(NoticeVersion).order_by(NoticeVersion.number.desc()))
        assert current is not None
        raw = copy.deepcopy(current.document)
        for entry in raw["categories"]:
            if entry["key"] == key:
                entry["text"]["en"]["summary"] += " (Changed in a later version.)"
        document = parse_catalog(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
        notice = publish_notice(
            document, published_by="tests", dpo_sign_off="DPO of the tests",
            change_summary={"en": "A summary changed.", "de": "Eine Zusammenfassung.",
                            "fr": "Un résumé a changé."},
            material={key: "It now says more."} if material else {}).notice
        commit()
        return notice.number


def category_row(app: Flask, key: str) -> Category:
    """Return a category row."""
    with app.app_context():
        found = db.get(Category, key)
        assert found is not None
        return found


# --- people ----------------------------------------------------------------------------------

def create_person(subject: str, *, groups: Iterable[str] = (), email: bool = True,
                  locale: str | None = None) -> Person:
    """Find or create a person as signing in would (flushes; the caller commits).

    The name is the subject in title case, the e-mail address (unless ``email`` is false)
    ``<subject>@example.com``; ``groups`` map to roles as the provider's groups do.
    """
    claims: dict[str, Any] = {"sub": subject, "name": subject.title()}
    if email:
        claims["email"] = f"{subject}@example.com"
    if groups:
        claims["groups"] = list(groups)
    found = sign_in(claims, issuer=ISSUER, roles_claim="groups", role_map=ROLE_MAP)
    if locale:
        found.locale = locale
    return found


def add_person(name: str, *, roles: tuple[str, ...] = (), locale: str | None = None) -> Person:
    """Add a person of another provider directly and return them, flushed."""
    person = Person(issuer="https://idp.example", subject=f"sub-{name.lower()}", name=name,
                    email=f"{name.lower()}@example.com", roles=list(roles), locale=locale)
    db.add(person)
    db.flush()
    return person


def account_person(app: Flask, who: str) -> Person:
    """Return the person row of a test account (signed in at least once)."""
    with app.app_context():
        found = db.scalar(select(Person).where(Person.subject == ACCOUNTS[who].sub))
        assert found is not None, f"{who} has not signed in"
        return found


def person_id(app: Flask, subject: str) -> int:
    """Return the id of the person with ``subject`` (after they signed in)."""
    with app.app_context():
        found = db.scalar(select(Person.id).where(Person.subject == subject))
        assert found is not None
        return found


# --- consent ---------------------------------------------------------------------------------

def grant(person: Person, *keys: str) -> None:
    """Give ``person``'s consent for the categories ``keys`` under the current notice."""
    notice = current_notice()
    assert notice is not None
    for key in keys:
        grant_consent(person, find_category(key), notice_version=notice,
                      method=ConsentMethod.WEB, actor=person)


def withdraw(person: Person, *keys: str) -> None:
    """Withdraw ``person``'s consent for the categories ``keys``."""
    for key in keys:
        withdraw_consent(person, find_category(key), method=ConsentMethod.WEB, actor=person)
