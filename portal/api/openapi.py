"""The OpenAPI 3.1 description of the collector API, served at ``/api/v1/openapi.json``.

Written as data, next to the views it describes; the tests check every answer the API gives
against it and send every example request in it. The examples' dates are relative to the day
the document is served (yesterday morning), so that they always fall inside every category's
retention period and never in the future.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from flask import Flask

from portal.catalog.models import LegalBasis
from portal.consent.models import ConsentState
from portal.vault.checks import MAX_EVENTS, MAX_IDEMPOTENCY_KEY_LENGTH

VERSION = "1.0.0"
#: The example person and category, used by every example (the tests create them).
EXAMPLE_SUBJECT = "248289761001"
EXAMPLE_CATEGORY = "keystrokes"
#: The example acknowledgement answers the second change of the ledger: a withdrawal.
EXAMPLE_CHANGE_CURSOR = "2"

STATES = [state.value for state in ConsentState]
CURSOR = {"type": "string", "pattern": "^[0-9]{1,18}$",
          "description": "An opaque position in the changes feed. Keep it as a string."}
DATE_TIME = {"type": "string", "format": "date-time"}
PRINTABLE = r"^[^\u0000-\u001f\u007f]+$"
SUBJECT = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": PRINTABLE,
           "description": "The person's subject at the identity provider (claim `sub`)."}
CATEGORY = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": PRINTABLE,
            "description": "A category key of the catalog in force, such as `keystrokes`."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _errors(*statuses: int) -> dict[str, Any]:
    names = {400: "InvalidRequest", 401: "Unauthorized", 403: "Forbidden",
             409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
             429: "TooManyRequests", 500: "ServerError", 503: "Unavailable"}
    return {str(status): {"$ref": f"#/components/responses/{names[status]}"}
            for status in (*statuses, 401, 429, 500)}


def _error_response(description: str, *codes: str) -> dict[str, Any]:
    schema: dict[str, Any] = _ref("Error")
    if codes:
        schema = {"allOf": [_ref("Error"), {"properties": {"error": {"enum": list(codes)}}}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _example_batch(day: dt.date) -> dict[str, Any]:
    start = dt.datetime.combine(day, dt.time(9, 0), tzinfo=dt.UTC)
    return {
        "subject": EXAMPLE_SUBJECT,
        "category": EXAMPLE_CATEGORY,
        "collected_from": _stamp(start),
        "collected_to": _stamp(start + dt.timedelta(minutes=5)),
        "dss_level": 2,
        "events": [
            {"t": _stamp(start + dt.timedelta(seconds=12)), "app": "terminal",
             "keys": "git status", "duration_ms": 1400},
            {"t": _stamp(start + dt.timedelta(seconds=31, microseconds=250_000)),
             "app": "code editor", "keys": "def invoice_total(lines):", "duration_ms": 3900},
        ],
    }


def document(today: dt.date | None = None) -> dict[str, Any]:
    """Return the OpenAPI document, its examples dated the day before ``today`` (UTC)."""
    return _document(today or dt.datetime.now(dt.UTC).date())


#: Where higher packages' additions to the document are kept (in ``app.extensions``).
ADDITIONS = "portal.api.openapi_additions"
#: Builds the part a higher package adds, for a day (its examples relative to it, as ours):
#: a document fragment with any of ``tags``, ``paths`` and ``components`` (by section).
Addition = Callable[[dt.date], dict[str, Any]]


def register_paths(app: Flask, addition: Addition) -> None:
    """Add the paths, tags and components ``addition`` builds to the document ``app`` serves.

    For a higher package's routes under ``/api/v1`` (training): the API describes them without
    importing it. A name already in the document may not be taken again.
    """
    app.extensions.setdefault(ADDITIONS, []).append(addition)


def served_document(app: Flask, today: dt.date | None = None) -> dict[str, Any]:
    """Return the document ``app`` serves: this API's, with every registered addition."""
    day = today or dt.datetime.now(dt.UTC).date()
    additions = app.extensions.get(ADDITIONS, [])
    if not additions:
        return _document(day)
    served = copy.deepcopy(_document(day))
    for addition in additions:
        part = addition(day)
        served["tags"].extend(part.get("tags", []))
        _merge(served["paths"], part.get("paths", {}), "paths")
        for section, entries in part.get("components", {}).items():
            _merge(served["components"].setdefault(section, {}), entries, section)
    return served


def _merge(into: dict[str, Any], entries: dict[str, Any], where: str) -> None:
    for name, value in entries.items():
        if name in into:
            raise ValueError(f"the OpenAPI addition names {where} {name!r} a second time")
        into[name] = value


@functools.lru_cache(maxsize=2)
def _document(today: dt.date) -> dict[str, Any]:
    yesterday = today - dt.timedelta(days=1)
    acknowledged = dt.datetime.combine(yesterday, dt.time(9, 7, 30), tzinfo=dt.UTC)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Consent portal collector API",
            "version": VERSION,
            "summary": "Ask whether you may record, submit what you recorded, learn of "
                       "withdrawals.",
            "description": (
                "Collection agents use this API. Every call needs a collector token "
                "(`Authorization: Bearer <token>`), issued by the privacy admin and scoped to "
                "categories. A person is addressed by their identity provider subject. (The "
                "paths under `/api/v1/training`, for training pipelines, take a training "
                "client's token instead.)\n\n"
                "Errors are always JSON `{\"error\": \"<code>\", \"message\": \"<text>\"}`; "
                "`invalid_request` adds `fields`, one entry per field at fault.\n\n"
                "Deny by default: an unknown person, a category outside the catalog in force "
                "or a consent never given are all \"not allowed\"."),
        },
        "tags": [{"name": "consent", "description": "Whether you may record, and changes."},
                 {"name": "batches", "description": "Submitting what was recorded."}],
        "security": [{"collectorToken": []}],
        "paths": {
            "/api/v1/consent": {"get": {
                "operationId": "getConsent",
                "tags": ["consent"],
                "summary": "Say whether a category may be recorded for a person now",
                "description": "Ask before each recording session. Only the token's "
                               "categories may be asked about.",
                "parameters": [
                    {"name": "subject", "in": "query", "required": True, "schema": SUBJECT,
                     "example": EXAMPLE_SUBJECT},
                    {"name": "category", "in": "query", "required": True, "schema": CATEGORY,
                     "example": EXAMPLE_CATEGORY},
                ],
                "responses": {
                    "200": {"description": "The answer (also for a person the portal does "
                                           "not know: not allowed).",
                            "content": {"application/json": {"schema": _ref("ConsentAnswer")}}},
                    **_errors(400, 403),
                },
            }},
            "/api/v1/consent/changes": {"get": {
                "operationId": "listConsentChanges",
                "tags": ["consent"],
                "summary": "List consent changes of the token's categories, oldest first",
                "description": "Poll with the `next_cursor` of the previous answer as "
                               "`after`: nothing is missed and nothing is seen twice. Stop "
                               "recording at once for every change with `allowed: false`, "
                               "then acknowledge it.",
                "parameters": [
                    {"name": "after", "in": "query", "required": False, "schema": CURSOR,
                     "description": "Return changes after this cursor (default: from the "
                                    "beginning).", "example": "0"},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 100}, "example": 100},
                ],
                "responses": {
                    "200": {"description": "Up to `limit` changes.",
                            "content": {"application/json": {"schema": _ref("ConsentChanges")}}},
                    **_errors(400),
                },
            }},
            "/api/v1/batches": {"post": {
                "operationId": "submitBatch",
                "tags": ["batches"],
                "summary": "Submit one batch of events of one person and one category",
                "description": (
                    "Stored if and only if consent is current when the batch is committed; "
                    "otherwise `403 consent_required` and nothing is stored. Each event must "
                    "have the shape the category's event schema defines (see the notice), and "
                    "its time `t` must lie within the batch's window. The body may be sent "
                    "with `Content-Encoding: gzip`; decompressed it may be at most 8 MiB "
                    "(configurable). Stored content is encrypted and can never be read back "
                    "through this API."),
                "parameters": [
                    {"name": "Idempotency-Key", "in": "header", "required": False,
                     "schema": {"type": "string", "minLength": 1,
                                "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
                     "description": "Send the same key with a retry: the same batch gives the "
                                    "first answer's batch id again (200), a different batch "
                                    "with the same key is refused (409).",
                     "example": f"laptop-7f3a/{yesterday.isoformat()}/0900"},
                    {"name": "Content-Encoding", "in": "header", "required": False,
                     "schema": {"type": "string", "enum": ["gzip", "identity"]}},
                ],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("BatchRequest"),
                    "example": _example_batch(yesterday)}}},
                "responses": {
                    "201": {"description": "Stored.", "content": {"application/json": {
                        "schema": _ref("BatchStored")}}},
                    "200": {"description": "A retry with the same Idempotency-Key and the same "
                                           "batch: nothing new was stored.",
                            "content": {"application/json": {"schema": _ref("BatchStored")}}},
                    **_errors(400, 403, 409, 413, 415, 503),
                },
            }},
            "/api/v1/consent/acknowledgements": {"post": {
                "operationId": "acknowledgeChange",
                "tags": ["consent"],
                "summary": "Confirm that you acted on a consent change",
                "description": "After a change with `allowed: false`, say `stopped` with the "
                               "time of the last event you recorded for the person and "
                               "category (null if none): the person sees when collection "
                               "actually stopped. After consent is given, say `resumed`.",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("AcknowledgementRequest"),
                    "example": {"subject": EXAMPLE_SUBJECT, "category": EXAMPLE_CATEGORY,
                                "change_cursor": EXAMPLE_CHANGE_CURSOR, "action": "stopped",
                                "last_event_at": _stamp(acknowledged)}}}},
                "responses": {
                    "201": {"description": "Recorded.", "content": {"application/json": {
                        "schema": _ref("Acknowledgement")}}},
                    "200": {"description": "Recorded before, with the same facts.",
                            "content": {"application/json": {"schema": _ref("Acknowledgement")}}},
                    **_errors(400, 403, 409, 415),
                },
            }},
            "/api/v1/openapi.json": {"get": {
                "operationId": "getOpenApi",
                "summary": "Return this document",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document.", "content": {
                    "application/json": {"schema": {"type": "object",
                                                    "required": ["openapi", "paths"]}}}}},
            }},
        },
        "components": {
            "securitySchemes": {"collectorToken": {
                "type": "http", "scheme": "bearer",
                "description": "The collector's token, shown once when it was registered."}},
            "responses": {
                "InvalidRequest": _error_response(
                    "The request is malformed; `fields` names each field at fault. Nothing "
                    "was stored.", "invalid_request"),
                "Unauthorized": _error_response("No token, an unknown one, or a revoked one.",
                                                "unauthorized"),
                "Forbidden": _error_response(
                    "The token is not registered for the category "
                    "(`category_not_allowed`), consent is not current "
                    "(`consent_required`), or, for a category that does not rest on consent, "
                    "the person's objection to it was upheld (`objection_upheld`). Nothing "
                    "was stored.",
                    "category_not_allowed", "consent_required", "objection_upheld"),
                "Conflict": _error_response(
                    "The Idempotency-Key was used for another batch, or the change was "
                    "acknowledged before with other facts.",
                    "idempotency_conflict", "acknowledgement_conflict"),
                "PayloadTooLarge": _error_response(
                    "The body (decompressed) or the batch is larger than allowed; split it.",
                    "payload_too_large"),
                "UnsupportedMediaType": _error_response(
                    "The body is not `application/json` in UTF-8, or its Content-Encoding is "
                    "neither gzip nor identity.", "unsupported_media_type"),
                "TooManyRequests": _error_response(
                    "The token sent more requests than its limit; wait as `Retry-After` "
                    "says.", "too_many_requests"),
                "ServerError": _error_response("The portal failed; nothing was half-stored."),
                "Unavailable": _error_response("The portal cannot store batches right now; "
                                               "send the batch again later."),
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "error": {"type": "string", "pattern": "^[a-z_]+$",
                                  "description": "A stable code to act on."},
                        "message": {"type": "string", "minLength": 1,
                                    "description": "What went wrong, for the people "
                                                   "running the collector."},
                        "fields": {"type": "array", "items": {
                            "type": "object", "required": ["field", "message"],
                            "additionalProperties": False,
                            "properties": {
                                "field": {"type": "string", "description":
                                          "A JSON path into the body (`$.events[3].t`), a "
                                          "query parameter or a header."},
                                "message": {"type": "string"}}}},
                    },
                    "example": {"error": "consent_required",
                                "message": "Consent for 'keystrokes' is not current (never "
                                           "given). Nothing was stored."},
                },
                "ConsentState": {"type": "string", "enum": STATES,
                                 "description": "A W3C Data Privacy Vocabulary term."},
                "ConsentAnswer": {
                    "type": "object",
                    "required": ["subject", "category", "allowed", "state", "notice_version",
                                 "since", "legal_basis", "workplace_pseudonym"],
                    "additionalProperties": False,
                    "properties": {
                        "subject": SUBJECT,
                        "category": CATEGORY,
                        "allowed": {"type": "boolean",
                                    "description": "Whether the category may be recorded now."},
                        "state": {"oneOf": [_ref("ConsentState"), {"type": "null"}],
                                  "description": "Null: never decided, unknown person, or a "
                                                 "category that does not rest on consent."},
                        "notice_version": {"type": ["integer", "null"], "minimum": 1,
                                           "description": "The notice version the state was "
                                                          "decided under (for other legal "
                                                          "bases: the version in force)."},
                        "since": {"type": ["string", "null"], "format": "date-time"},
                        "legal_basis": {"type": ["string", "null"],
                                        "enum": [*[basis.value for basis in LegalBasis], None]},
                        "workplace_pseudonym": {
                            "type": ["string", "null"], "pattern": "^p-[0-9a-f]{12}$",
                            "description": "How to name this person inside records, such as "
                                           "a conversation's `author` or `participants`: "
                                           "never their name. Given only when `allowed`."},
                    },
                    "example": {"subject": EXAMPLE_SUBJECT, "category": EXAMPLE_CATEGORY,
                                "allowed": True, "state": "ConsentGiven", "notice_version": 1,
                                "since": "2026-03-02T08:55:12.000Z", "legal_basis": "consent",
                                "workplace_pseudonym": "p-3f9a0c41b7d2"},
                },
                "ConsentChange": {
                    "type": "object",
                    "required": ["cursor", "subject", "category", "state", "allowed",
                                 "notice_version", "at"],
                    "additionalProperties": False,
                    "properties": {
                        "cursor": CURSOR, "subject": SUBJECT, "category": CATEGORY,
                        "state": _ref("ConsentState"),
                        "allowed": {"type": "boolean"},
                        "notice_version": {"type": "integer", "minimum": 1},
                        "at": DATE_TIME,
                    },
                },
                "ConsentChanges": {
                    "type": "object",
                    "required": ["changes", "next_cursor"],
                    "additionalProperties": False,
                    "properties": {
                        "changes": {"type": "array", "items": _ref("ConsentChange"),
                                    "maxItems": 1000},
                        "next_cursor": {**CURSOR, "description": "Send as `after` next time "
                                                                 "(unchanged when there was "
                                                                 "nothing new)."},
                    },
                },
                "BatchRequest": {
                    "type": "object",
                    "required": ["subject", "category", "collected_from", "collected_to",
                                 "dss_level", "events"],
                    "additionalProperties": False,
                    "properties": {
                        "subject": SUBJECT,
                        "category": CATEGORY,
                        "collected_from": DATE_TIME,
                        "collected_to": DATE_TIME,
                        "dss_level": {"type": "integer", "minimum": 1, "maximum": 4,
                                      "description": "The data sensitivity level of what "
                                                     "was recorded (1 public to 4 strictly "
                                                     "confidential)."},
                        "events": {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS,
                                   "items": {"type": "object"},
                                   "description": "Events in the shape of the category's "
                                                  "event schema; each `t` within the "
                                                  "window."},
                    },
                },
                "BatchStored": {
                    "type": "object",
                    "required": ["batch_id", "events"],
                    "additionalProperties": False,
                    "properties": {
                        "batch_id": {"type": "string", "format": "uuid"},
                        "events": {"type": "integer", "minimum": 1,
                                   "description": "How many events were stored."},
                    },
                },
                "AcknowledgementRequest": {
                    "type": "object",
                    "required": ["subject", "category", "change_cursor", "action",
                                 "last_event_at"],
                    "additionalProperties": False,
                    "properties": {
                        "subject": SUBJECT,
                        "category": CATEGORY,
                        "change_cursor": CURSOR,
                        "action": {"type": "string", "enum": ["stopped", "resumed"]},
                        "last_event_at": {"type": ["string", "null"], "format": "date-time",
                                          "description": "The time of the last event recorded "
                                                         "for the person and category; null "
                                                         "if none was."},
                    },
                },
                "Acknowledgement": {
                    "type": "object",
                    "required": ["change_cursor", "action", "last_event_at", "acknowledged_at"],
                    "additionalProperties": False,
                    "properties": {
                        "change_cursor": CURSOR,
                        "action": {"type": "string", "enum": ["stopped", "resumed"]},
                        "last_event_at": {"type": ["string", "null"], "format": "date-time"},
                        "acknowledged_at": DATE_TIME,
                    },
                },
            },
        },
    }
