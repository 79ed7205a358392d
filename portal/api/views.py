"""The collector API under ``/api/v1``.

The API answers JSON only, authenticates by bearer token only (no cookies, so no CSRF), and
counts requests per token. Views stay thin: the envelope is checked in
:mod:`portal.api.forms`, the rest in :mod:`portal.api.service` (which asks the vault and the
consent ledger).
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Blueprint, current_app, request
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from portal.api import openapi
from portal.api.auth import (
    accept_collector,
    count_request,
    first_statement,
    read_without_transaction,
    require_collector,
    require_scope,
    require_token,
)
from portal.api.errors import ApiError, invalid
from portal.api.forms import (
    parse_acknowledgement,
    parse_batch,
    parse_changes_query,
    parse_consent_query,
)
from portal.api.service import (
    AcknowledgementConflict,
    AcknowledgementRefused,
    CollectionStop,
    CollectorIdentity,
    accept_batch,
    acknowledgements_for,
    identify_batch_parties,
    list_consent_changes,
    look_up_consent,
    record_acknowledgement,
)
from portal.catalog.notices import current_notice
from portal.consent.service import category_titles
from portal.i18n import current_locale
from portal.observability import metrics
from portal.security import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Bearer tokens, not cookies: a browser cannot be tricked into sending one, so no CSRF token.
csrf.exempt(bp)

#: Largest accepted body, after decompression (``API_MAX_BODY_BYTES`` overrides it).
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
JSON_TYPES = frozenset({"application/json"})
ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 429: "too_many_requests",
               500: "internal_server_error", 503: "service_unavailable"}


# --- plumbing --------------------------------------------------------------------------------

def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                  ) -> Response:
    """Return ``data`` as the API's JSON answer."""
    return Response(orjson.dumps(data), status=status, headers=dict(headers or {}),
                    mimetype="application/json")


def format_api_time(moment: dt.datetime | None) -> str | None:
    """Write a time as RFC 3339 in UTC, to the millisecond, as collectors write theirs."""
    if moment is None:
        return None
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _issuer() -> str:
    """Return the identity provider whose subjects the API's ``subject`` fields are."""
    return str(current_app.extensions["portal.oidc"].expected_issuer)


def _collector() -> CollectorIdentity:
    return require_collector()


def max_body_bytes() -> int:
    """Return the largest body accepted, decompressed."""
    return int(current_app.config.get("API_MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"The body is larger than {limit} bytes (after "
                    "decompression). Split the events into smaller batches. Nothing was stored.")


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body, stopping at ``limit`` bytes: a small bomb stays small."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise ApiError(400, "invalid_request", "The body says Content-Encoding: gzip but is "
                       "not valid gzip data. Nothing was stored.") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    if not inflater.eof or inflater.unused_data:
        raise ApiError(400, "invalid_request", "The gzip body is truncated or has data after "
                       "its end. Nothing was stored.")
    return plain


def read_json_body() -> Any:
    """Return the request's JSON body, checked for type, encoding and size.

    :raise ApiError: 415 for another media type or encoding, 413 when too large (compressed or
        not), 400 when it is not JSON in UTF-8 (including nesting deeper than 1024 levels).
    """
    if request.mimetype not in JSON_TYPES:
        raise ApiError(415, "unsupported_media_type", "Send the body as 'Content-Type: "
                       "application/json'. Nothing was stored.")
    if request.mimetype_params.get("charset", "utf-8").lower() not in {"utf-8", "utf8"}:
        raise ApiError(415, "unsupported_media_type", "Send the body in UTF-8 (JSON's only "
                       "encoding on the wire). Nothing was stored.")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in {"identity", "gzip", "x-gzip"}:
        raise ApiError(415, "unsupported_media_type", "Content-Encoding must be gzip or "
                       "identity. Nothing was stored.")
    limit = max_body_bytes()
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    if encoding != "identity":
        raw = _gunzip(raw, limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position and the problem, never the content.
        raise ApiError(400, "invalid_request", f"The body is not valid JSON in UTF-8 ({exc}). "
                       "Nothing was stored.") from None


@bp.before_request
def _authenticate() -> None:
    if request.endpoint == "api.openapi_document":
        return
    count_request()
    require_token()
    if request.endpoint in {"api.consent", "api.submit_batch"}:
        # These learn who is asking together with what they need to answer, in one statement
        # (see look_up_consent and identify_batch_parties): one round trip less.
        return
    if request.method == "GET":
        # Answers to reads are single statements: without a transaction around them, they
        # save the round trips of BEGIN and COMMIT.
        read_without_transaction()
    require_collector()


@bp.errorhandler(ApiError)
def _refused(error: ApiError) -> Response:
    metrics.count_refused_batch(error.code)
    return json_response(error.body(), error.status, error.headers)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = ERROR_CODES.get(status, error.name.lower().replace(" ", "_"))
    metrics.count_refused_batch(code)
    message = str(error.description or error.name)
    if status == 413:
        message = _too_large(max_body_bytes()).message
    return json_response({"error": code, "message": message}, status)


# --- the API ---------------------------------------------------------------------------------

@bp.get("/openapi.json")
def openapi_document() -> Response:
    """Return the OpenAPI 3.1 document of this API (no token needed)."""
    return json_response(openapi.served_document(current_app))


@bp.get("/consent")
def consent() -> Response:
    """Say whether the token's category may be recorded for a person now (deny by default)."""
    try:
        subject, category_key = parse_consent_query(request.args)
    except ApiError:
        require_collector()  # as everywhere, a token that is not valid is told first
        raise
    collector, answer = look_up_consent(subject, category_key, issuer=_issuer(),
                                        token=require_token())
    require_scope(accept_collector(collector), category_key)
    return json_response({
        "subject": answer.subject, "category": answer.category_key, "allowed": answer.allowed,
        "state": answer.state.value if answer.state else None,
        "notice_version": answer.notice_version, "since": format_api_time(answer.since),
        "legal_basis": answer.legal_basis.value if answer.legal_basis else None,
        "workplace_pseudonym": answer.workplace_pseudonym})


@bp.get("/consent/changes")
def consent_changes() -> Response:
    """List the consent changes of the token's categories after a cursor, oldest first."""
    after, limit = parse_changes_query(request.args)
    changes = list_consent_changes(_collector().categories, after=after, limit=limit,
                                   issuer=_issuer())
    return json_response({
        "changes": [{"cursor": str(change.cursor), "subject": change.subject,
                     "category": change.category_key, "state": change.state.value,
                     "allowed": change.state.allows_collection,
                     "notice_version": change.notice_version, "at": format_api_time(change.at)}
                    for change in changes],
        "next_cursor": str(changes[-1].cursor if changes else after)})


@bp.post("/batches")
def submit_batch() -> Response:
    """Store one batch if consent is current when it commits; 403 and nothing stored otherwise."""
    try:
        batch = parse_batch(read_json_body())
    except ApiError:
        require_collector()  # as everywhere, a token that is not valid is told first
        raise
    token = require_token()
    parties = first_statement(lambda: identify_batch_parties(
        token, category_key=batch.category_key, subject=batch.subject, issuer=_issuer()))
    collector = accept_collector(parties.collector)
    require_scope(collector, batch.category_key)
    result = accept_batch(collector, batch, parties,
                          idempotency_key=request.headers.get("Idempotency-Key"))
    return json_response({"batch_id": result.public_id, "events": result.event_count},
                 201 if result.created else 200)


@bp.post("/consent/acknowledgements")
def acknowledge_change() -> Response:
    """Record that the collector stopped (or resumed) recording after a consent change."""
    collector = _collector()
    report = parse_acknowledgement(read_json_body())
    require_scope(collector, report.category_key)
    try:
        acknowledgement, created = record_acknowledgement(
            collector.id, subject=report.subject, issuer=_issuer(),
            category_key=report.category_key, change_cursor=report.change_cursor,
            action=report.action, last_event_at=report.last_event_at)
    except AcknowledgementRefused as exc:
        raise invalid([(f"$.{exc.field}", exc.message)]) from None
    except AcknowledgementConflict as exc:
        raise ApiError(409, "acknowledgement_conflict", f"{exc}.") from None
    return json_response({"change_cursor": str(acknowledgement.change_event_id),
                  "action": acknowledgement.action.value,
                  "last_event_at": format_api_time(acknowledgement.last_event_at),
                  "acknowledged_at": format_api_time(acknowledgement.acknowledged_at)},
                 201 if created else 200)


# --- for the partial that tells a person which collectors have stopped -----------------------

def collection_stops() -> list[tuple[str, CollectionStop]]:
    """Return the signed-in person's stops, each with its category's title (for the partial)."""
    if not current_user.is_authenticated:
        return []
    stops = acknowledgements_for(int(current_user.id))
    notice = current_notice()
    titles = category_titles(notice.id, current_locale()) if notice and stops else {}
    return [(titles.get(stop.category_key, stop.category_key), stop) for stop in stops]
