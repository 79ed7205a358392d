"""The training API under ``/api/v1/training``: ask for snapshots, read them, register models.

Served by the collector API's app (registered through
:func:`portal.api.app.register_api_blueprint`), with the same plumbing: bearer tokens only
(so no CSRF), JSON answers in the API's error shape, the same per-token request budget. A
training client's token is its own kind: a collector's token is refused here, and a training
token on the collector API (see :func:`recognise_training_token`). Views stay thin: bodies
are checked here, the rest in :mod:`portal.training.service`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Blueprint, Flask, g, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from portal.api.app import register_api_blueprint
from portal.api.auth import count_request, first_statement, register_other_token, require_token
from portal.api.errors import ApiError, invalid
from portal.api.forms import CONTROL_CHARACTERS, TIME_HINT, json_object, parse_changes_query
from portal.api.openapi import register_paths
from portal.api.service import identify_collector
from portal.api.views import ERROR_CODES, format_api_time, json_response, read_json_body
from portal.catalog.models import NoticeVersion
from portal.db import db
from portal.hashchain import format_time
from portal.security import csrf
from portal.training import openapi
from portal.training.files import file_aad, read_decrypted, snapshot_file
from portal.training.keys import open_snapshot_key
from portal.training.lineage import RetirementRefused, list_snapshot_changes, retire_snapshot
from portal.training.manifest import manifest_files
from portal.training.models import SnapshotState, TrainingClient, TrainingScope, TrainingSnapshot
from portal.training.service import (
    SnapshotAsk,
    SnapshotRefused,
    get_own_snapshot,
    identify_training_client,
    record_download,
    register_model,
    request_snapshot,
)
from portal.vault.checks import parse_timestamp

bp = Blueprint("training_api", __name__, url_prefix="/api/v1/training")
# Bearer tokens, not cookies: a browser cannot be tricked into sending one, so no CSRF token.
csrf.exempt(bp)

HOLDER = "the training client's token"
MEDIA_TYPES = {".parquet": "application/vnd.apache.parquet", ".json": "application/ld+json"}


def init_app(app: Flask) -> None:
    """Serve the training API from the API's app, describe it, and name its tokens elsewhere."""
    register_api_blueprint(app, bp)
    register_paths(app, openapi.addition)
    register_other_token(app, recognise_training_token)


def recognise_training_token(token: str) -> str | None:
    """Say, for the collector API, that ``token`` is a training client's (else ``None``)."""
    if identify_training_client(token) is None:
        return None
    return ("This is a training client's token; the collector API needs a collector's token. "
            "A training client uses /api/v1/training.")


# --- plumbing --------------------------------------------------------------------------------

def current_client() -> TrainingClient:
    """Return the training client calling.

    :raise ApiError: 401 for no token, an unknown or a revoked one; 403 for a collector's.
    """
    if "training_client" in g:
        found: TrainingClient = g.training_client
        return found
    token = require_token(holder=HOLDER)
    client = first_statement(lambda: identify_training_client(token))
    if client is None:
        if identify_collector(token) is not None:
            raise ApiError(403, "wrong_token", "This is a collector token; the training API "
                           "needs a training client's token. Ask the privacy admin to register "
                           "the training pipeline (`portal training clients create`).")
        raise ApiError(401, "unauthorized", "The token is not valid. Check that the whole "
                       "token is sent, as issued.",
                       headers={"WWW-Authenticate": 'Bearer realm="training-api", '
                                                    'error="invalid_token"'})
    if not client.active:
        raise ApiError(401, "unauthorized", "This token was revoked. Ask the privacy admin for "
                       "a new training client token.",
                       headers={"WWW-Authenticate": 'Bearer realm="training-api", '
                                                    'error="invalid_token"'})
    g.training_client = client
    return client


SCOPE_WORDS = {TrainingScope.SNAPSHOTS: "ask for snapshots and read them",
               TrainingScope.MODELS: "register models",
               TrainingScope.RETIRE: "retire snapshots"}


def require_training_scope(scope: TrainingScope) -> TrainingClient:
    """Return the calling client if its token holds ``scope``; refuse with 403 otherwise."""
    client = current_client()
    if not client.may(scope):
        raise ApiError(403, "insufficient_scope", f"This token may not {SCOPE_WORDS[scope]}: "
                       f"it lacks the scope {scope.value!r} (it has: "
                       f"{', '.join(client.scopes or []) or 'none'}). Ask the privacy admin "
                       "for a token with it. Nothing was changed.")
    return client


@bp.before_request
def _authenticate() -> None:
    count_request()
    current_client()


@bp.errorhandler(ApiError)
def _refused(error: ApiError) -> Response:
    return json_response(error.body(), error.status, error.headers)


@bp.errorhandler(SnapshotRefused)
def _snapshot_refused(error: SnapshotRefused) -> Response:
    body: dict[str, Any] = {"error": error.code, "message": error.message}
    if error.code == "invalid_request" and error.field:
        body["fields"] = [{"field": error.field, "message": error.message}]
    return json_response(body, error.status)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = ERROR_CODES.get(status, error.name.lower().replace(" ", "_"))
    return json_response({"error": code, "message": str(error.description or error.name)}, status)


# --- what clients hand in --------------------------------------------------------------------

SNAPSHOT_FIELDS = frozenset({"purpose", "categories", "collected_from", "collected_to",
                             "max_dss_level"})
MODEL_FIELDS = frozenset({"name", "version", "snapshots"})


def _key(value: object, path: str, problems: list[tuple[str, str]], *, limit: int = 64) -> str:
    if not isinstance(value, str):
        problems.append((path, "must be a string"))
    elif not value or len(value) > limit:
        problems.append((path, f"must be 1 to {limit} characters long"))
    elif CONTROL_CHARACTERS.search(value):
        problems.append((path, "must not contain control characters"))
    else:
        return value
    return ""


def _list_of_keys(value: object, path: str, problems: list[tuple[str, str]], *,
                  limit: int = 64, most: int = 64) -> list[str]:
    if not isinstance(value, list):
        problems.append((path, "must be a list of strings"))
        return []
    if len(value) > most:
        problems.append((path, f"must name at most {most}"))
        return []
    return [_key(item, f"{path}[{index}]", problems, limit=limit)
            for index, item in enumerate(value)]


def _moment(body: Mapping[str, Any], name: str, problems: list[tuple[str, str]],
            ) -> dt.datetime | None:
    value = body.get(name)
    if not isinstance(value, str) or (parsed := parse_timestamp(value)) is None:
        problems.append((f"$.{name}", TIME_HINT))
        return None
    return parsed


def _required(body: Mapping[str, Any], allowed: frozenset[str]) -> list[tuple[str, str]]:
    return [(f"$.{name}", "is required") for name in sorted(allowed) if name not in body]


def parse_snapshot_ask(raw: object) -> SnapshotAsk:
    """Check the body of a request for a snapshot; say what is wrong with every field at once."""
    body = json_object(raw, SNAPSHOT_FIELDS)
    problems = _required(body, SNAPSHOT_FIELDS)
    present = set(body)
    purpose = _key(body["purpose"], "$.purpose", problems) if "purpose" in present else ""
    categories = (_list_of_keys(body["categories"], "$.categories", problems)
                  if "categories" in present else [])
    start = _moment(body, "collected_from", problems) if "collected_from" in present else None
    end = _moment(body, "collected_to", problems) if "collected_to" in present else None
    level = body.get("max_dss_level")
    if "max_dss_level" in present and (not isinstance(level, int) or isinstance(level, bool)
                                       or not 1 <= level <= 4):
        problems.append(("$.max_dss_level", "must be an integer from 1 to 4"))
    if problems:
        raise invalid(problems)
    assert start is not None and end is not None and isinstance(level, int)
    return SnapshotAsk(purpose=purpose, categories=categories, collected_from=start,
                       collected_to=end, max_dss_level=level)


# --- the API ---------------------------------------------------------------------------------

def _links(snapshot: TrainingSnapshot) -> dict[str, str]:
    return {"self": url_for(".show_snapshot", public_id=snapshot.public_id)}


def describe_snapshot(snapshot: TrainingSnapshot) -> dict[str, Any]:
    """Return what a client reads of its snapshot.

    Its request, state and counts; once ready, its files and its signed manifest.
    """
    notice_number = db.scalar(select(NoticeVersion.number)
                              .where(NoticeVersion.id == snapshot.notice_version_id))
    ready = snapshot.state is SnapshotState.READY
    return {
        "id": snapshot.public_id,
        "number": snapshot.number,
        "purpose": snapshot.purpose_key,
        "categories": list(snapshot.categories),
        "collected_from": format_api_time(snapshot.collected_from),
        "collected_to": format_api_time(snapshot.collected_to),
        "max_dss_level": snapshot.max_dss_level,
        "notice_version": notice_number,
        "state": snapshot.state.value,
        "requested_at": format_api_time(snapshot.requested_at),
        "ready_at": format_api_time(snapshot.ready_at),
        "outdated_at": format_api_time(snapshot.outdated_at),
        "retired_at": format_api_time(snapshot.retired_at),
        "failed_reason": snapshot.failed_reason or None,
        "counts": {"included": int((snapshot.totals or {}).get("included", 0)),
                   "excluded": {str(reason): int(count) for reason, count
                                in ((snapshot.totals or {}).get("excluded") or {}).items()}},
        "files": _files(snapshot) if ready else [],
        "manifest": snapshot.manifest_jws if ready else None,
        "certificate": snapshot.certificate_jws,
        "links": _links(snapshot),
    }


def _files(snapshot: TrainingSnapshot) -> list[dict[str, Any]]:
    return [{"path": file.path, "size": file.size, "sha256": file.sha256,
             "url": url_for(".download_file", public_id=snapshot.public_id, path=file.path)}
            for file in manifest_files(snapshot)]


@bp.post("/snapshots")
def ask_for_snapshot() -> Response:
    """Queue a snapshot for one of the client's purposes; 202 with its id (built later)."""
    client = require_training_scope(TrainingScope.SNAPSHOTS)
    snapshot = request_snapshot(client, parse_snapshot_ask(read_json_body()))
    links = _links(snapshot)
    return json_response({"id": snapshot.public_id, "number": snapshot.number,
                  "state": snapshot.state.value, "links": links}, 202,
                 headers={"Location": links["self"]})


# An id or a file path with slashes of its own is not ours: a 404, not a redirect elsewhere.
@bp.get("/snapshots/<public_id>", merge_slashes=False)
def show_snapshot(public_id: str) -> Response:
    """Say where the client's snapshot stands; once ready, list its files and its manifest."""
    client = require_training_scope(TrainingScope.SNAPSHOTS)
    return json_response(describe_snapshot(get_own_snapshot(client, public_id)))


@bp.get("/snapshots/<public_id>/files/<path:path>", merge_slashes=False)
def download_file(public_id: str, path: str) -> Response:
    """Send one file of a ready snapshot, decrypted; the read goes to each person's access log."""
    client = require_training_scope(TrainingScope.SNAPSHOTS)
    snapshot = get_own_snapshot(client, public_id)
    if snapshot.state is not SnapshotState.READY:
        raise ApiError(409, "snapshot_not_ready", f"Snapshot {public_id} is "
                       f"{snapshot.state.value}: only a ready snapshot's files can be read.")
    listed = {file.path: file for file in manifest_files(snapshot)}
    file = listed.get(path)
    if file is None:
        raise ApiError(404, "not_found", f"Snapshot {public_id} has no file {path[:255]!r}; "
                       "its files are listed in its description.")
    # Before anything is read: the entry fails closed, and it is the moment the data leaves.
    record_download(client, snapshot, file.path)
    key = open_snapshot_key(snapshot)
    location = snapshot_file(snapshot, file.path)
    aad = file_aad(snapshot, file.path)

    def chunks() -> Iterator[bytes]:
        # No database here: the unit of work was committed (with the audit entry) before
        # the first byte is sent.
        yield from read_decrypted(location, key, aad=aad)

    suffix = "." + file.path.rsplit(".", 1)[-1] if "." in file.path else ""
    return Response(chunks(), mimetype=MEDIA_TYPES.get(suffix, "application/octet-stream"),
                    headers={"Content-Length": str(file.size), "ETag": f'"{file.sha256}"',
                             "Content-Disposition": "attachment; filename="
                             + file.path.rsplit("/", 1)[-1]})


@bp.post("/models")
def register_trained_model() -> Response:
    """Record a model trained on some of the client's snapshots (the lineage people see)."""
    client = require_training_scope(TrainingScope.MODELS)
    body = json_object(read_json_body(), MODEL_FIELDS)
    problems = _required(body, MODEL_FIELDS)
    name = _key(body["name"], "$.name", problems, limit=255) if "name" in body else ""
    version = _key(body["version"], "$.version", problems) if "version" in body else ""
    snapshots = (_list_of_keys(body["snapshots"], "$.snapshots", problems, most=1000)
                 if "snapshots" in body else [])
    if problems:
        raise invalid(problems)
    model = register_model(client, name, version, snapshots)
    return json_response({"id": model.public_id, "name": model.name, "version": model.version,
                  "snapshots": [snapshot.public_id for snapshot in model.snapshots],
                  "registered_at": format_api_time(model.registered_at)}, 201)


@bp.post("/snapshots/<public_id>/retire", merge_slashes=False)
def retire(public_id: str) -> Response:
    """Retire the client's snapshot: its key and files destroyed, a certificate issued."""
    client = require_training_scope(TrainingScope.RETIRE)
    snapshot = get_own_snapshot(client, public_id)
    try:
        certificate = retire_snapshot(snapshot, by=client.name)
    except RetirementRefused as exc:
        raise ApiError(409, exc.code, exc.message) from None
    return json_response({"id": snapshot.public_id, "state": snapshot.state.value,
                  "retired_at": format_api_time(snapshot.retired_at), "certificate": certificate})


@bp.get("/changes")
def snapshot_changes() -> Response:
    """List the events of the caller's snapshots after a cursor, oldest first.

    A client that missed a webhook polls with the last cursor it saw and misses nothing (as
    collectors do with ``/api/v1/consent/changes``). No event names a person or a count.
    """
    client = require_training_scope(TrainingScope.SNAPSHOTS)
    after, limit = parse_changes_query(request.args)
    changes = list_snapshot_changes(client, after, limit)
    return json_response({
        "changes": [{"cursor": str(change.cursor), "snapshot": change.snapshot_public_id,
                     "number": change.number, "type": f"snapshot.{change.kind.value}",
                     "reasons": change.reasons, "at": format_time(change.at)}
                    for change in changes],
        "next_cursor": str(changes[-1].cursor if changes else after)})
