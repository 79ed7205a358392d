"""The training client's changes feed: ``GET /api/v1/training/changes?after=CURSOR``.

Lists the events of the calling client's snapshots (outdated, retired), oldest first, after a
cursor, like the collectors' ``/api/v1/consent/changes``: a client that missed a webhook
polls with the last cursor it saw and misses nothing. To be merged into the training API's
blueprint (:mod:`portal.training.api`), whose token check replaces :func:`_calling_client`.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from portal.api.auth import require_token
from portal.api.errors import ApiError
from portal.api.forms import parse_changes_query
from portal.api.service import hash_token
from portal.db import db
from portal.hashchain import format_time
from portal.training.lineage import list_snapshot_changes
from portal.training.models import TrainingClient, TrainingScope

bp = Blueprint("training_feed", __name__, url_prefix="/api/v1/training")


def _calling_client() -> TrainingClient:
    """Return the active training client of the bearer token holding the snapshots scope."""
    token = require_token()
    client = db.scalar(select(TrainingClient)
                       .where(TrainingClient.token_hash == hash_token(token)))
    if client is None or not client.active:
        raise ApiError(401, "unauthorized", "The token is not valid for the training API.")
    if not client.may(TrainingScope.SNAPSHOTS):
        raise ApiError(403, "scope_missing", "This token may not read snapshots.")
    return client


@bp.errorhandler(ApiError)
def _refused(error: ApiError) -> Response:
    answer = jsonify(error.body())
    answer.status_code = error.status
    answer.headers.update(error.headers)
    return answer


@bp.get("/changes")
def snapshot_changes() -> Response:
    """List the events of the caller's snapshots after a cursor (no person, no count)."""
    client = _calling_client()
    after, limit = parse_changes_query(request.args)
    changes = list_snapshot_changes(client, after, limit)
    return jsonify({
        "changes": [{"cursor": str(change.cursor), "snapshot": change.snapshot_public_id,
                     "number": change.number, "type": f"snapshot.{change.kind.value}",
                     "reasons": change.reasons, "at": format_time(change.at)}
                    for change in changes],
        "next_cursor": str(changes[-1].cursor if changes else after)})
