"""The collector API's OpenAPI document, and a test client that checks every answer of the
API against it."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.test import TestResponse

from portal.api import openapi
from portal.vault.checks import parse_timestamp

DOCUMENT_URI = "urn:consent-portal:collector-api"


def json_pointer(*parts: str) -> str:
    """Return the JSON pointer (RFC 6901) to ``parts`` in a document."""
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

    def template_of(self, path: str) -> str:
        """Return the document's path (``/a/{id}``) that ``path`` is an instance of, else it.

        The last parameter of a template may span several segments (a file's path).
        """
        if path in self.document["paths"]:
            return path
        # The longest first: /a/{id}/files/{path} before /a/{id}, whose {id} would take it all.
        for template in sorted(self.document["paths"], key=len, reverse=True):
            pattern = re.sub(r"\\{[^}]+\\}$", "[^?]+", re.escape(template))
            pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", pattern)
            if re.fullmatch(pattern, path):
                return str(template)
        return path

    def response_schema_pointer(self, method: str, path: str, status: int,
                                mimetype: str = "application/json") -> str:
        """Return where the schema of this answer is; fail if the answer is not documented."""
        path = self.template_of(path)
        operations = self.document["paths"].get(path, {})
        operation = operations.get(method.lower())
        if operation is None:
            # Routing answers (unknown address, wrong method) have no operation: the common
            # error shape still applies.
            assert status in {404, 405}, f"{method} {path} answered {status}, undocumented"
            return json_pointer("components", "schemas", "Error")
        entry = operation["responses"].get(str(status))
        assert entry is not None, f"{method} {path}: status {status} is not documented"
        location = ["paths", path, method.lower(), "responses", str(status)]
        if "$ref" in entry:
            location = entry["$ref"].removeprefix("#/").split("/")
            entry = self.resolve(location)
        assert mimetype in entry.get("content", {}), \
            f"{method} {path} {status}: {mimetype} is not documented"
        return json_pointer(*location, "content", mimetype, "schema")

    def resolve(self, location: list[str]) -> dict[str, Any]:
        """Return the part of the document at ``location``."""
        found: Any = self.document
        for part in location:
            found = found[part]
        return dict(found)

    def check(self, method: str, path: str, response: TestResponse) -> None:
        """Check status, media type and body of an answer against the document."""
        if response.mimetype != "application/json":
            # A file (a training snapshot's Parquet): its media type must be documented.
            self.response_schema_pointer(method, path, response.status_code,
                                         response.mimetype)
            self.checked += 1
            return
        pointer = self.response_schema_pointer(method, path, response.status_code)
        body = response.get_json()
        errors = sorted(self.validator(pointer).iter_errors(body), key=str)
        assert not errors, f"{method} {path} {response.status_code}: {errors[0].message}\n{body}"
        self.checked += 1


#: The collector API's own document (without what higher packages add to the served one).
DOCUMENT = OpenAPIDocument(openapi.document())
_SERVED: dict[int, OpenAPIDocument] = {}


def served_document(app: Flask) -> OpenAPIDocument:
    """Return the document ``app`` serves (with the training API's paths), checked once."""
    if id(app) not in _SERVED:
        _SERVED.clear()  # one app per test: keep only the latest
        _SERVED[id(app)] = OpenAPIDocument(openapi.served_document(app))
    return _SERVED[id(app)]


class OpenAPICheckingClient(FlaskClient):
    """Flask's test client, checking every answer of the API against the OpenAPI document."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        response: TestResponse = super().open(*args, **kwargs)
        request = response.request
        if request.path.startswith("/api/"):
            served_document(self.application).check(request.method, request.path, response)
        return response
