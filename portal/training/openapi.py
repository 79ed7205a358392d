"""The training API's part of the OpenAPI document served at ``/api/v1/openapi.json``.

Added through :func:`portal.api.openapi.register_paths`, so the collector API describes these
paths without importing training. Like the rest of the document, the examples are dated
relative to the day it is served: the example period ends yesterday at midnight (UTC), never
in the future.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from portal.training.models import ExclusionReason, SnapshotState, TrainingScope

EXAMPLE_PURPOSE = "code_and_text_completion"
EXAMPLE_CATEGORIES = ["keystrokes", "ai_transcripts"]
EXAMPLE_SNAPSHOT_ID = "8b0f3c52-6f0e-4d8e-9a43-2f4f7f2e9d10"
EXAMPLE_FILE = "keystrokes/part-00001.parquet"
SECURITY = [{"trainingToken": []}]
KEY = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[^\u0000-\u001f\u007f]+$"}
DATE_TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
JWS = {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
       "description": "A compact JWS signed with the portal's receipt key; `portal training "
                      "manifest verify` (or any JOSE library with the portal's public key) "
                      "checks it."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _errors(*names: str) -> dict[str, Any]:
    statuses = {"InvalidRequest": "400", "UnsupportedMediaType": "415",
                "TrainingForbidden": "403", "TrainingNotFound": "404",
                "TrainingConflict": "409", "TrainingUnprocessable": "422"}
    found = {statuses[name]: _response(name) for name in names}
    return {**found, "401": _response("Unauthorized"), "429": _response("TooManyRequests"),
            "500": _response("ServerError")}


def _error(description: str, *codes: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {
        "allOf": [_ref("Error"), {"properties": {"error": {"enum": list(codes)}}}]}}}}


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


ID_PARAMETER = {"name": "id", "in": "path", "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                "description": "The snapshot's id, as the answer to the request gave it.",
                "example": EXAMPLE_SNAPSHOT_ID}


def addition(today: dt.date) -> dict[str, Any]:
    """Return the training API's paths, tags and components, examples dated before ``today``."""
    end = dt.datetime.combine(today, dt.time(0, 0), tzinfo=dt.UTC) - dt.timedelta(days=1)
    start = end - dt.timedelta(days=30)
    ask = {"purpose": EXAMPLE_PURPOSE, "categories": EXAMPLE_CATEGORIES,
           "collected_from": _stamp(start), "collected_to": _stamp(end), "max_dss_level": 2}
    return {
        "tags": [{"name": "training", "description": (
            "For training pipelines, with a training client's token: ask for a dataset "
            "snapshot for a declared purpose, read it once it is built, and register the "
            "models trained on it. A snapshot holds only what consent, objections, deletion "
            "requests, retention and the sensitivity rules allow when it is built, under "
            "pseudonyms of its own; every file read appears in the access log of each person "
            "whose records it holds.")}],
        "paths": {
            "/api/v1/training/snapshots": {"post": {
                "operationId": "askForSnapshot",
                "tags": ["training"],
                "security": SECURITY,
                "summary": "Ask for a dataset snapshot for one of your purposes",
                "description": (
                    "Queued at once (202), built later by the portal's workers; poll the "
                    "snapshot's link until its state is `ready` (or `failed`). The purpose "
                    "must be one the client was registered for, and every category's notice "
                    "must allow it. The period is half-open (`collected_from` included, "
                    "`collected_to` not) and may not reach into the future. Needs the scope "
                    "`snapshots`."),
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("SnapshotRequest"), "example": ask}}},
                "responses": {
                    "202": {"description": "Queued.",
                            "headers": {"Location": {"description": "The snapshot's address.",
                                                     "schema": {"type": "string"}}},
                            "content": {"application/json": {
                                "schema": _ref("SnapshotQueued")}}},
                    **_errors("InvalidRequest", "UnsupportedMediaType", "TrainingForbidden",
                              "TrainingConflict", "TrainingUnprocessable"),
                },
            }},
            "/api/v1/training/snapshots/{id}": {"get": {
                "operationId": "getSnapshot",
                "tags": ["training"],
                "security": SECURITY,
                "summary": "Say where a snapshot stands; once ready, list its files",
                "description": "Only the client's own snapshots (another's answers 404). Once "
                               "`ready`, `files` lists every file with its size and SHA-256, "
                               "and `manifest` is the signed manifest. Needs the scope "
                               "`snapshots`.",
                "parameters": [ID_PARAMETER],
                "responses": {
                    "200": {"description": "The snapshot.", "content": {"application/json": {
                        "schema": _ref("Snapshot")}}},
                    **_errors("TrainingForbidden", "TrainingNotFound"),
                },
            }},
            "/api/v1/training/snapshots/{id}/files/{path}": {"get": {
                "operationId": "downloadSnapshotFile",
                "tags": ["training"],
                "security": SECURITY,
                "summary": "Download one file of a ready snapshot",
                "description": (
                    "Decrypted on the way out; compare its SHA-256 with the manifest. `path` "
                    "is a file's `path` as the snapshot lists it (it contains a slash: send it "
                    "as it is, or percent-encoded). This is the moment the data leaves the "
                    "portal: the read is logged in the access log of every person whose "
                    "records the snapshot holds. Needs the scope `snapshots`."),
                "parameters": [
                    ID_PARAMETER,
                    {"name": "path", "in": "path", "required": True,
                     "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                     "example": EXAMPLE_FILE}],
                "responses": {
                    "200": {"description": "The file: Parquet for data, JSON-LD for "
                                           "`croissant.json`.",
                            "content": {
                                "application/vnd.apache.parquet": {"schema": {
                                    "type": "string",
                                    "contentMediaType": "application/vnd.apache.parquet"}},
                                "application/ld+json": {"schema": {"type": "object"}}}},
                    **_errors("TrainingForbidden", "TrainingNotFound", "TrainingConflict"),
                },
            }},
            "/api/v1/training/snapshots/{id}/retire": {"post": {
                "operationId": "retireSnapshot",
                "tags": ["training"],
                "security": SECURITY,
                "summary": "Retire a snapshot: destroy its key and files, get a certificate",
                "description": (
                    "For a snapshot that is ready or failed. Its key is destroyed, so every "
                    "copy of its files (and its pseudonyms) can no longer be opened by the "
                    "portal; its files are removed. The answer carries the certificate of "
                    "retirement, signed with the portal's receipt key. Models trained on it "
                    "keep what they learned. Needs the scope `retire`."),
                "parameters": [ID_PARAMETER],
                "responses": {
                    "200": {"description": "Retired.", "content": {"application/json": {
                        "schema": _ref("SnapshotRetired")}}},
                    **_errors("TrainingForbidden", "TrainingNotFound", "TrainingConflict"),
                },
            }},
            "/api/v1/training/changes": {"get": {
                "operationId": "listSnapshotChanges",
                "tags": ["training"],
                "security": SECURITY,
                "summary": "List events of your snapshots, oldest first",
                "description": "A snapshot becomes outdated when a person whose records it "
                               "holds withdraws, objects or has data erased "
                               "(`snapshot.outdated`), and is retired when its key and files "
                               "are destroyed (`snapshot.retired`). The same events reach "
                               "the client's webhook; poll with the `next_cursor` of the "
                               "previous answer as `after` to miss none. No event names a "
                               "person. Needs the scope `snapshots`.",
                "parameters": [
                    {"name": "after", "in": "query", "required": False,
                     "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                     "description": "Return events after this cursor (default: from the "
                                    "beginning).", "example": "0"},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 100}, "example": 100},
                ],
                "responses": {
                    "200": {"description": "Up to `limit` events.", "content": {
                        "application/json": {"schema": _ref("SnapshotChanges")}}},
                    **_errors("InvalidRequest", "TrainingForbidden"),
                },
            }},
            "/api/v1/training/models": {"post": {
                "operationId": "registerModel",
                "tags": ["training"],
                "security": SECURITY,
                "summary": "Register a model trained on some of your snapshots",
                "description": "Each person sees which models were trained on snapshots "
                               "holding their records. Only the client's own snapshots, "
                               "ready or retired; a name and version are registered once. "
                               "Needs the scope `models`.",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("ModelRequest"),
                    "example": {"name": "code-assistant", "version": f"{today:%Y.%m.%d}",
                                "snapshots": [EXAMPLE_SNAPSHOT_ID]}}}},
                "responses": {
                    "201": {"description": "Registered.", "content": {"application/json": {
                        "schema": _ref("Model")}}},
                    **_errors("InvalidRequest", "UnsupportedMediaType", "TrainingForbidden",
                              "TrainingNotFound", "TrainingConflict"),
                },
            }},
        },
        "components": {
            "securitySchemes": {"trainingToken": {
                "type": "http", "scheme": "bearer",
                "description": "A training client's token, shown once when it was registered "
                               "(`portal training clients create`), with some of the scopes "
                               + ", ".join(f"`{scope.value}`" for scope in TrainingScope)
                               + ". A collector's token is refused here."}},
            "responses": {
                "TrainingForbidden": _error(
                    "A collector's token (`wrong_token`), a token without the scope needed "
                    "(`insufficient_scope`), a purpose the client was not registered for "
                    "(`purpose_not_declared`), or a category whose notice does not allow the "
                    "purpose (`purpose_not_allowed`). Nothing was changed.",
                    "wrong_token", "insufficient_scope", "purpose_not_declared",
                    "purpose_not_allowed"),
                "TrainingNotFound": _error(
                    "No such snapshot of this client (`not_found`, `unknown_snapshot`), or no "
                    "such file in it.", "not_found", "unknown_snapshot"),
                "TrainingConflict": _error(
                    "The snapshot is not ready (`snapshot_not_ready`), is still being built "
                    "or was retired already (`still_building`, `already_retired`), the "
                    "model's name and version are registered already (`model_exists`), or "
                    "no notice is published yet (`no_notice`). Nothing was changed.",
                    "snapshot_not_ready", "still_building", "already_retired", "model_exists",
                    "no_notice"),
                "TrainingUnprocessable": _error(
                    "A category the notice in force does not have (`unknown_category`), an "
                    "empty period (`empty_period`) or one reaching into the future "
                    "(`period_in_future`). Nothing was queued.",
                    "unknown_category", "empty_period", "period_in_future"),
            },
            "schemas": {
                "SnapshotChanges": {
                    "type": "object", "required": ["changes", "next_cursor"],
                    "additionalProperties": False,
                    "properties": {
                        "changes": {"type": "array", "items": {
                            "type": "object",
                            "required": ["cursor", "snapshot", "number", "type", "reasons",
                                         "at"],
                            "additionalProperties": False,
                            "properties": {
                                "cursor": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                                "snapshot": {"type": "string", "format": "uuid"},
                                "number": {"type": "integer", "minimum": 1},
                                "type": {"type": "string",
                                         "enum": ["snapshot.outdated", "snapshot.retired"]},
                                "reasons": {"type": "array", "items": {"type": "string"}},
                                "at": DATE_TIME,
                            }}},
                        "next_cursor": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    },
                },
                "SnapshotRequest": {
                    "type": "object",
                    "required": ["purpose", "categories", "collected_from", "collected_to",
                                 "max_dss_level"],
                    "additionalProperties": False,
                    "properties": {
                        "purpose": {**KEY, "description": "A training purpose of the catalog "
                                                          "the client was registered for."},
                        "categories": {"type": "array", "minItems": 1, "maxItems": 64,
                                       "uniqueItems": True, "items": KEY},
                        "collected_from": DATE_TIME,
                        "collected_to": DATE_TIME,
                        "max_dss_level": {"type": "integer", "minimum": 1, "maximum": 4,
                                          "description": "Leave out every batch rated above "
                                                         "this data sensitivity level."},
                    },
                },
                "Links": {
                    "type": "object", "required": ["self"], "additionalProperties": False,
                    "properties": {"self": {"type": "string"}},
                },
                "SnapshotQueued": {
                    "type": "object",
                    "required": ["id", "number", "state", "links"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "number": {"type": "integer", "minimum": 1,
                                   "description": "What people read in their access log "
                                                  "(\"training dataset 12\")."},
                        "state": {"type": "string", "enum": [SnapshotState.QUEUED.value]},
                        "links": _ref("Links"),
                    },
                },
                "SnapshotFile": {
                    "type": "object",
                    "required": ["path", "size", "sha256", "url"],
                    "additionalProperties": False,
                    "properties": {
                        "path": {"type": "string", "minLength": 1},
                        "size": {"type": "integer", "minimum": 0,
                                 "description": "Bytes, decrypted."},
                        "sha256": SHA256,
                        "url": {"type": "string"},
                    },
                },
                "SnapshotCounts": {
                    "type": "object",
                    "required": ["included", "excluded"],
                    "additionalProperties": False,
                    "properties": {
                        "included": {"type": "integer", "minimum": 0},
                        "excluded": {"type": "object",
                                     "propertyNames": {"enum": [reason.value for reason
                                                                in ExclusionReason]},
                                     "additionalProperties": {"type": "integer", "minimum": 0},
                                     "description": "Records left out, per reason."},
                    },
                },
                "Snapshot": {
                    "type": "object",
                    "required": ["id", "number", "purpose", "categories", "collected_from",
                                 "collected_to", "max_dss_level", "notice_version", "state",
                                 "requested_at", "ready_at", "outdated_at", "retired_at",
                                 "failed_reason", "counts", "files", "manifest",
                                 "certificate", "links"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "number": {"type": "integer", "minimum": 1},
                        "purpose": KEY,
                        "categories": {"type": "array", "items": KEY},
                        "collected_from": DATE_TIME,
                        "collected_to": DATE_TIME,
                        "max_dss_level": {"type": "integer", "minimum": 1, "maximum": 4},
                        "notice_version": {"type": "integer", "minimum": 1,
                                           "description": "The notice version consent is "
                                                          "checked against."},
                        "state": {"type": "string",
                                  "enum": [state.value for state in SnapshotState]},
                        "requested_at": DATE_TIME,
                        "ready_at": NULLABLE_TIME,
                        "outdated_at": {**NULLABLE_TIME, "description": (
                            "When a person's withdrawal, objection or erasure first touched "
                            "records the snapshot holds: train no new model on it.")},
                        "retired_at": NULLABLE_TIME,
                        "failed_reason": {"type": ["string", "null"]},
                        "counts": _ref("SnapshotCounts"),
                        "files": {"type": "array", "items": _ref("SnapshotFile"),
                                  "description": "Empty until the snapshot is ready."},
                        "manifest": {"oneOf": [JWS, {"type": "null"}]},
                        "certificate": {"oneOf": [JWS, {"type": "null"}],
                                        "description": "The certificate of its retirement."},
                        "links": _ref("Links"),
                    },
                },
                "SnapshotRetired": {
                    "type": "object",
                    "required": ["id", "state", "retired_at", "certificate"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "state": {"type": "string", "enum": [SnapshotState.RETIRED.value]},
                        "retired_at": DATE_TIME,
                        "certificate": JWS,
                    },
                },
                "ModelRequest": {
                    "type": "object",
                    "required": ["name", "version", "snapshots"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {**KEY, "maxLength": 255},
                        "version": KEY,
                        "snapshots": {"type": "array", "minItems": 1, "maxItems": 1000,
                                      "items": {"type": "string", "minLength": 1,
                                                "maxLength": 64}},
                    },
                },
                "Model": {
                    "type": "object",
                    "required": ["id", "name", "version", "snapshots", "registered_at"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "snapshots": {"type": "array", "items": {"type": "string"}},
                        "registered_at": DATE_TIME,
                    },
                },
            },
        },
    }

