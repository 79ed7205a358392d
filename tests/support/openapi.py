"""The collector API's OpenAPI document, and a test client that checks every answer of the
API against it."""

from __future__ import annotations

from typing import Any

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

    def response_schema_pointer(self, method: str, path: str, status: int) -> str:
        """Return where the schema of this answer is; fail if the answer is not documented."""
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
        return json_pointer(*location, "content", "application/json", "schema")

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
