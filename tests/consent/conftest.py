"""Consent test helpers: the shipped catalog, people, CSRF tokens, choices posted as forms do."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.auth.models import Person
from portal.catalog.document import SHIPPED_CATALOG, parse_catalog, read_catalog_file
from portal.catalog.models import Category, NoticeVersion
from portal.catalog.publication import load_catalog, publish_notice
from portal.db import commit, db
from tests.conftest import ACCOUNTS, SignIn

CONSENT_KEYS = ("pointer", "clicks", "keystrokes", "ai_transcripts", "conversations")
_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


@pytest.fixture
def catalog(app: Flask) -> int:
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


def person(app: Flask, who: str) -> Person:
    """Return the person row of a test account (signed in at least once)."""
    with app.app_context():
        found = db.scalar(select(Person).where(Person.subject == ACCOUNTS[who].sub))
        assert found is not None, f"{who} has not signed in"
        return found


def category(app: Flask, key: str) -> Category:
    """Return a category row."""
    with app.app_context():
        found = db.get(Category, key)
        assert found is not None
        return found


def csrf_token(client: FlaskClient) -> str:
    """Return the CSRF token of the client's session, read from a page as a browser would."""
    match = _CSRF.search(client.get("/consent/history").get_data(as_text=True))
    assert match is not None
    return match.group(1)


class Chooser:
    """Post consent choices as the controls' forms do."""

    def __init__(self, client: FlaskClient, version: int = 1) -> None:
        self.client = client
        self.version = version
        self.token = csrf_token(client)

    def post(self, key: str, action: str, *, version: int | None = None, next_path: str = "",
             json: bool = False) -> Any:
        headers = {"Accept": "application/json"} if json else {}
        return self.client.post(f"/consent/{key}/{action}", headers=headers, data={
            "csrf_token": self.token, "notice_version": str(version or self.version),
            "next": next_path})

    def withdraw_all(self, next_path: str = "") -> Any:
        return self.client.post("/consent/withdraw-all",
                                data={"csrf_token": self.token, "next": next_path})


@pytest.fixture
def alex(app: Flask, client: FlaskClient, sign_in: SignIn, catalog: int) -> Chooser:
    """Alex, signed in on ``client``, with the catalog published."""
    sign_in.login(client, "alex")
    return Chooser(client, catalog)


def signed_in(app: Flask, sign_in: SignIn, who: str) -> FlaskClient:
    """Return a new client signed in as ``who``."""
    client = app.test_client()
    sign_in.login(client, who)
    return client
