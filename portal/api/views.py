"""The collector API under ``/api/v1`` and the privacy admin's collector pages.

The API answers JSON only, authenticates by bearer token only (no cookies, so no CSRF), and
counts requests per token. Views stay thin: the envelope is checked in
:mod:`portal.api.forms`, the rest is the vault's and the consent ledger's business.
"""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from typing import Any

import orjson
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from portal import csrf
from portal.api import openapi, webhooks
from portal.api.auth import (
    ApiError,
    accept_collector,
    count_request,
    first_statement,
    read_without_transaction,
    require_collector,
    require_scope,
    require_token,
)
from portal.api.cli import collectors_group, webhooks_group
from portal.api.forms import (
    CollectorForm,
    RevokeForm,
    invalid,
    parse_acknowledgement,
    parse_batch,
    parse_changes_query,
    parse_consent_query,
)
from portal.api.models import Collector, DeliveryState
from portal.api.service import (
    AUTOCOMMIT_ENGINE,
    AcknowledgementConflict,
    AcknowledgementRefused,
    CollectionStop,
    CollectorIdentity,
    CollectorRefused,
    acknowledgements_for,
    categories_in_force,
    create_collector,
    identify_batch_parties,
    list_collectors,
    list_consent_changes,
    look_up_consent,
    record_acknowledgement,
    revoke_collector,
    unacknowledged_stops,
)
from portal.auth.access import role_required
from portal.auth.models import Role
from portal.consent.models import ConsentState
from portal.consent.service import category_titles, current_notice_version
from portal.db import db, get_engine
from portal.i18n import current_locale
from portal.observability import metrics
from portal.vault.service import (
    BatchInvalid,
    BatchTooLarge,
    ConsentRequired,
    IdempotencyConflict,
    ObjectionUpheld,
    UnknownCategory,
    VaultError,
    VaultIntegrityError,
    check_batch,
    ingest_batch,
)

log = logging.getLogger(__name__)

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
REASONS = {None: "not given", ConsentState.WITHDRAWN: "withdrawn",
           ConsentState.REFUSED: "refused",
           ConsentState.EXPIRED: "expired after a material change of the notice (the person "
                                 "must confirm again)"}


# --- plumbing --------------------------------------------------------------------------------

def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status=status, headers=headers,
                    mimetype="application/json")


def _time(moment: dt.datetime | None) -> str | None:
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
    return _json(error.body(), error.status, error.headers)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = ERROR_CODES.get(status, error.name.lower().replace(" ", "_"))
    metrics.count_refused_batch(code)
    message = str(error.description or error.name)
    if status == 413:
        message = _too_large(max_body_bytes()).message
    return _json({"error": code, "message": message}, status)


# --- the API ---------------------------------------------------------------------------------

@bp.get("/openapi.json")
def openapi_document() -> Response:
    """Return the OpenAPI 3.1 document of this API (no token needed)."""
    return _json(openapi.document())


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
    return _json({
        "subject": answer.subject, "category": answer.category_key, "allowed": answer.allowed,
        "state": answer.state.value if answer.state else None,
        "notice_version": answer.notice_version, "since": _time(answer.since),
        "legal_basis": answer.legal_basis.value if answer.legal_basis else None})


@bp.get("/consent/changes")
def consent_changes() -> Response:
    """List the consent changes of the token's categories after a cursor, oldest first."""
    after, limit = parse_changes_query(request.args)
    changes = list_consent_changes(_collector().categories, after=after, limit=limit,
                                   issuer=_issuer())
    return _json({
        "changes": [{"cursor": str(change.cursor), "subject": change.subject,
                     "category": change.category_key, "state": change.state.value,
                     "allowed": change.state.allows_collection,
                     "notice_version": change.notice_version, "at": _time(change.at)}
                    for change in changes],
        "next_cursor": str(changes[-1].cursor if changes else after)})


def _consent_required(category_key: str, state: ConsentState | None) -> ApiError:
    reason = REASONS.get(state, "not current")
    return ApiError(403, "consent_required", f"Recording {category_key!r} is not allowed for "
                    f"this person now: consent is {reason}. Nothing was stored.")


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
    idempotency_key = request.headers.get("Idempotency-Key")
    try:
        # Whether the category is in the catalog in force came with the parties, in the
        # same transaction as the rest of the batch: ingest_batch need not read it again.
        category = parties.category
        if category is None or not parties.category_in_force:
            raise UnknownCategory(batch.category_key)
        options: dict[str, Any] = {
            "events": batch.events, "collected_from": batch.collected_from,
            "collected_to": batch.collected_to, "dss_level": batch.dss_level,
            "collector_id": collector.id, "idempotency_key": idempotency_key}
        person = parties.person
        if person is None:
            # The same checks and the same refusal as for a person who never consented, so
            # that answers do not tell which people exist.
            check_batch(category, **options)
            raise _consent_required(category.key, None)
        result = ingest_batch(person, category, catalog_checked=True, **options)
        metrics.count_ingested_batch(category.key, result.event_count, created=result.created)
    except UnknownCategory:
        raise ApiError(403, "category_not_allowed", f"Category {batch.category_key!r} is not "
                       "in the catalog in force: nothing may be recorded for it.") from None
    except BatchInvalid as exc:
        raise invalid([(error.path, error.message) for error in exc.errors]) from None
    except BatchTooLarge as exc:
        raise ApiError(413, "payload_too_large", f"{exc}. Nothing was stored.") from None
    except ConsentRequired as exc:
        raise _consent_required(batch.category_key, exc.state) from None
    except ObjectionUpheld:
        raise ApiError(403, "objection_upheld", f"Recording {batch.category_key!r} is not "
                       "allowed for this person: their objection to it was upheld. Nothing "
                       "was stored.") from None
    except IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", f"The Idempotency-Key was used before for "
                       f"batch {exc.public_id}, with different content. Use a new key for a "
                       "new batch. Nothing was stored.") from None
    except VaultIntegrityError:
        raise  # evidence of tampering or a wrong master key: a 500, logged, never papered over
    except VaultError as exc:
        log.warning("batch refused by the vault: %s", exc)
        raise ApiError(503, "service_unavailable", "The batch could not be stored right now. "
                       "Send it again (with the same Idempotency-Key).",
                       headers={"Retry-After": "5"}) from None
    return _json({"batch_id": result.public_id, "events": result.event_count},
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
    return _json({"change_cursor": str(acknowledgement.change_event_id),
                  "action": acknowledgement.action.value,
                  "last_event_at": _time(acknowledgement.last_event_at),
                  "acknowledged_at": _time(acknowledgement.acknowledged_at)},
                 201 if created else 200)


# --- the privacy admin's pages ---------------------------------------------------------------

admin_bp = Blueprint("collectors", __name__, url_prefix="/admin/collectors")


@admin_bp.get("/")
@role_required(Role.ADMIN)
def index() -> str:
    """List the collectors with their state, and the withdrawals they have not acknowledged."""
    return render_template("admin/collectors.html", collectors=list_collectors(),
                           pending=unacknowledged_stops())


@admin_bp.route("/new", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def create() -> str | tuple[str, int]:
    """Register a collector and show its token, once."""
    form = CollectorForm()
    form.categories.choices = [(key, key) for key in categories_in_force()]
    if form.validate_on_submit():
        try:
            collector, token, webhook_secret = create_collector(
                form.name.data or "", form.categories.data or [],
                webhook_url=form.webhook_url.data or "")
        except CollectorRefused as exc:
            for field, message in exc.problems.items():
                form[field].errors = [*form[field].errors, _problem(field, message)]
        else:
            return render_template("admin/collectors_created.html", collector=collector,
                                   token=token, webhook_secret=webhook_secret)
    status = 400 if form.errors else 200
    return render_template("admin/collectors_new.html", form=form), status


def _problem(field: str, message: str) -> str:
    """Word a refusal of the service for the page (its own words are for the command line)."""
    if field == "name":
        return _("Another collector already has this name. Choose another one.") \
            if "taken" in message else _("Enter a name of printable characters.")
    if field == "categories":
        return _("Choose categories from the catalog in force.")
    return _("Enter an address that starts with https:// or http://.")


def _find(collector_id: int) -> Collector:
    collector = db.get(Collector, collector_id)
    if collector is None:
        abort(404)
    return collector


# max: ids are 32-bit in the database; a larger one is a 404, not a crash in the driver.
@admin_bp.route("/<int(max=2147483647):collector_id>/revoke", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def revoke(collector_id: int) -> str | Response:
    """Ask to confirm, then revoke a collector's token at once."""
    collector = _find(collector_id)
    form = RevokeForm()
    if form.validate_on_submit():
        if revoke_collector(collector):
            flash(_("The token of “%(name)s” is revoked. The collector can no longer ask or "
                    "submit anything.", name=collector.name), "success")
        return redirect(url_for(".index"), code=303)
    return render_template("admin/collectors_revoke.html", collector=collector, form=form)


@admin_bp.app_template_global()
def collection_stops() -> list[tuple[str, CollectionStop]]:
    """Return the signed-in person's stops, each with its category's title (for the partial)."""
    if not current_user.is_authenticated:
        return []
    stops = acknowledgements_for(int(current_user.id))
    notice = current_notice_version()
    titles = category_titles(notice.id, current_locale()) if notice and stops else {}
    return [(titles.get(stop.category_key, stop.category_key), stop) for stop in stops]


# The privacy admin's view of the webhook notices; its address predates the move to this package.
webhooks_bp = Blueprint("webhooks", __name__)


@webhooks_bp.get("/consent/admin/webhooks")
@role_required(Role.ADMIN)
def admin_webhooks() -> str:
    """Show the privacy admin how withdrawal notices to collectors are getting on.

    Deliberately without person or category: the admin learns whether collectors hear of
    withdrawals, not who withdrew what.
    """
    counts, lines = webhooks.delivery_overview()
    return render_template("admin/webhooks.html", counts=counts, lines=lines)


@webhooks_bp.app_template_global()
def webhook_kind_label(kind: str) -> str:
    """Name the kind of a notice sent to collectors."""
    labels = {
        "consent.withdrawn": _l("Consent withdrawn: stop"),
        "consent.expired": _l("Notice changed: pause"),
        "consent.refused": _l("Consent declined: stop"),
        # i18n: a notice telling a collector to delete its own copies after a deletion request
        "data.delete": _l("Deletion request: delete local copies"),
    }
    return str(labels.get(kind, kind))


@webhooks_bp.app_template_global()
def webhook_state_label(state: DeliveryState) -> str:
    """Name where a notice to a collector stands."""
    labels = {
        # i18n: a notice to a collector that is waiting to be sent or retried
        DeliveryState.PENDING: pgettext("webhook delivery", "Waiting"),
        DeliveryState.DELIVERED: pgettext("webhook delivery", "Delivered"),
        DeliveryState.FAILED: pgettext("webhook delivery", "Failed"),
    }
    return labels[state]


@webhooks_bp.app_template_global()
def webhook_state_tag(state: DeliveryState) -> str:
    """Return the CSS class of a delivery state's tag."""
    return {DeliveryState.PENDING: "tag-attention", DeliveryState.DELIVERED: "tag-given",
            DeliveryState.FAILED: "tag-withdrawn"}[state]


def init_app(app: Flask) -> None:
    """Serve the collector API and the privacy admin's collector pages; add the commands.

    Importing :mod:`portal.api.webhooks` (above) connects its receiver: stop notices are
    queued whenever consent ends collection.

    The API's requests are answered by its own app (portal.api.app), which adds
    ``Cache-Control: no-store`` to every answer; its blueprint is registered here as well so
    that the portal's pages can build its URLs (``url_for("api.openapi_document")``).
    """
    # The same pool as the request's unit of work; its connections lent in autocommit mode.
    app.extensions[AUTOCOMMIT_ENGINE] = get_engine(app).execution_options(
        isolation_level="AUTOCOMMIT")
    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(webhooks_bp)
    app.cli.add_command(collectors_group)
    app.cli.add_command(webhooks_group)
