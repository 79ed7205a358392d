"""Collector API test helpers: a client that checks every answer against the OpenAPI document,
and a small world of people, consents and collectors built through the real services.

The API tests sign nobody in (bearer tokens only), so they need no identity provider; the
admin pages' tests (``test_admin.py``) bring it back.
"""

from __future__ import annotations

import datetime as dt
import gzip
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from portal.api import openapi
from portal.api.models import CollectionAcknowledgement
from portal.api.service import create_collector, revoke_collector
from portal.auth.models import Person
from portal.auth.service import sign_in
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.notices import current_notice
from portal.catalog.publication import load_catalog
from portal.consent.models import ConsentMethod
from portal.consent.service import grant_consent, withdraw_consent
from portal.db import commit, db
from portal.vault.checks import parse_timestamp
from portal.vault.ingest import find_category
from portal.vault.models import CollectedBatch, DataKey
from tests.conftest import _settings

ISSUER = "http://127.0.0.1:9"
DOCUMENT_URI = "urn:consent-portal:collector-api"


# --- checking answers against the OpenAPI document -------------------------------------------

def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    # jsonschema checks date-time only with an optional package; use the vault's strict parser.
    checker.checks("date-time")(lambda value: not isinstance(value, str)
                                or parse_timestamp(value) is not None)
    return checker


class OpenAPIDocument:
    """The served document, and a check of any answer against it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(DOCUMENT_URI, resource)
        self.checker = _format_checker()
        self.checked = 0

    def validator(self, pointer: str) -> Draft202012Validator:
        """Return a validator of the schema at ``pointer`` in the document."""
        return Draft202012Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"},
                                    registry=self.registry, format_checker=self.checker)

    def response_schema_pointer(self, method: str, path: str, status: int) -> str:
        """Return where the schema of this answer is; fail if the answer is not documented."""
        operations = self.document["paths"].get(path, {})
        operation = operations.get(method.lower())
        if operation is None:
            # Routing answers (unknown address, wrong method) have no operation: the common
            # error shape still applies.
            assert status in {404, 405}, f"{method} {path} answered {status}, undocumented"
            return _pointer("components", "schemas", "Error")
        entry = operation["responses"].get(str(status))
        assert entry is not None, f"{method} {path}: status {status} is not documented"
        location = ["paths", path, method.lower(), "responses", str(status)]
        if "$ref" in entry:
            location = entry["$ref"].removeprefix("#/").split("/")
        return _pointer(*location, "content", "application/json", "schema")

    def check(self, method: str, path: str, response: TestResponse) -> None:
        """Check status, media type and body of an answer against the document."""
        assert response.mimetype == "application/json", (method, path, response.mimetype)
        pointer = self.response_schema_pointer(method, path, response.status_code)
        body = response.get_json()
        errors = sorted(self.validator(pointer).iter_errors(body), key=str)
        assert not errors, f"{method} {path} {response.status_code}: {errors[0].message}\n{body}"
        self.checked += 1


DOCUMENT = OpenAPIDocument(openapi.document())


class OpenAPICheckingClient(FlaskClient):
    """Flask's test client, checking every answer of the API against the OpenAPI document."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        response: TestResponse = super().open(*args, **kwargs)
        request = response.request
        if request.path.startswith("/api/"):
            DOCUMENT.check(request.method, request.path, response)
        return response


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """The configuration of the API tests: a real database, no identity provider."""
    return _settings(database_url, ISSUER, "http://localhost")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = OpenAPICheckingClient
    return app.test_client()


def recent(minutes_ago: float) -> dt.datetime:
    """Return a moment ``minutes_ago`` before now, in UTC, to the millisecond."""
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: dt.datetime) -> str:
    """Write a moment as collectors do."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def keystroke_batch(subject: str, *texts: str, minutes_ago: float = 30) -> dict[str, Any]:
    """Return a valid keystrokes batch body typing ``texts``, one second apart."""
    start = recent(minutes_ago)
    events = [{"t": iso(start + dt.timedelta(seconds=index)), "app": "terminal", "keys": text,
               "duration_ms": 100 * len(text)} for index, text in enumerate(texts or ("ls",))]
    return {"subject": subject, "category": "keystrokes", "collected_from": iso(start),
            "collected_to": iso(start + dt.timedelta(seconds=len(events))), "dss_level": 2,
            "events": events}


def gzipped(data: bytes) -> bytes:
    """Compress like a collector would.

    mtime is fixed so that parametrized ids built from gzip bytes are the same in
    every pytest-xdist worker (they must collect identical test ids).
    """
    return gzip.compress(data, compresslevel=6, mtime=0)


class World:
    """People, consents and collectors, made through the real services in short contexts.

    Each helper runs in its own application context and commits, as a command would, so
    that requests sent by the test client afterwards see it and never share its session.
    """

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def person(self, subject: str) -> int:
        """Create (or find) the person ``subject`` as signing in would; return the id."""
        with self.app.app_context():
            person = sign_in({"sub": subject, "name": subject.title()}, issuer=ISSUER,
                             roles_claim="groups", role_map={})
            commit()
            return person.id

    def _person(self, subject: str) -> Person:
        found = db.scalar(select(Person).where(Person.subject == subject))
        assert found is not None
        return found

    def grant(self, subject: str, *keys: str) -> None:
        """Give the person's consent for ``keys`` under the notice in force."""
        self.person(subject)
        with self.app.app_context():
            notice = current_notice()
            assert notice is not None
            person = self._person(subject)
            for key in keys:
                grant_consent(person, find_category(key), notice_version=notice,
                              method=ConsentMethod.WEB, actor=person)
            commit()

    def withdraw(self, subject: str, *keys: str) -> None:
        """Withdraw the person's consent for ``keys``."""
        with self.app.app_context():
            person = self._person(subject)
            for key in keys:
                withdraw_consent(person, find_category(key), method=ConsentMethod.WEB,
                                 actor=person)
            commit()

    def object_to(self, subject: str, key: str, *, upheld: bool) -> None:
        """File the person's objection to ``key`` and have a DPO uphold or dismiss it."""
        from portal.catalog.notices import find_section
        from portal.catalog.objections import file_objection
        from portal.requests.service import decide_objection

        self.person(subject)
        with self.app.app_context():
            section = find_section(key)
            assert section is not None
            objection = file_objection(self._person(subject), section, "I object.")
            dpo = sign_in({"sub": "sub-dpo", "name": "Dpo", "groups": ["privacy-office"]},
                          issuer=ISSUER, roles_claim="groups",
                          role_map={"dpo": ["privacy-office"]})
            decide_objection(objection, dpo=dpo, upheld=upheld, reason="Decided.")
            commit()

    def collector(self, name: str = "laptop agent",
                  categories: tuple[str, ...] = ("keystrokes", "pointer", "performance"),
                  webhook_url: str = "") -> str:
        """Register a collector; return its token."""
        with self.app.app_context():
            _collector, token, _secret = create_collector(name, categories,
                                                          webhook_url=webhook_url)
            commit()
            return token

    def revoke(self, name: str) -> None:
        """Revoke the collector called ``name``."""
        with self.app.app_context():
            from portal.api.service import find_collector

            collector = find_collector(name)
            assert collector is not None
            revoke_collector(collector)
            commit()

    def stored(self) -> tuple[int, int, int]:
        """Count the stored batches, data keys and acknowledgements."""
        with self.app.app_context():
            return tuple(db.scalar(select(func.count()).select_from(model)) or 0
                         for model in (CollectedBatch, DataKey, CollectionAcknowledgement))


@pytest.fixture
def catalog(app: Flask) -> None:
    """Publish the shipped catalog as notice version 1."""
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()


@pytest.fixture
def world(app: Flask, client: FlaskClient, catalog: None) -> World:
    return World(app, client)


@pytest.fixture
def token(world: World) -> str:
    """The token of a collector of keystrokes, pointer and performance."""
    return world.collector()


def bearer(token: str) -> dict[str, str]:
    """Return the header that authenticates ``token``."""
    return {"Authorization": f"Bearer {token}"}
